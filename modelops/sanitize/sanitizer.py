"""`DatasetSanitizer`: run the configured steps over every split and report what each removed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from modelops.sanitize.step import MODIFIED, REASON, StepContext, row_texts

_EXAMPLES = 3
_EVAL_SPLITS = ("validation", "test")


def default_steps() -> list:
    """Normalise, drop empty rows, exact dedup: what `DatasetSanitizer()` runs by default."""
    from modelops.sanitize.exact_dedup import ExactDedup
    from modelops.sanitize.filters import DropEmpty
    from modelops.sanitize.normalize import Normalize

    return [Normalize(), DropEmpty(), ExactDedup()]


@dataclass
class SanitizeReport:
    """What each step did to each split, and the rejected rows with their step and reason."""

    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"splits": self.splits, "rejected_rows": len(self.rejected)}

    def table(self) -> str:
        """A short plain-text table: split, step, rows in, rows out, modified, top reasons."""
        lines = [f"{'split':<11}{'step':<15}{'in':>8}{'out':>8}{'modified':>10}  reasons"]
        for split, info in self.splits.items():
            for s in info["steps"]:
                reasons = ", ".join(f"{k}={v}" for k, v in list(s["reasons"].items())[:3])
                lines.append(
                    f"{split:<11}{s['step']:<15}{s['rows_in']:>8}{s['rows_out']:>8}{s['modified']:>10}  {reasons}"
                )
        return "\n".join(lines)

    def save(self, directory) -> None:
        """Write `sanitize_report.json` and `rejected.jsonl` into `directory`, atomically."""
        import json
        from pathlib import Path

        from modelops.io import atomic_path, write_json

        directory = Path(directory)
        write_json(directory / "sanitize_report.json", self.to_dict())
        with atomic_path(directory / "rejected.jsonl") as tmp, tmp.open("w", encoding="utf-8") as fh:
            for row in self.rejected:
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


class DatasetSanitizer:
    """Clean a `Dataset`: each step, in order, over each split; the input is never changed.

    Args:
        steps: step objects (see `modelops.sanitize.step`); default normalise, drop empty, exact dedup.
        num_proc: worker processes for batched steps.
        batch_size: rows per batch.
        splits: which splits to clean (default all).
    """

    def __init__(self, steps: list | None = None, num_proc: int = 1, batch_size: int = 1000, splits=None):
        self.steps = list(default_steps() if steps is None else steps)
        self.num_proc = num_proc
        self.batch_size = batch_size
        self.splits = list(splits) if splits is not None else None
        self.report = SanitizeReport()

    def sanitize(self, dataset):
        """Return a new, cleaned `Dataset`; the report of this call is in `self.report`."""
        self.report = SanitizeReport()
        eval_texts = self._eval_texts(dataset)
        cleaned = {}
        for name in dataset.split_names:
            if self.splits is not None and name not in self.splits:
                continue
            ctx = StepContext(
                format=dataset.format,
                num_proc=self.num_proc,
                batch_size=self.batch_size,
                # Decontamination compares training rows against the evaluation splits only.
                eval_texts=eval_texts if name not in _EVAL_SPLITS else [],
            )
            cleaned[name] = self._sanitize_split(name, dataset[name], ctx)
        return dataset.replace(**cleaned)

    def _eval_texts(self, dataset) -> list[str]:
        texts: list[str] = []
        ctx = StepContext(format=dataset.format)
        for name in _EVAL_SPLITS:
            if name in dataset:
                texts.extend(row_texts(dataset[name][:], ctx))
        return texts

    def _sanitize_split(self, split: str, table, ctx: StepContext):
        summary = {"rows_in": len(table), "steps": []}
        for step in self.steps:
            marked = step(table, ctx)
            reasons = marked[REASON]
            modified = sum(marked[MODIFIED])
            rejected_idx = [i for i, r in enumerate(reasons) if r]
            self._record_rejected(split, step.name, marked, rejected_idx, reasons)
            kept = marked.filter(lambda r: not r, input_columns=[REASON]) if rejected_idx else marked
            table = kept.remove_columns([REASON, MODIFIED])
            counts = Counter(r.split(":", 1)[0] for r in reasons if r)
            summary["steps"].append({
                "step": step.name,
                "rows_in": len(reasons),
                "rows_out": len(table),
                "modified": modified,
                "reasons": dict(counts.most_common()),
                "examples": [{"reason": reasons[i], "row": marked[i]} for i in rejected_idx[:_EXAMPLES]],
                **getattr(step, "notes", {}),
            })  # fmt: skip
        summary["rows_out"] = len(table)
        self.report.splits[split] = summary
        return table

    def _record_rejected(self, split: str, step: str, marked, indices: list[int], reasons: list[str]) -> None:
        if not indices:
            return
        rows = marked.select(indices).remove_columns([REASON, MODIFIED]).to_list()
        for i, row in zip(indices, rows, strict=True):
            self.report.rejected.append({"split": split, "step": step, "reason": reasons[i], "row": row})
