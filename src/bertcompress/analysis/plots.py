"""Per-(layer, head) heatmaps drawn with matplotlib's Figure API on an Agg canvas (no pyplot state)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure

from bertcompress.analysis.patterns import PATTERNS

PATTERN_COLORS = ("#4c72b0", "#55a868", "#8172b2", "#dd8452", "#c7c7c7")
PATTERN_SHORT = {"vertical": "V", "diagonal": "D", "vertical+diagonal": "V+D", "block": "B", "heterogeneous": "H"}


def _grid(values: list[list[float]]) -> np.ma.MaskedArray:
    """Layers x max heads; layers with fewer heads (after pruning) leave masked cells."""
    width = max((len(row) for row in values), default=0)
    grid = np.full((len(values), width), np.nan)
    for layer, row in enumerate(values):
        grid[layer, : len(row)] = row
    return np.ma.masked_invalid(grid)


def _figure(grid: np.ndarray, title: str) -> tuple[Figure, object]:
    layers, heads = grid.shape
    figure = Figure(figsize=(max(4.0, 0.55 * heads + 2.2), max(3.0, 0.4 * layers + 1.6)), dpi=120)
    FigureCanvasAgg(figure)  # explicit Agg canvas: no global backend switch, no pyplot figure registry
    axes = figure.subplots()
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_xticks(range(heads))
    axes.set_yticks(range(layers))
    return figure, axes


def _annotate(axes, image, grid: np.ma.MaskedArray, text) -> None:
    if grid.shape[1] > 16:
        return  # labels would overlap
    for (layer, head), value in np.ndenumerate(grid.filled(np.nan)):
        if not math.isnan(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # light text on dark cells stays legible
            axes.text(head, layer, text(value), ha="center", va="center", fontsize=6,
                      color="white" if dark else "black")


def value_heatmap(values: list[list[float]], path: Path, title: str, label: str, diverging: bool = False,
                  fmt: str = "{:.2f}") -> Path:
    """Continuous values per (layer, head); diverging maps are centred on zero (e.g. Δ accuracy)."""
    grid = _grid(values)
    figure, axes = _figure(grid, title)
    norm = None
    if diverging:
        bound = max(float(np.abs(grid).max()) if grid.count() else 0.0, 1.0)  # all-zero maps stay neutral
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    image = axes.imshow(grid, cmap="RdBu" if diverging else "viridis", norm=norm, aspect="auto")
    figure.colorbar(image, ax=axes, label=label)
    _annotate(axes, image, grid, fmt.format)
    figure.tight_layout()
    figure.savefig(path)
    return path


def pattern_heatmap(labels: list[list[str]], path: Path, title: str) -> Path:
    """Majority pattern label per (layer, head), one colour per pattern."""
    grid = _grid([[PATTERNS.index(label) for label in row] for row in labels])
    figure, axes = _figure(grid, title)
    norm = BoundaryNorm(np.arange(len(PATTERNS) + 1) - 0.5, len(PATTERNS))
    image = axes.imshow(grid, cmap=ListedColormap(PATTERN_COLORS), norm=norm, aspect="auto")
    bar = figure.colorbar(image, ax=axes, ticks=range(len(PATTERNS)))
    bar.ax.set_yticklabels(PATTERNS, fontsize=7)
    _annotate(axes, image, grid, lambda v: PATTERN_SHORT[PATTERNS[int(v)]])
    figure.tight_layout()
    figure.savefig(path)
    return path
