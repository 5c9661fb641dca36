"""Figure plumbing shared by plots.py and the models' own figures: a Matplotlib Figure with its own Agg
canvas, and a PNG written atomically.

Every figure is drawn on a ``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg``, never through
``pyplot``: nothing global changes (no backend switch, no figure registry), so a user's interactive session
is untouched and nothing needs closing.
"""

from __future__ import annotations

import io
import pathlib
import textwrap

import numpy
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tinyvae.files import atomic_write_bytes

DPI = 100


def new_figure(width, height):
    """A Figure (size in inches) with its own Agg canvas: pyplot's registry and backend stay as they were."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def mosaic(images, rows, cols, image_shape, pad=1):
    """Tile rows of flat images (n, H·W) into one (rows·(H+pad) − pad, cols·(W+pad) − pad) array, row-major,
    with white (1.0) separators and blank (white) tiles where n < rows·cols."""
    h, w = image_shape
    canvas = numpy.ones((rows * (h + pad) - pad, cols * (w + pad) - pad))
    for i, image in enumerate(numpy.clip(images, 0.0, 1.0)):
        r, c = divmod(i, cols)
        canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image.reshape(h, w)
    return canvas


def wrap_titles(figure):
    """Break every axes title that is wider than its axes into lines, so no title is clipped at the edge
    of a narrow figure (a 64-sample grid is 5 inches wide; "vqvae: 64 samples, decoder means E[x|z] with
    z ~ uniform over the 64 codes" is not). A character is taken as 0.55 of the font size wide."""
    for ax in figure.axes:
        title = ax.title
        text = title.get_text()
        if not text:
            continue
        width_points = ax.get_position().width * figure.get_figwidth() * 72
        chars = max(12, int(width_points / (0.55 * title.get_fontsize())))
        lines = [textwrap.fill(line, chars) for line in text.split("\n")]
        title.set_text("\n".join(lines))


def save_png(figure, path):
    """Write the figure as a PNG, atomically (a full disk or a Ctrl-C never leaves half an image, and a
    symbolic link at ``path`` is replaced, never written through); returns the path. Titles too wide for
    their axes are wrapped first (:func:`wrap_titles`)."""
    wrap_titles(figure)
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=DPI)
    atomic_write_bytes(str(path), png.getvalue())
    return path
