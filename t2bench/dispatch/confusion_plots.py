"""Confusion matrices as PNG heatmaps (one strategy, or all side by side on one scale)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from t2bench.dispatch.confusion import ConfusionMatrix, percent
from t2bench.errors import ConfigError


def _figure_class():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "plotting confusion matrices needs matplotlib: pip install matplotlib"
        ) from None
    return Figure, FigureCanvasAgg


def _draw(ax: Any, cm: ConfusionMatrix, title: str) -> Any:
    """Heatmap coloured by row fraction (recall on the diagonal), counts in the cells."""
    norm = [[c / max(1, sum(row)) for c in row] for row in cm.counts]
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cm.columns)), labels=list(cm.columns), rotation=30, ha="right")
    ax.set_yticks(range(len(cm.rows)), labels=list(cm.rows))
    ax.set_xlabel("chosen")
    ax.set_ylabel("true")
    for i, row in enumerate(cm.counts):
        for j, c in enumerate(row):
            ax.text(
                j,
                i,
                str(c),
                ha="center",
                va="center",
                color="white" if norm[i][j] > 0.6 else "black",
                fontsize=9,
            )
    lo, hi = cm.wilson
    ax.set_title(
        f"{title}\naccuracy {percent(cm.accuracy)} [{percent(lo)}, {percent(hi)}], n={cm.n}",
        fontsize=9,
    )
    return image


def _save(fig: Any, canvas_cls: Any, path: Path) -> Path:
    canvas_cls(fig)
    with open(path, "xb") as fh:  # never replace an existing plot
        fig.savefig(fh, format="png", dpi=150)
    return path


def plot(cm: ConfusionMatrix, path: str | Path, title: str) -> Path:
    """One matrix as a PNG heatmap (Agg canvas, so no display and no global backend change)."""
    Figure, Canvas = _figure_class()
    fig = Figure(
        figsize=(1.0 * len(cm.columns) + 2.4, 0.7 * len(cm.rows) + 2.2), layout="constrained"
    )
    ax = fig.add_subplot()
    image = _draw(ax, cm, title)
    fig.colorbar(image, ax=ax, label="fraction of row")
    return _save(fig, Canvas, Path(path))


def plot_grid(matrices: Mapping[str, ConfusionMatrix], path: str | Path) -> Path:
    """All strategies side by side, on one colour scale, for comparison at a glance."""
    if not matrices:
        raise ConfigError("plot_grid needs at least one confusion matrix")
    Figure, Canvas = _figure_class()
    k = len(matrices)
    width = max(len(cm.columns) for cm in matrices.values())
    height = max(len(cm.rows) for cm in matrices.values())
    fig = Figure(figsize=(k * (1.0 * width + 1.6) + 1.2, 0.7 * height + 2.4), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    image = None
    for i, (ax, (name, cm)) in enumerate(zip(axes, matrices.items(), strict=True)):
        image = _draw(ax, cm, name)
        if i:
            ax.set_ylabel("")
    fig.colorbar(image, ax=list(axes), label="fraction of row", shrink=0.9)
    return _save(fig, Canvas, Path(path))
