"""Training data for each task: tokenised (and cached), batched, with the validation split beside it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.distributed import is_main_process
from modelops.errors import ConfigError, DataError, JobError
from modelops.log import say
from modelops.models.spec import ModelSpec
from modelops.train.batching import (
    CountingCollator,
    classification_collator,
    model_columns,
    tokenize_classification,
    train_loader,
)
from modelops.train.config import TrainConfig

CAUSAL_FORMATS = ("text", "completion", "instruction", "chat", "preference", "prompt")


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
    _check_objective(spec, dataset, config)
    if spec.task == "seq_cls" and dataset.format != "classification":
        raise ConfigError(
            f"model.task=seq_cls needs classification data, but the dataset's format is {dataset.format!r}; "
            "use a causal LM (model.task=causal_lm, e.g. model=tiny_llama)"
        )
    if spec.task == "causal_lm" and dataset.format not in CAUSAL_FORMATS:
        raise ConfigError(
            f"model.task=causal_lm trains on {list(CAUSAL_FORMATS)} data, not {dataset.format!r}; "
            "use a classifier (model.task=seq_cls, e.g. model=minilm_cls)"
        )
    if spec.task == "seq_cls" and len(dataset.labels or []) < 2:
        raise DataError(
            f"a classifier needs at least two classes; the train data has {len(dataset.labels or [])} "
            f"({dataset.labels}): give rows of another class, or train a causal LM on text data"
        )
    if spec.task == "seq_cls" and config.truncation_side != TrainConfig.truncation_side:
        raise ConfigError(
            f"trainer.truncation_side={config.truncation_side!r}: only causal LMs use it (the side of an over-long "
            "prompt to cut); a classifier's over-long text is cut at its end"
        )
    if config.batching == "packing" and spec.task != "causal_lm":
        raise ConfigError("trainer.batching=packing: only for causal LMs; use group_by_length for classifiers")
    if config.eval_every and "validation" not in dataset:
        config = _without_periodic_eval(config, dataset)
    from modelops.train.config import EVAL_METRICS

    tracked = {"sft": spec.task, "grpo": "grpo"}.get(config.objective, "preference")
    if config.eval_every and config.eval_metric not in EVAL_METRICS[tracked]:
        raise ConfigError(
            f"trainer.eval_metric: {config.eval_metric!r} is not tracked for {spec.task}"
            f"{f' with trainer.objective={config.objective}' if config.objective != 'sft' else ''}; "
            f"use one of {list(EVAL_METRICS[tracked])}"
        )
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


def _check_objective(spec: ModelSpec, dataset, config: TrainConfig) -> None:
    """A preference objective needs a causal LM and preference pairs; they are trained on nothing else."""
    if config.objective == "sft":
        return
    if config.objective == "grpo" and spec.task != "causal_lm":
        raise ConfigError(f"trainer.objective=grpo: generates completions, for causal LMs, not model.task={spec.task}")
    if spec.task != "causal_lm":
        raise ConfigError(
            f"trainer.objective={config.objective}: preference tuning is for causal LMs, not model.task={spec.task}"
        )
    if config.objective == "grpo":
        _check_grpo(dataset, config)
        return
    if dataset.format != "preference":
        raise ConfigError(
            f"trainer.objective={config.objective} trains on preference pairs (prompt, chosen, rejected), "
            f"not {dataset.format!r} data; use trainer.objective=sft, or a preference dataset"
        )
    if config.batching == "packing":
        raise ConfigError(f"trainer.batching=packing: not with trainer.objective={config.objective}; "
                          "use group_by_length (pairs of similar length are batched together)")  # fmt: skip
    if config.truncation_side != "left":
        raise ConfigError(
            f"trainer.truncation_side={config.truncation_side!r}: not with trainer.objective={config.objective}; "
            "an over-long pair's prompt is cut from the left (its end, next to the responses, is kept)"
        )


def _check_grpo(dataset, config: TrainConfig) -> None:
    """GRPO samples completions of `prompt` rows and scores them with reward functions."""
    from modelops.tasks.rewards import build_rewards

    if dataset.format != "prompt":
        hint = " (a prompt/answer file is read as completion data: set dataset.format=prompt)" if (
            dataset.format == "completion") else ""  # fmt: skip
        raise ConfigError(
            f"trainer.objective=grpo samples completions of prompts: it needs `prompt` data (a prompt column, text "
            f"or chat messages, and the columns the rewards read), not {dataset.format!r}{hint}"
        )
    if config.batching == "packing":
        raise ConfigError("trainer.batching=packing: not with trainer.objective=grpo (prompts are generated from)")
    if not config.rewards:
        raise ConfigError(
            "trainer.rewards: trainer.objective=grpo needs at least one reward function, e.g. "
            "trainer.rewards=[{_target_: modelops.tasks.rewards.correctness, _partial_: true, column: answer}]"
        )
    build_rewards(config.rewards, config.reward_weights)  # names a bad entry before anything is loaded


def setup_data(
    dataset, tokenizer, spec: ModelSpec, config: TrainConfig, packed_layout: str = "block_mask"
) -> TrainData:
    """Tokenise (through the cache) and batch the train split; tokenise validation when evaluating.

    Args:
        packed_layout: with `trainer.batching=packing`, how batches keep packed examples apart
            (`modelops.tasks.packing.LAYOUTS`; `packing.packed_layout(model)` chooses it for a model).
    """
    config = check_task(spec, dataset, config)
    if config.objective == "grpo":
        from modelops.train.grpo import prompt_data

        return prompt_data(dataset, tokenizer, spec, config)
    if config.objective != "sft":
        return _pairs(dataset, tokenizer, spec, config)
    build = _classification if spec.task == "seq_cls" else _causal_lm
    train = build(dataset, "train", tokenizer, spec, config, config.batching == "packing", packed_layout)
    splits = {"train": train}
    if config.eval_every:  # never packed
        splits["validation"] = build(dataset, "validation", tokenizer, spec, config, False, packed_layout)
    validation = splits["validation"].rows if config.eval_every else None
    eval_collate = splits["validation"].collate if config.eval_every else None
    loader = train_loader(train.rows, train.collate, config.batch_size, config.seed, config.batching)
    hits = {name: part.hit for name, part in splits.items()}
    report = {name: part.report for name, part in splits.items()}
    return TrainData(loader, loader.batch_sampler, validation, eval_collate, hits, train.preview, report)


def save_tokenize_report(report: dict[str, dict[str, Any]], data_dir: Path) -> None:
    """Write `tokenize_report.json` and say on the console (and in the log) which rows were cut or skipped."""
    from modelops.io import write_json
    from modelops.tasks.truncation import summary_line

    write_json(data_dir / "tokenize_report.json", report)
    for part in report.values():
        line = summary_line(part)
        if line:
            say(f"{line} (all in {data_dir / 'tokenize_report.json'})", err=True)


@dataclass
class _Split:
    """One tokenised split: model columns only, its collator, cache hit, preview and too_long report."""

    rows: Any
    collate: Any
    hit: bool
    preview: str
    report: dict[str, Any]


def _cache_dir(config: TrainConfig) -> Path:
    if config.cache_dir:
        return Path(config.cache_dir)
    from modelops.train.cache import default_dir

    return default_dir()


def _cached(dataset, split: str, tokenizer, spec, config, packing: bool, build):
    from modelops.train.cache import cached_dataset, tokenization_key

    loss_on = config.loss_on if spec.task == "causal_lm" else None
    key = tokenization_key(dataset.fingerprint(split), tokenizer, dataset.format, spec.max_length, loss_on, packing)
    key = {**key, "too_long": config.too_long}
    if dataset.format == "preference":  # pairs, or their chosen side for SFT: not the same rows
        key = {**key, "pairs": config.objective != "sft"}
    if spec.task == "seq_cls":
        key = {**key, "labels": dataset.labels}  # the label ids are part of the rows
    else:
        key = {**key, "truncation_side": config.truncation_side}
    return cached_dataset(key, build, _cache_dir(config))


def _locate(dataset, split: str):
    """Row indices of `split` -> their file:line and split, for messages."""
    return lambda rows: [f"{place} (split {split!r})" for place in dataset.locate(split, rows)]


def _report(dataset, split: str, tokenized, spec, config) -> dict[str, Any]:
    from modelops.tasks.truncation import summary

    settings = {"max_length": spec.max_length, "too_long": config.too_long}
    if spec.task == "causal_lm":
        settings["truncation_side"] = config.truncation_side
    report = summary(tokenized, len(dataset[split]), split, _locate(dataset, split), settings)
    if report["rows_out"] == 0:
        raise DataError(
            f"split {split!r}: no example left after tokenisation: all {report['rows_in']} rows are longer than "
            f"model.max_length={spec.max_length} (trainer.too_long={config.too_long!r})"
        )
    return report


def _classification(dataset, split, tokenizer, spec, config, packing, layout) -> _Split:
    def build():
        locate = _locate(dataset, split)
        labels = dataset.label2id
        return tokenize_classification(dataset[split], tokenizer, labels, spec.max_length, config.too_long, locate)

    tokenized, hit = _cached(dataset, split, tokenizer, spec, config, packing, build)
    report = _report(dataset, split, tokenized, spec, config)
    rows = tokenized.select_columns(model_columns(tokenized))
    return _Split(rows, classification_collator(tokenizer), hit, "", report)


def _causal_lm(dataset, split, tokenizer, spec, config, packing, layout) -> _Split:
    from modelops.tasks.packing import causal_lm_collator, pack
    from modelops.tasks.sft import tokenize_causal_lm

    def build():
        table, fmt = dataset[split], dataset.format
        if fmt == "preference":
            from modelops.tasks.preference import chosen_as_sft

            table, fmt = chosen_as_sft(table)  # row for row: each keeps its place
        return tokenize_causal_lm(
            table, fmt, tokenizer, spec.max_length, loss_on=config.loss_on, too_long=config.too_long,
            truncation_side=config.truncation_side, locate=_locate(dataset, split),
        )  # fmt: skip

    # Rows are cached unpacked too: the too_long report is read from their bookkeeping columns.
    tokenized, hit = _cached(dataset, split, tokenizer, spec, config, False, build)
    report = _report(dataset, split, tokenized, spec, config)
    if packing:
        rows = tokenized
        tokenized, hit = _cached(dataset, split, tokenizer, spec, config, True, lambda: pack(rows, spec.max_length))
    preview = ""
    if config.preview_examples:
        from modelops.train.preview import preview as render

        preview = render(tokenized, tokenizer, config.preview_examples)
    import torch

    # The eager attention adds the mask to the scores: it needs an additive float mask, not a boolean one.
    mask_dtype = getattr(torch, spec.dtype) if packing and spec.attn_implementation == "eager" else None
    inner = causal_lm_collator(tokenizer.pad_token_id, packed=packing, layout=layout, mask_dtype=mask_dtype)
    collate = CountingCollator(inner, causal=True)
    return _Split(tokenized.select_columns(model_columns(tokenized)), collate, hit, preview, report)


def _pairs(dataset, tokenizer, spec: ModelSpec, config: TrainConfig) -> TrainData:
    """Preference pairs: tokenised (cached), batched by length, both sides of a pair in one batch."""
    from modelops.tasks.preference import PairCollator, preview_pairs, tokenize_pairs

    def tokenized(split: str):
        def build():
            return tokenize_pairs(dataset[split], tokenizer, spec.max_length, config.too_long, _locate(dataset, split))

        return _cached(dataset, split, tokenizer, spec, config, False, build)

    hits: dict[str, bool] = {}
    train, hits["train"] = tokenized("train")
    preview = preview_pairs(train, tokenizer, config.preview_examples) if config.preview_examples else ""
    collate = PairCollator(tokenizer.pad_token_id)
    validation = None
    if config.eval_every:
        validation, hits["validation"] = tokenized("validation")
    loader = train_loader(train, collate, config.batch_size, config.seed, config.batching)
    # Pairs count what too_long did in their own warnings (`preference.tokenize_pairs`), not in a report.
    evaluated = collate if validation else None
    return TrainData(loader, loader.batch_sampler, validation, evaluated, hits, preview, tokenize_report={})


def preview_text(dataset, spec: ModelSpec, config: TrainConfig, n: int = 3) -> str:
    """The first `n` training examples as the model will see them, with the tokens that carry loss marked.

    Loads only the tokenizer (not the model); goes through the same tokenisation and cache as training.
    """
    from modelops.models.loading import load_tokenizer

    config = check_task(spec, dataset, config)
    tokenizer = load_tokenizer(spec.name_or_path, spec.trust_remote_code)
    if spec.task == "causal_lm":
        shown = dataclasses.replace(config, preview_examples=n)
        if config.objective != "sft":
            return _pairs(dataset, tokenizer, spec, shown).preview
        return _causal_lm(dataset, "train", tokenizer, spec, shown, config.batching == "packing", "block_mask").preview
    tokenized = _classification(dataset, "train", tokenizer, spec, config, False, "block_mask").rows
    names = dataset.labels or []
    rows = tokenized.select(range(min(n, len(tokenized))))
    return "\n".join(
        f"--- example {i}: label {names[row['labels']]!r} ({len(row['input_ids'])} tokens)\n"
        f"{tokenizer.decode(row['input_ids'], skip_special_tokens=False)}"
        for i, row in enumerate(rows)
    )
