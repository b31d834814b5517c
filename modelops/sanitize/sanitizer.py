"""`DatasetSanitizer`: run the configured steps over every split and report what each removed.

Between steps the rows stay in Arrow: the REASON column is counted with `pyarrow.compute`, the
kept rows are taken with one Arrow `take`, and the rejected rows are kept as small Arrow tables
(one per split and step) that are written to ``rejected.jsonl`` only when the report is saved.
So memory follows the table, not the number of rows times Python objects.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelops.errors import ConfigError
from modelops.sanitize.step import MODIFIED, REASON, StepContext, row_texts

_EXAMPLES = 3
_EVAL_SPLITS = ("validation", "test")
_WHERE = "sanitizer.steps"


def default_steps() -> list:
    """Normalise, drop empty rows, exact dedup: what `DatasetSanitizer()` runs by default."""
    from modelops.sanitize.exact_dedup import ExactDedup
    from modelops.sanitize.filters import DropEmpty
    from modelops.sanitize.normalize import Normalize

    return [Normalize(), DropEmpty(), ExactDedup()]


class RejectedRows:
    """The rejected rows of a run, held as Arrow tables; reads as a sequence of dicts.

    Each dict is ``{"split", "step", "reason", "row"}`` with ``row`` the row as it entered the step.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[str, str, Any]] = []  # (split, step, datasets.Dataset with REASON)

    def add(self, split: str, step: str, table) -> None:
        if len(table):
            self._parts.append((split, step, table))

    def __len__(self) -> int:
        return sum(len(table) for _, _, table in self._parts)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for split, step, table in self._parts:
            for batch in table.iter(batch_size=1000):
                reasons = batch.pop(REASON)
                for i, reason in enumerate(reasons):
                    row = {name: column[i] for name, column in batch.items()}
                    yield {"split": split, "step": step, "reason": reason, "row": row}

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = index + len(self) if index < 0 else index
        for split, step, table in self._parts:
            if index < len(table):
                row = table[index]
                return {"split": split, "step": step, "reason": row.pop(REASON), "row": row}
            index -= len(table)
        raise IndexError("rejected row index out of range")


@dataclass
class SanitizeReport:
    """What each step did to each split, and the rejected rows with their step and reason."""

    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: RejectedRows = field(default_factory=RejectedRows)

    def to_dict(self) -> dict[str, Any]:
        return {"splits": self.splits, "rejected_rows": len(self.rejected)}

    def table(self) -> str:
        """A short plain-text table: split, step, rows in, rows out, modified, seconds, top reasons."""
        lines = [f"{'split':<11}{'step':<16}{'in':>9}{'out':>9}{'modified':>10}{'s':>7}  reasons"]
        for split, info in self.splits.items():
            for s in info["steps"]:
                reasons = ", ".join(f"{k}={v}" for k, v in list(s["reasons"].items())[:3])
                lines.append(
                    f"{split:<11}{s['step']:<16}{s['rows_in']:>9}{s['rows_out']:>9}{s['modified']:>10}"
                    f"{s.get('seconds', 0):>7.2f}  {reasons}"
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
        steps: step objects (see `modelops.sanitize.step`), short names (see
            `modelops.sanitize.registry.STEPS`) or config mappings (``{"name": "near_dedup",
            "threshold": 0.8}`` or ``{"_target_": ..., ...}``); default normalise, drop empty, exact dedup.
        num_proc: worker processes for batched steps.
        batch_size: rows per batch.
        splits: which splits to clean (default all); the others pass through unchanged.
        tokenizer: a tokenizer, or a local path / hub id to load one with `AutoTokenizer`, for
            token-length limits (``length`` with ``unit: tokens``).

    Raises:
        ConfigError: a bad step entry or parameter, naming its key (``sanitizer.steps.2.threshold``).
    """

    def __init__(
        self,
        steps: list | None = None,
        num_proc: int = 1,
        batch_size: int = 1000,
        splits: list[str] | None = None,
        tokenizer: Any = None,
    ):
        from modelops.sanitize.registry import build_steps

        if num_proc < 1:
            raise ConfigError(f"sanitizer.num_proc: must be >= 1, got {num_proc}")
        if batch_size < 1:
            raise ConfigError(f"sanitizer.batch_size: must be >= 1, got {batch_size}")
        self.steps = default_steps() if steps is None else build_steps(list(steps), _WHERE)
        self.num_proc = num_proc
        self.batch_size = batch_size
        self.splits = list(splits) if splits is not None else None
        self.tokenizer = _load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.report = SanitizeReport()

    def sanitize(self, dataset):
        """Return a new, cleaned `Dataset`; the report of this call is in `self.report`.

        Raises:
            ConfigError: a step cannot run on this dataset (its format, a missing tokenizer),
                before any row is read.
        """
        self.check(dataset.format)
        steps = self.active_steps(dataset.format)
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
                tokenizer=self.tokenizer,
            )
            cleaned[name] = self._sanitize_split(name, dataset[name], ctx, steps)
        return dataset.replace(**cleaned)

    def active_steps(self, format: str) -> list:
        """The steps that run on `format` data: all but those whose entry is `only_for` other formats."""
        return [step for step in self.steps if format in getattr(step, "only_for", (format,))]

    def check(self, format: str) -> None:
        """Raise `ConfigError` naming ``sanitizer.steps.<i>`` for the first step that cannot run on `format`."""
        from modelops.sanitize.registry import rekey

        ctx = StepContext(format=format, tokenizer=self.tokenizer)
        for i, step in enumerate(self.steps):
            if format not in getattr(step, "only_for", (format,)):
                continue  # skipped on this format, so nothing to check
            name = getattr(step, "name", type(step).__name__)
            formats = getattr(step, "formats", None)
            if formats is not None and format not in formats:
                raise ConfigError(
                    f"{_WHERE}.{i}: step {name!r} works on {list(formats)} data, not on {format!r} data; "
                    "remove it from the steps for this dataset"
                )
            check = getattr(step, "check", None)
            if check is not None:
                try:
                    check(ctx)
                except ConfigError as exc:
                    raise rekey(exc, f"{_WHERE}.{i}") from exc

    def _eval_texts(self, dataset) -> list[str]:
        if not any(getattr(step, "uses_eval_texts", False) for step in self.active_steps(dataset.format)):
            return []
        texts: list[str] = []
        ctx = StepContext(format=dataset.format)
        for name in _EVAL_SPLITS:
            if name in dataset:
                for batch in dataset[name].iter(batch_size=self.batch_size):
                    texts.extend(row_texts(batch, ctx))
        return texts

    def _sanitize_split(self, split: str, table, ctx: StepContext, steps: list):
        summary = {"rows_in": len(table), "steps": []}
        for step in steps:
            started = time.perf_counter()
            table, entry = self._run_step(split, step, table, ctx)
            summary["steps"].append({**entry, "seconds": round(time.perf_counter() - started, 3)})
        summary["rows_out"] = len(table)
        self.report.splits[split] = summary
        return table

    def _run_step(self, split: str, step, table, ctx: StepContext):
        import numpy as np
        import pyarrow.compute as pc

        name = getattr(step, "name", type(step).__name__)
        marked = step(table, ctx)
        if marked._indices is not None:  # a user's step may hand back a selection
            marked = _take(marked, np.arange(len(marked)))
        reasons = marked.data.column(REASON)
        rejected = np.flatnonzero(pc.not_equal(reasons, "").to_numpy(zero_copy_only=False))
        data_columns = [c for c in marked.column_names if c not in (REASON, MODIFIED)]
        # Only the rejected rows are copied out; the kept ones become the next step's input.
        dropped = _take(marked.select_columns([*data_columns, REASON]), rejected)
        self.report.rejected.add(split, name, dropped)
        kept = marked.select_columns(data_columns)
        if len(rejected):
            keep = np.ones(len(marked), dtype=bool)
            keep[rejected] = False
            kept = _take(kept, np.flatnonzero(keep))
        entry = {
            "step": name,
            "rows_in": len(marked),
            "rows_out": len(kept),
            "modified": int(pc.sum(marked.data.column(MODIFIED)).as_py() or 0),
            "reasons": _reason_counts(dropped),
            "examples": [{"reason": r["reason"], "row": r["row"]} for r in _examples(dropped)],
            **getattr(step, "notes", {}),
        }
        return kept, entry


def _take(table, indices):
    """The rows at `indices` as a new in-memory table: one Arrow `take` (`select` + `flatten_indices` is a map)."""
    import pyarrow as pa

    from modelops.sanitize.step import arrow_dataset

    return arrow_dataset(table.data.table.take(pa.array(indices, type=pa.int64())), table.features)


def _reason_counts(dropped) -> dict[str, int]:
    """Rejected rows per reason kind (the part of the reason before the first colon), most first."""
    import pyarrow.compute as pc

    if not len(dropped):
        return {}
    kinds = pc.list_element(pc.split_pattern(dropped.data.column(REASON), ":", max_splits=1), 0)
    counts = pc.value_counts(kinds).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: (-c["counts"], c["values"]))}


def _examples(dropped) -> list[dict[str, Any]]:
    rows = dropped.select(range(min(_EXAMPLES, len(dropped)))).to_list()
    return [{"reason": row.pop(REASON), "row": row} for row in rows]


def _load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ref)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"sanitizer.tokenizer: cannot load a tokenizer from {ref!r}: {exc}") from exc
