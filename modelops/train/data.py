"""Training data for each task: tokenised (and cached), batched, with the validation split beside it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.distributed import is_main_process
from modelops.errors import ConfigError, DataError, JobError
from modelops.io import write_json
from modelops.log import say
from modelops.models.spec import ModelSpec
from modelops.tasks.task import Task, task_for
from modelops.tasks.truncation import summary, summary_line
from modelops.train.batching import train_loader
from modelops.train.cache import cached_dataset, default_dir, tokenization_key
from modelops.train.config import TrainConfig


@dataclass
class TrainData:
    """What the loop iterates: the train loader, and the validation rows with their collator."""

    loader: Any
    sampler: Any
    validation: Any  # tokenised validation split, or None
    eval_collate: Any
    cache_hits: dict[str, bool]
    preview: str
    tokenize_report: dict[str, dict[str, Any]]  # per split: what trainer.too_long did (`truncation.summary`)


def check_task(spec: ModelSpec, dataset, config: TrainConfig) -> TrainConfig:
    """Refuse a model task, data format and batching that do not go together, before any loading.

    Returns:
        The settings to train with: `config`, or, when it evaluates every few steps but the dataset
        has no validation split (a user's single file) and nothing else needs the evaluations,
        `config` without periodic evaluation, after printing a note that says how to add one.
    """
    if "train" not in dataset:
        raise JobError(f"the dataset has no 'train' split (splits: {dataset.split_names})")
    if len(dataset["train"]) == 0:
        raise DataError("the train split is empty: nothing to train on")
    task = task_for(spec, dataset.format, config.objective)
    task.check(spec, dataset, config)
    if config.eval_every and "validation" not in dataset:
        config = _without_periodic_eval(config, dataset)
    task.check_eval_metric(spec, config)
    return config


_ADD_VALIDATION = "add one with dataset.validation=FILE or dataset.split='{validation: 0.1}'"


def _without_periodic_eval(config: TrainConfig, dataset) -> TrainConfig:
    needs = [key for key in ("early_stopping_patience", "keep_best") if getattr(config, key)]
    if needs:
        raise ConfigError(
            f"trainer.eval_every: trainer.{needs[0]} compares evaluations, but the dataset has no 'validation' "
            f"split (splits: {dataset.split_names}); {_ADD_VALIDATION}"
        )
    if is_main_process():
        note = (f"note: trainer.eval_every={config.eval_every}: the dataset has no 'validation' split, so training "
                f"runs without periodic evaluation; {_ADD_VALIDATION}")  # fmt: skip
        say(note, err=True)
    return dataclasses.replace(config, eval_every=None)


def setup_data(
    dataset, tokenizer, spec: ModelSpec, config: TrainConfig, packed_layout: str = "block_mask"
) -> TrainData:
    """Tokenise (through the cache) and batch the train split; tokenise validation when evaluating.

    Args:
        packed_layout: with `trainer.batching=packing`, how batches keep packed examples apart
            (`modelops.tasks.packing.LAYOUTS`; `packing.packed_layout(model)` chooses it for a model).
    """
    config = check_task(spec, dataset, config)
    task = task_for(spec, dataset.format, config.objective)
    shown = config.preview_examples if task.preview_in_training else 0
    train = _split(task, dataset, "train", tokenizer, spec, config, config.batching == "packing", packed_layout, shown)
    splits = {"train": train}
    if config.eval_every:  # never packed
        splits["validation"] = _split(task, dataset, "validation", tokenizer, spec, config, False, packed_layout)
    validation = splits["validation"].rows if config.eval_every else None
    eval_collate = splits["validation"].collate if config.eval_every else None
    loader = train_loader(train.rows, train.collate, config.batch_size, config.seed, config.batching)
    hits = {name: part.hit for name, part in splits.items()}
    report = {name: part.report for name, part in splits.items() if part.report is not None}
    return TrainData(loader, loader.batch_sampler, validation, eval_collate, hits, train.preview, report)


def save_tokenize_report(report: dict[str, dict[str, Any]], data_dir: Path) -> None:
    """Write `tokenize_report.json` and say on the console (and in the log) which rows were cut or skipped."""
    write_json(data_dir / "tokenize_report.json", report)
    for part in report.values():
        line = summary_line(part)
        if line:
            say(f"{line} (all in {data_dir / 'tokenize_report.json'})", err=True)


@dataclass
class _Split:
    """One tokenised split: model columns only, its collator, cache hit, preview and too_long report (None:
    the task reports otherwise)."""

    rows: Any
    collate: Any
    hit: bool
    preview: str
    report: dict[str, Any] | None


def _split(task: Task, dataset, split: str, tokenizer, spec: ModelSpec, config: TrainConfig, packing: bool,
           layout: str, preview: int = 0) -> _Split:  # fmt: skip
    """Tokenise `split` through the cache (and pack it), with the first `preview` examples shown."""
    from modelops.tasks.packing import pack

    def build():
        return task.tokenize(dataset, split, tokenizer, spec, config, _locate(dataset, split))

    # Rows are cached unpacked too: the too_long report is read from their bookkeeping columns.
    tokenized, hit = _cached(task, dataset, split, tokenizer, spec, config, False, build)
    report = _report(task, dataset, split, tokenized, spec, config) if task.truncation_report else None
    if packing:
        rows = tokenized
        tokenized, hit = _cached(task, dataset, split, tokenizer, spec, config, True,
                                 lambda: pack(rows, spec.max_length))  # fmt: skip
    shown = task.preview(tokenized, tokenizer, preview, dataset.labels) if preview else ""
    return _Split(task.rows(tokenized), task.collator(tokenizer, spec, packing, layout), hit, shown, report)


def _cache_dir(config: TrainConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else default_dir()


def _cached(task: Task, dataset, split: str, tokenizer, spec: ModelSpec, config: TrainConfig, packing: bool, build):
    loss_on = config.loss_on if task.causal else None
    key = tokenization_key(dataset.fingerprint(split), tokenizer, dataset.format, spec.max_length, loss_on, packing)
    key = {**key, "too_long": config.too_long, **task.cache_key(dataset, spec, config)}
    return cached_dataset(key, build, _cache_dir(config))


def _locate(dataset, split: str):
    """Row indices of `split` -> their file:line and split, for messages."""
    return lambda rows: [f"{place} (split {split!r})" for place in dataset.locate(split, rows)]


def _report(task: Task, dataset, split: str, tokenized, spec: ModelSpec, config: TrainConfig) -> dict[str, Any]:
    settings = {"max_length": spec.max_length, "too_long": config.too_long}
    if task.causal:
        settings["truncation_side"] = config.truncation_side
    report = summary(tokenized, len(dataset[split]), split, _locate(dataset, split), settings)
    if report["rows_out"] == 0:
        raise DataError(
            f"split {split!r}: no example left after tokenisation: all {report['rows_in']} rows are longer than "
            f"model.max_length={spec.max_length} (trainer.too_long={config.too_long!r})"
        )
    return report


def preview_text(dataset, spec: ModelSpec, config: TrainConfig, n: int = 3) -> str:
    """The first `n` training examples as the model will see them, with the tokens that carry loss marked.

    Loads only the tokenizer (not the model); goes through the same tokenisation and cache as training.
    """
    from modelops.models.loading import load_tokenizer

    config = check_task(spec, dataset, config)
    task = task_for(spec, dataset.format, config.objective)
    tokenizer = load_tokenizer(spec.name_or_path, spec.trust_remote_code)
    return _split(
        task, dataset, "train", tokenizer, spec, config, config.batching == "packing", "block_mask", n
    ).preview
