"""`DatasetSanitizer`: run the configured steps over every split and report what each removed or flagged.

Between steps the rows stay in Arrow: the REASON column is counted with `pyarrow.compute`, the
kept rows are taken with one Arrow `take`, and the rejected rows are kept as small Arrow tables
(one per split and step) that are written to ``rejected.jsonl`` (removed) and ``flagged.jsonl``
(found on a split the step does not remove from, kept) only when the report is saved. So memory
follows the table, not the number of rows times Python objects.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelops.config.paths import conf_dir
from modelops.errors import ConfigError
from modelops.io import atomic_path, write_json
from modelops.sanitize.registry import build_steps, rekey
from modelops.sanitize.step import (
    EVAL_SPLITS,
    MODIFIED,
    REASON,
    SanitizeStep,
    StepContext,
    arrow_dataset,
    arrow_table,
    eval_row_texts,
)
from modelops.tables import render

_EXAMPLES = 3
_WHERE = "sanitizer.steps"


@functools.lru_cache(maxsize=1)
def default_option() -> dict[str, Any]:
    """``conf/sanitizer/default.yaml`` as a dict: the one definition of what `DatasetSanitizer()` runs."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(conf_dir() / "sanitizer" / "default.yaml"), resolve=True)


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
    """What each step did to each split; the rows it removed, and the rows it flagged but kept.

    A step's entry: ``rows_in``, ``rows_out``, ``modified``, ``reasons`` (removed rows per reason
    kind), ``flagged`` (rows found but kept, per reason kind: on a split the step does not remove
    from, such as test), ``examples`` (a few of either, with reason and row) and ``seconds``.
    """

    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: RejectedRows = field(default_factory=RejectedRows)
    flagged: RejectedRows = field(default_factory=RejectedRows)

    def to_dict(self) -> dict[str, Any]:
        return {"splits": self.splits, "rejected_rows": len(self.rejected), "flagged_rows": len(self.flagged)}

    def table(self) -> str:
        """A short plain-text table: split, step, rows in, rows out, modified, seconds, top reasons."""
        rows = []
        for split, info in self.splits.items():
            for s in info["steps"]:
                reasons = ", ".join(f"{k}={v}" for k, v in list(s["reasons"].items())[:3])
                flagged = ", ".join(f"{k}={v}" for k, v in list(s["flagged"].items())[:3])
                reasons = "; ".join(filter(None, [reasons, flagged and f"flagged, kept: {flagged}"]))
                rows.append([split, s["step"], s["rows_in"], s["rows_out"], s["modified"],
                             f"{s.get('seconds', 0):.2f}", reasons])  # fmt: skip
        return render(["split", "step", "in", "out", "modified", "s", "reasons"], rows, right=(2, 3, 4, 5))

    def save(self, directory) -> None:
        """Write `sanitize_report.json`, `rejected.jsonl` and `flagged.jsonl` into `directory`, atomically."""
        from pathlib import Path

        directory = Path(directory)
        write_json(directory / "sanitize_report.json", self.to_dict())
        _write_rows(directory / "rejected.jsonl", self.rejected)
        _write_rows(directory / "flagged.jsonl", self.flagged)


def _write_rows(path, rows: RejectedRows) -> None:
    import json

    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


class DatasetSanitizer:
    """Clean a `Dataset`: each step, in order, over each split; the input is never changed.

    ``DatasetSanitizer()`` runs what ``sanitizer=default`` runs: its steps and values are read
    from ``conf/sanitizer/default.yaml``, the one place they are defined.

    By default no step removes rows from validation or test: there they are normalised (rewrites
    apply) and what a step would remove is reported as flagged, so scores stay comparable with
    anyone else's on the same test set. A step's ``splits`` option changes that per step.

    Args:
        steps: step objects (`modelops.sanitize.step.SanitizeStep`), short names (see
            `modelops.sanitize.registry.STEPS`) or config mappings (``{"name": "near_dedup",
            "threshold": 0.8, "splits": ["train", "test"]}`` or ``{"_target_": ..., ...}``);
            default: those of ``conf/sanitizer/default.yaml``.
        num_proc: worker processes for batched steps (default: the default option's).
        batch_size: rows per batch (default: the default option's).
        splits: which splits to clean (default all); the others pass through unchanged.
        tokenizer: a tokenizer, or a local path / hub id to load one with `AutoTokenizer`, for
            token-length limits (``length`` with ``unit: tokens``).

    Raises:
        ConfigError: a bad step entry or parameter, naming its key (``sanitizer.steps.2.threshold``).
    """

    def __init__(
        self,
        steps: list | None = None,
        num_proc: int | None = None,
        batch_size: int | None = None,
        splits: list[str] | None = None,
        tokenizer: Any = None,
    ):
        defaults = default_option()
        num_proc = defaults["num_proc"] if num_proc is None else num_proc
        batch_size = defaults["batch_size"] if batch_size is None else batch_size
        if num_proc < 1:
            raise ConfigError(f"sanitizer.num_proc: must be >= 1, got {num_proc}")
        if batch_size < 1:
            raise ConfigError(f"sanitizer.batch_size: must be >= 1, got {batch_size}")
        self.steps: list[SanitizeStep] = build_steps(list(defaults["steps"] if steps is None else steps), _WHERE)
        self.num_proc = num_proc
        self.batch_size = batch_size
        self.splits = list(splits) if splits is not None else None
        self.tokenizer = _load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.report = SanitizeReport()

    def sanitize(self, dataset):
        """Return a new, cleaned `Dataset`; the report of this call is in `self.report`.

        Raises:
            ConfigError: a step cannot run on this dataset (its format, a missing tokenizer, a
                split it names that the dataset lacks), before any row is read.
        """
        self.check(dataset.format, dataset.split_names)
        steps = self.active_steps(dataset.format)
        self.report = SanitizeReport()
        eval_texts = self._eval_texts(dataset)
        names = [n for n in dataset.split_names if self.splits is None or n in self.splits]
        train_inputs: dict[int, Any] = {}  # step index -> train as it entered that step (steps that read it)
        cleaned, kept_rows = {}, {}
        for name in sorted(names, key=lambda n: n != "train"):  # train first: other splits compare with it
            ctx = StepContext(
                format=dataset.format,
                num_proc=self.num_proc,
                batch_size=self.batch_size,
                # Decontamination compares training rows against the evaluation splits only.
                eval_texts=eval_texts if name not in EVAL_SPLITS else [],
                tokenizer=self.tokenizer,
            )
            cleaned[name], kept_rows[name] = self._sanitize_split(name, dataset[name], ctx, steps, train_inputs)
        self.report.splits = {name: self.report.splits[name] for name in names}  # in the dataset's order
        return dataset.replace(kept_rows=kept_rows, **cleaned)

    def active_steps(self, format: str) -> list[SanitizeStep]:
        """The steps that run on `format` data: all but those whose entry is `only_for` other formats."""
        return [step for step in self.steps if step.runs_on(format)]

    def check(self, format: str, split_names: list[str] | None = None) -> None:
        """Raise `ConfigError` naming ``sanitizer.steps.<i>`` for the first step that cannot run on this data."""
        ctx = StepContext(format=format, tokenizer=self.tokenizer)
        for i, step in enumerate(self.steps):
            if not step.runs_on(format):
                continue  # skipped on this format, so nothing to check
            if step.formats is not None and format not in step.formats:
                raise ConfigError(
                    f"{_WHERE}.{i}: step {step.name!r} works on {list(step.formats)} data, not on {format!r} data; "
                    "remove it from the steps for this dataset"
                )
            # The usual names may be listed for data that lacks some of them; any other name is likely a typo.
            known = {*(split_names or []), "train", *EVAL_SPLITS}
            unknown = [s for s in step.splits or [] if split_names is not None and s not in known]
            if unknown:
                raise ConfigError(f"{_WHERE}.{i}.splits: {unknown} not among this dataset's splits {split_names}")
            try:
                step.check(ctx)
            except ConfigError as exc:
                raise rekey(exc, f"{_WHERE}.{i}") from exc

    def _eval_texts(self, dataset) -> list[str]:
        if not any(step.uses_eval_texts for step in self.active_steps(dataset.format)):
            return []
        texts: list[str] = []
        ctx = StepContext(format=dataset.format)
        for name in EVAL_SPLITS:
            if name in dataset:
                for batch in dataset[name].iter(batch_size=self.batch_size):
                    texts.extend(eval_row_texts(batch, ctx))
        return texts

    def _sanitize_split(self, split: str, table, ctx: StepContext, steps: list, train_inputs: dict[int, Any]):
        """The cleaned split, and the input index of each row it kept (so rows keep their source line)."""
        import numpy as np

        summary = {"rows_in": len(table), "steps": []}
        rows = np.arange(len(table))
        for i, step in enumerate(steps):
            if step.reads_train and split == "train":
                train_inputs[i] = table
            step_ctx = dataclasses.replace(ctx, train=train_inputs.get(i) if split != "train" else None)
            started = time.perf_counter()
            table, entry, kept = self._run_step(split, step, table, step_ctx)
            rows = rows if kept is None else rows[kept]
            summary["steps"].append({**entry, "seconds": round(time.perf_counter() - started, 3)})
        summary["rows_out"] = len(table)
        self.report.splits[split] = summary
        return table, rows

    def _run_step(self, split: str, step: SanitizeStep, table, ctx: StepContext):
        import numpy as np
        import pyarrow.compute as pc

        marked = step(table, ctx)
        data = arrow_table(marked)  # a user's step may hand back a selection: this applies it
        found = np.flatnonzero(pc.not_equal(data.column(REASON), "").to_numpy(zero_copy_only=False))
        data_columns = [c for c in marked.column_names if c not in (REASON, MODIFIED)]
        # Only the found rows are copied out; the kept ones become the next step's input.
        rows = _take(data.select([*data_columns, REASON]), found, marked.features)
        kept = data.select(data_columns)
        removes = step.removes_from(split)
        (self.report.rejected if removes else self.report.flagged).add(split, step.name, rows)
        kept_rows = None
        if removes and len(found):
            keep = np.ones(len(data), dtype=bool)
            keep[found] = False
            kept_rows = np.flatnonzero(keep)
            kept = kept.take(kept_rows)
        counts = _reason_counts(rows)
        entry = {
            "step": step.name,
            "rows_in": len(data),
            "rows_out": len(kept),
            "modified": int(pc.sum(data.column(MODIFIED)).as_py() or 0),
            "reasons": counts if removes else {},
            "flagged": {} if removes else counts,
            "examples": [{"reason": r["reason"], "row": r["row"]} for r in _examples(rows)],
            **step.notes,
        }
        return _take(kept, None, marked.features), entry, kept_rows


def _take(data, indices, features):
    """A `datasets.Dataset` over the rows of Arrow table `data` at `indices` (all when None): one `take`."""
    import datasets
    import pyarrow as pa

    if indices is not None:
        data = data.take(pa.array(indices, type=pa.int64()))
    return arrow_dataset(data, datasets.Features({name: features[name] for name in data.column_names}))


def _reason_counts(rows) -> dict[str, int]:
    """Rows per reason kind (the part of the reason before the first colon), most first."""
    import pyarrow.compute as pc

    if not len(rows):
        return {}
    kinds = pc.list_element(pc.split_pattern(arrow_table(rows).column(REASON), ":", max_splits=1), 0)
    counts = pc.value_counts(kinds).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: (-c["counts"], c["values"]))}


def _examples(rows) -> list[dict[str, Any]]:
    picked = rows.select(range(min(_EXAMPLES, len(rows)))).to_list()
    return [{"reason": row.pop(REASON), "row": row} for row in picked]


def _load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ref)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"sanitizer.tokenizer: cannot load a tokenizer from {ref!r}: {exc}") from exc
