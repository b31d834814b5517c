"""`EvalResults`: metric values as attributes, plus per-example predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EvalResults:
    """The outcome of one evaluation: `results.accuracy`, `results.to_dict()`, `results.save(path)`."""

    metrics: dict[str, Any]
    model: str
    split: str
    num_examples: int
    predictions: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def __getattr__(self, name: str) -> Any:
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return metrics[name]
        raise AttributeError(f"no metric {name!r} in these results; computed: {sorted(metrics)}")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "split": self.split, "num_examples": self.num_examples, "metrics": self.metrics}

    def save(self, path: str | Path) -> None:
        """Write the metrics as JSON, atomically."""
        from modelops.io import write_json

        write_json(path, self.to_dict())

    def save_predictions(self, path: str | Path) -> None:
        """Write one JSON line per example: text, label, prediction; atomically."""
        import json

        from modelops.io import atomic_path

        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for row in self.predictions:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def comparison_table(named: dict[str, EvalResults]) -> str:
    """A side-by-side table of the same metrics for several models (e.g. base vs fine-tuned)."""
    names = list(named)
    metrics = [m for m, v in next(iter(named.values())).metrics.items() if isinstance(v, int | float)]
    lines = [f"{'metric':<14}" + "".join(f"{n:>14}" for n in names)]
    for metric in metrics:
        lines.append(f"{metric:<14}" + "".join(f"{named[n].metrics[metric]:>14.4f}" for n in names))
    return "\n".join(lines)
