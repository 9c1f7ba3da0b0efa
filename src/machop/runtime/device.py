"""Device and numeric-precision choices, degrading cleanly to CPU."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from machop.errors import ConfigError

log = logging.getLogger("machop")


def resolve_device(accelerator: str = "auto") -> torch.device:
    """Pick the device for an accelerator name; a GPU request without CUDA falls back to CPU."""
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("auto", "gpu", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if accelerator != "auto":
            log.warning("accelerator %r requested but no CUDA device is available; using the CPU",
                        accelerator)
        return torch.device("cpu")
    raise ConfigError(f"unknown accelerator {accelerator!r} (valid: auto, cpu, gpu, cuda)")


@dataclass(frozen=True)
class Precision:
    """How to run forward passes: autocast dtype (or none) and the parameter dtype."""

    autocast_dtype: torch.dtype | None
    param_dtype: torch.dtype
    uses_grad_scaler: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """An autocast context for `device`, or a no-op."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """Map a Lightning-style precision name to what this device can do."""
    if name in ("64", "64-true"):
        return Precision(None, torch.float64, False)
    if name in ("bf16-mixed", "bf16"):
        return Precision(torch.bfloat16, torch.float32, False)
    if name == "16-mixed" and device.type == "cuda":
        return Precision(torch.float16, torch.float32, True)
    # 16-mixed on CPU: float16 autocast is slow and unsupported for many CPU ops.
    return Precision(None, torch.float32, False)
