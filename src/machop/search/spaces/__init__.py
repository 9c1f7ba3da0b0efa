"""Search spaces: MASE's mixed-precision and channel-multiplier spaces, and their composite."""

from machop.search.spaces.channel_multiplier import ChannelMultiplier
from machop.search.spaces.composite import Composite
from machop.search.spaces.mixed_precision_ptq import MixedPrecisionPTQ
from machop.search.spaces.registry import SPACES, build_space

__all__ = ["SPACES", "ChannelMultiplier", "Composite", "MixedPrecisionPTQ", "build_space"]
