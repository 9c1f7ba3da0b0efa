"""What every PNG figure shares (search reports, the sensitivity heatmap): style, size, palette, number
labels and saving.

Figures are built with matplotlib's object API on an Agg canvas, never through pyplot, so no
global backend is switched and no figure outlives its function (nothing is left to close).
matplotlib is imported inside the functions: importing it costs more than the CLI's start-up.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from machop.io_atomic import write_atomic

DPI = 120
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 12}
PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
PALETTE_ABOVE_BYTES = 200_000


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """The reports' font sizes, for the figures drawn inside the block."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float) -> Any:
    """A constrained-layout figure of `width` x `height` inches on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Any) -> bytes:
    """The figure as PNG; a large one (many heatmap panels) with a 256-colour palette, ~3x smaller."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    if buffer.tell() <= PALETTE_ABOVE_BYTES:
        return buffer.getvalue()
    from PIL import Image

    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                                dither=Image.Dither.NONE)
    smaller = io.BytesIO()
    palette.save(smaller, format="PNG", optimize=True)
    return smaller.getvalue()


def save_png(figure: Any, path: Path | str) -> Path:
    """Write the figure to `path` as PNG, atomically."""
    data = png_bytes(figure)
    return write_atomic(path, lambda stream: stream.write(data))


def compact_number(value: float) -> str:
    """At most four significant digits with an SI suffix for large values: 0.7512, 98.4k, 1.26M."""
    magnitude = abs(value)
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.4g}"
