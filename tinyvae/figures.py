"""Figure plumbing shared by plots.py and the models' own figures: a Matplotlib Figure with its own Agg
canvas, and a PNG written atomically.

Every figure is drawn on a ``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg``, never through
``pyplot``: nothing global changes (no backend switch, no figure registry), so a user's interactive session
is untouched and nothing needs closing.
"""

from __future__ import annotations

import io
import pathlib

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tinyvae.files import atomic_write_bytes

DPI = 100


def new_figure(width, height):
    """A Figure (size in inches) with its own Agg canvas: pyplot's registry and backend stay as they were."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path):
    """Write the figure as a PNG, atomically (a full disk or a Ctrl-C never leaves half an image, and a
    symbolic link at ``path`` is replaced, never written through); returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=DPI)
    atomic_write_bytes(str(path), png.getvalue())
    return path
