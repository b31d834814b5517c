"""Sweep summaries: a table of swept parameters -> metrics, sorted by the objective, and a plot.

Runs by itself after every multirun (the `SweepSummary` Hydra callback in conf/config.yaml) and
as a command on any multirun directory::

    python -m modelops.sweep multirun/2026-11-26/10-00-00 [--objective fine_tuned.accuracy] [--direction maximize]

It writes `sweep_summary.md`, `sweep_summary.csv` and `sweep_summary.png` into that directory.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from modelops.flatten import flatten_results
from modelops.io import atomic_path
from modelops.registry.tracker import finish_sweep
from modelops.tables import render

DEFAULT_OBJECTIVE = "fine_tuned.accuracy"


def objective_value(results: dict[str, Any], objective: str) -> float | None:
    """The objective metric of one run's results, or None when that run did not compute it."""
    return flatten_results(results).get(objective)


def _trials(sweep_dir: Path) -> list[dict[str, Any]]:
    import yaml

    trials = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        trial_dir = overrides_file.parent.parent
        overrides = yaml.safe_load(overrides_file.read_text()) or []
        params = dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("hydra", "+recipe")))
        eval_path = trial_dir / "eval.json"
        metrics = flatten_results(json.loads(eval_path.read_text())) if eval_path.exists() else {}
        trials.append({"trial": trial_dir.name, "params": params, "metrics": metrics})
    return trials


def summarize(sweep_dir: str | Path, objective: str = DEFAULT_OBJECTIVE, direction: str = "maximize") -> list[dict]:
    """Write the summary files for a multirun directory; return the trials, best first."""
    sweep_dir = Path(sweep_dir)
    trials = _trials(sweep_dir)
    swept = sorted({k for t in trials for k in t["params"] if len({str(u["params"].get(k)) for u in trials}) > 1})
    sign = -1 if direction == "maximize" else 1

    def key(trial):
        value = trial["metrics"].get(objective)
        return (value is None, sign * value if value is not None else 0.0)

    trials.sort(key=key)
    metric_names = sorted({m for t in trials for m in t["metrics"]})
    header = ["trial", *swept, *metric_names]
    rows = [[t["trial"], *(t["params"].get(k, "") for k in swept), *(t["metrics"].get(m, "") for m in metric_names)]
            for t in trials]  # fmt: skip
    with atomic_path(sweep_dir / "sweep_summary.csv") as tmp:
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *rows])
        tmp.write_text(buffer.getvalue())
    with atomic_path(sweep_dir / "sweep_summary.md") as tmp:
        tmp.write_text(_markdown(header, rows, objective, direction))
    if swept and any(t["metrics"].get(objective) is not None for t in trials):
        _plot(sweep_dir / "sweep_summary.png", trials, swept, objective)
    return trials


def _markdown(header: list[str], rows: list[list], objective: str, direction: str) -> str:
    cells = [[f"{v:.4f}" if isinstance(v, float) else v for v in row] for row in rows]
    table = render(header, cells, markdown=True)
    return f"# Sweep summary (objective: {objective}, {direction})\n\n{table}\n"


def _as_number(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _plot(path: Path, trials: list[dict], swept: list[str], objective: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [t for t in trials if t["metrics"].get(objective) is not None]
    best = scored[0]
    fig, axes = plt.subplots(1, len(swept), figsize=(4 * len(swept), 3.5), squeeze=False)
    for ax, param in zip(axes[0], swept, strict=True):
        raw = [t["params"].get(param) for t in scored]
        numeric = all(_as_number(v) is not None for v in raw)
        xs = [_as_number(v) for v in raw] if numeric else raw
        ax.scatter(xs, [t["metrics"][objective] for t in scored], color="tab:blue")
        best_x = _as_number(best["params"].get(param)) if numeric else best["params"].get(param)
        ax.scatter([best_x], [best["metrics"][objective]], color="tab:red", marker="*", s=200, label="best")
        if numeric and all(x > 0 for x in xs) and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel(objective)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


class SweepSummary(Callback):
    """Hydra callback: summarise the sweep directory when a multirun ends."""

    def __init__(self, objective: str = DEFAULT_OBJECTIVE, direction: str = "maximize"):
        self.objective = objective
        self.direction = direction

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        direction = str(config.hydra.sweeper.get("direction", self.direction)).lower().replace("studydirection.", "")
        trials = summarize(
            sweep_dir, self.objective, direction if direction in ("maximize", "minimize") else "maximize"
        )
        print(f"sweep summary: {len(trials)} trials -> {sweep_dir / 'sweep_summary.md'}")
        finish_sweep(sweep_dir, trials[0] if trials else None, self.objective)  # the sweep's parent MLflow run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelops.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--objective", default=DEFAULT_OBJECTIVE)
    parser.add_argument("--direction", choices=["maximize", "minimize"], default="maximize")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir}: not a directory")
    trials = summarize(args.sweep_dir, args.objective, args.direction)
    if not trials:
        parser.error(f"{args.sweep_dir}: no trial directories (*/.hydra/overrides.yaml) found")
    print((args.sweep_dir / "sweep_summary.md").read_text())


if __name__ == "__main__":
    main()
