"""The confusion matrix as a PNG, drawn with matplotlib's object API (no pyplot, no global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from modelops.io import atomic_path


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str) -> Path:
    """Write `matrix` (rows: true label, columns: predicted label) as an annotated heatmap PNG, atomically."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix)
    names = list(labels) or [str(i) for i in range(len(counts))]
    size = 2.5 + 0.5 * len(names)
    figure = Figure(figsize=(size, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true", title=title)
    axes.set_xticklabels(names, rotation=45, ha="right")
    axes.set_yticklabels(names)
    threshold = counts.max() / 2 if counts.size else 0
    for (row, col), value in np.ndenumerate(counts):
        axes.text(col, row, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path
