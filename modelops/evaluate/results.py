"""`EvalResults`: metric values as attributes, per-example predictions, saving, and base-vs-tuned tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.errors import EvaluationError
from modelops.evaluate.plots import plot_confusion_matrix
from modelops.io import atomic_path, write_json
from modelops.tables import render


@dataclass
class EvalResults:
    """The outcome of one evaluation: ``results.accuracy``, ``results.to_dict()``, ``results.save(path)``.

    Attributes:
        metrics: metric name -> value (``confusion_matrix`` is a list of rows: true label, then predicted).
        model: the model evaluated (the reference as given, or its directory).
        split: the split scored.
        num_examples: rows scored.
        predictions: one dict per example (classification: text, label, prediction; generation: prompt,
            reference, prediction, exact_match); empty when only LM metrics were asked for.
        task: ``seq_cls`` or ``causal_lm``.
        labels: class names in id order (classification data).
        details: how it was scored: ``scored_on`` (``answer`` or ``all``, LM metrics), ``extraction`` (the answer
            filters, ``match``, and the rows whose reference gave no answer), ``deltas`` where compared.
    """

    metrics: dict[str, Any]
    model: str
    split: str
    num_examples: int
    predictions: list[dict[str, Any]] = field(default_factory=list, repr=False)
    task: str | None = None
    labels: list[str] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return metrics[name]
        raise AttributeError(f"no metric {name!r} in these results; computed: {sorted(metrics)}")

    def to_dict(self) -> dict[str, Any]:
        """Everything but the per-example predictions, JSON-serialisable."""
        return {
            "model": self.model, "split": self.split, "num_examples": self.num_examples,
            "task": self.task, "labels": self.labels, "metrics": self.metrics, "details": self.details,
        }  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Write the results, atomically.

        A path ending in ``.json`` gets the metrics (``to_dict``) only. Any other path is a directory (a run
        directory, say) that gets ``eval.json``, ``predictions.jsonl`` and, when the confusion matrix was
        computed, ``confusion_matrix.png``.
        """
        path = Path(path)
        if path.suffix == ".json":
            return write_json(path, self.to_dict())
        write_json(path / "eval.json", self.to_dict())
        self.save_predictions(path / "predictions.jsonl")
        return path

    def save_predictions(self, path: str | Path) -> Path:
        """Write one JSON line per example, atomically; with the confusion matrix, also its plot beside it.

        The plot is ``confusion_matrix.png`` next to ``predictions.jsonl`` (``base_confusion_matrix.png`` next to
        ``base_predictions.jsonl``, ``<stem>_confusion_matrix.png`` for other names).
        """
        import json

        path = Path(path)
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for row in self.predictions:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        if "confusion_matrix" in self.metrics and self.labels:
            stem = path.stem.replace("predictions", "confusion_matrix")
            if stem == path.stem:
                stem += "_confusion_matrix"
            self.plot_confusion_matrix(path.with_name(stem + ".png"))
        return path

    def plot_confusion_matrix(self, path: str | Path) -> Path:
        """Draw the confusion matrix (counts, true label down, predicted across) as a PNG, atomically."""
        if "confusion_matrix" not in self.metrics:
            raise EvaluationError("no confusion_matrix in these results; add it to the metrics")
        title = f"{_short_model(self.model)} ({self.split})"
        return plot_confusion_matrix(self.metrics["confusion_matrix"], self.labels or [], path, title)


def comparison_table(named: dict[str, EvalResults], deltas: dict[str, dict[str, Any]] | None = None) -> str:
    """A side-by-side table of the numeric metrics of several models (e.g. base vs fine-tuned).

    Metrics are listed in the order the first model has them; a model without one shows ``-``. With exactly
    two models a ``delta`` column gives second minus first; a metric in `deltas` (`modelops.stats.paired_delta`
    results) also shows its interval and McNemar p-value, and ``~`` marks an interval that includes 0. The
    footer says what LM metrics were scored on.
    """
    names = list(named)
    deltas = deltas or {}
    metrics: list[str] = []
    for result in named.values():
        metrics += [m for m, v in result.metrics.items() if _is_number(v) and m not in metrics]
    header = ["metric", *names, *(["delta"] if len(names) == 2 else []), *(["interval"] if deltas else [])]
    rows = []
    for metric in metrics:
        values = [named[n].metrics.get(metric) for n in names]
        cells = [f"{v:.4f}" if _is_number(v) else "-" for v in values]
        if len(names) == 2:
            cells.append(f"{values[1] - values[0]:+.4f}" if all(_is_number(v) for v in values) else "-")
        if deltas:
            cells.append(_interval(deltas[metric]) if metric in deltas else "")
        rows.append([metric, *cells])
    lines = [render(header, rows, right=range(1, len(header) - (1 if deltas else 0)))]
    if deltas:
        some = next(iter(deltas.values()))
        lines.append(
            f"interval: paired bootstrap {some['confidence']:.0%} interval of the delta ({some['resamples']} "
            f"resamples, seed {some['seed']}); p: McNemar's exact test; ~: the interval includes 0 (may be noise)"
        )
        if deltas.keys() & {"loss", "perplexity", "bits_per_byte"}:
            lines.append(
                "loss/perplexity/bits_per_byte intervals: ratio of the resampled rows' summed NLL and tokens/bytes"
            )
    scored_on = {r.details.get("scored_on") for r in named.values()} - {None}
    if scored_on:
        lines.append(f"loss/perplexity/bits_per_byte scored on: {', '.join(sorted(scored_on))} tokens")
    return "\n".join(lines)


def _short_model(model: str) -> str:
    """A title-sized name: a model directory as its last two parts (`<run>/model`), a reference as it is."""
    parts = Path(model).parts
    return str(Path(*parts[-2:])) if len(parts) > 2 and Path(model).is_absolute() else model


def _interval(delta: dict[str, Any]) -> str:
    text = f"[{delta['low']:+.4f}, {delta['high']:+.4f}]"
    if "mcnemar_p" in delta:
        text += f" p={delta['mcnemar_p']:.3g}"
    return text + (" ~" if delta["includes_zero"] else "")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
