"""`loss_curve.png`: the training loss, and the validation loss when there is one, by step, from `metrics.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path


def read_curve(metrics_path: str | Path, key: str) -> tuple[list[int], list[float]]:
    """Steps and values of `key` in a `metrics.jsonl`; a step logged twice (a resumed run) keeps its last value."""
    points: dict[int, float] = {}
    path = Path(metrics_path)
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if isinstance(row.get(key), int | float):
            points[int(row["step"])] = float(row[key])
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def write_loss_curve(run_dir: str | Path) -> Path | None:
    """Draw `run_dir/loss_curve.png` from `run_dir/metrics.jsonl`, atomically; None when no loss was logged."""
    run_dir = Path(run_dir)
    train = read_curve(run_dir / "metrics.jsonl", "loss")
    if not train[0]:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from modelops.io import atomic_path

    validation = read_curve(run_dir / "metrics.jsonl", "eval_loss")
    figure = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(*train, label="train loss")
    if validation[0]:
        axes.plot(*validation, marker="o", label="validation loss")
    axes.set(xlabel="step", ylabel="loss", title=run_dir.name)
    axes.legend()
    path = run_dir / "loss_curve.png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path
