"""One object per task: what it trains on, how its rows become batches, its loss step and its metrics.

`task_for(spec, dataset_format, objective)` picks the task once, from the registries below (the only
place a task is chosen by those strings); training (`modelops.train`) and evaluation (`modelops.evaluate`)
then ask the task for its pieces instead of branching on strings. A task's own checks (which data formats
it takes) stay inside it.

Adding an objective is one `Task` subclass (`modelops.tasks.base`) and one `OBJECTIVES` entry (plus the
config option that names it): the loop calls the task's `check`, `tokenize`, `collator`, `loss_step`,
`stepper` and `validation_scorer`, whatever it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelops.errors import ConfigError, DataError
from modelops.models.spec import ModelSpec
from modelops.tasks.base import Task, TrainConfig
from modelops.tasks.batching import CountingCollator
from modelops.tasks.rollout import GRPO

#: The data formats a causal LM trains on (SFT; preference rows train their chosen side).
CAUSAL_FORMATS = ("text", "completion", "instruction", "chat", "preference")
#: Formats whose rows are a prompt and its answer (generation is scored against the answer).
GENERATIVE_FORMATS = ("completion", "instruction", "chat")


class SequenceClassification(Task):
    """A classifier head (`model.task=seq_cls`) on `classification` rows: cross-entropy per row."""

    name = "seq_cls"
    eval_metrics = ("loss", "accuracy", "f1")
    labelled = True
    preview_in_training = False  # `modelops preview` shows its rows; training prints none

    def check(self, spec: ModelSpec, dataset, config: TrainConfig) -> None:
        if dataset.format != "classification":
            raise ConfigError(
                f"model.task=seq_cls needs classification data, but the dataset's format is {dataset.format!r}; "
                "use a causal LM (model.task=causal_lm, e.g. model=tiny_llama)"
            )
        if len(dataset.labels or []) < 2:
            raise DataError(
                f"a classifier needs at least two classes; the train data has {len(dataset.labels or [])} "
                f"({dataset.labels}): give rows of another class, or train a causal LM on text data"
            )
        if config.truncation_side != type(config).truncation_side:
            raise ConfigError(
                f"trainer.truncation_side={config.truncation_side!r}: only causal LMs use it (the side of an "
                "over-long prompt to cut); a classifier's over-long text is cut at its end"
            )
        if config.batching == "packing":
            raise ConfigError("trainer.batching=packing: only for causal LMs; use group_by_length for classifiers")

    def model_labels(self, labels: list[str] | None) -> list[str] | None:
        return labels

    def cache_key(self, dataset, spec: ModelSpec, config: TrainConfig) -> dict[str, Any]:
        return {"labels": dataset.labels}  # the label ids are part of the rows

    def tokenize(self, dataset, split: str, tokenizer, spec: ModelSpec, config: TrainConfig, locate):
        from modelops.tasks.classification import tokenize_classification

        return tokenize_classification(
            dataset[split], tokenizer, dataset.label2id, spec.max_length, config.too_long, locate
        )  # fmt: skip

    def collator(self, tokenizer, spec: ModelSpec, packing: bool, layout: str):
        from modelops.tasks.classification import classification_collator

        return classification_collator(tokenizer)

    def preview(self, tokenized, tokenizer, n: int, labels: list[str] | None = None) -> str:
        names = labels or []
        rows = tokenized.select(range(min(n, len(tokenized))))
        return "\n".join(
            f"--- example {i}: label {names[row['labels']]!r} ({len(row['input_ids'])} tokens)\n"
            f"{tokenizer.decode(row['input_ids'], skip_special_tokens=False)}"
            for i, row in enumerate(rows)
        )

    def default_metrics(self, data_format: str) -> list[str]:
        return ["accuracy", "f1", "precision", "recall", "confusion_matrix"]

    def lm_texts(self, table, data_format: str, tokenizer) -> list[str]:
        return list(table["text"])


class CausalLMSFT(Task):
    """A causal LM trained on demonstrations (`trainer.objective=sft`): cross-entropy per target token."""

    name = "causal_lm"
    causal = True
    eval_metrics = ("loss", "perplexity")

    def check(self, spec: ModelSpec, dataset, config: TrainConfig) -> None:
        if dataset.format not in CAUSAL_FORMATS:
            raise ConfigError(
                f"model.task=causal_lm trains on {list(CAUSAL_FORMATS)} data, not {dataset.format!r}; "
                "use a classifier (model.task=seq_cls, e.g. model=minilm_cls)"
            )

    def cache_key(self, dataset, spec: ModelSpec, config: TrainConfig) -> dict[str, Any]:
        key: dict[str, Any] = {"truncation_side": config.truncation_side}
        if dataset.format == "preference":  # their chosen side: not the rows preference tuning tokenises
            key["pairs"] = False
        return key

    def tokenize(self, dataset, split: str, tokenizer, spec: ModelSpec, config: TrainConfig, locate):
        from modelops.tasks.sft import tokenize_causal_lm

        table, data_format = dataset[split], dataset.format
        if data_format == "preference":
            from modelops.tasks.preference import chosen_as_sft

            table, data_format = chosen_as_sft(table)  # row for row: each keeps its place
        return tokenize_causal_lm(
            table, data_format, tokenizer, spec.max_length, loss_on=config.loss_on, too_long=config.too_long,
            truncation_side=config.truncation_side, locate=locate,
        )  # fmt: skip

    def collator(self, tokenizer, spec: ModelSpec, packing: bool, layout: str):
        import torch

        from modelops.tasks.packing import causal_lm_collator

        # The eager attention adds the mask to the scores: it needs an additive float mask, not a boolean one.
        mask_dtype = getattr(torch, spec.dtype) if packing and spec.attn_implementation == "eager" else None
        inner = causal_lm_collator(tokenizer.pad_token_id, packed=packing, layout=layout, mask_dtype=mask_dtype)
        return CountingCollator(inner, causal=True)

    def preview(self, tokenized, tokenizer, n: int, labels: list[str] | None = None) -> str:
        from modelops.tasks.preview import preview

        return preview(tokenized, tokenizer, n)

    def default_metrics(self, data_format: str) -> list[str]:
        return ["exact_match"] if self.generates(data_format) else ["loss", "perplexity", "bits_per_byte"]

    def generates(self, data_format: str) -> bool:
        return data_format in GENERATIVE_FORMATS

    def lm_texts(self, table, data_format: str, tokenizer) -> list[str]:
        return super().lm_texts(table, data_format, tokenizer) if self.generates(data_format) else list(table["text"])


class Preference(Task):
    """A causal LM tuned on `preference` pairs by DPO, IPO, SimPO or ORPO (`modelops.tasks.preference`)."""

    name = "preference"
    causal = True
    eval_metrics = ("loss", "reward_accuracy", "reward_margin")
    truncation_report = False  # pairs count what too_long did in their own warnings (`tokenize_pairs`)
    pairs = True

    def check(self, spec: ModelSpec, dataset, config: TrainConfig) -> None:
        """A preference objective needs a causal LM and preference pairs; they are trained on nothing else."""
        objective = self.objective
        if spec.task != "causal_lm":
            raise ConfigError(
                f"trainer.objective={objective}: preference tuning is for causal LMs, not model.task={spec.task}"
            )
        if dataset.format != "preference":
            raise ConfigError(
                f"trainer.objective={objective} trains on preference pairs (prompt, chosen, rejected), "
                f"not {dataset.format!r} data; use trainer.objective=sft, or a preference dataset"
            )
        if config.batching == "packing":
            raise ConfigError(f"trainer.batching=packing: not with trainer.objective={objective}; "
                              "use group_by_length (pairs of similar length are batched together)")  # fmt: skip
        if config.truncation_side != "left":
            raise ConfigError(
                f"trainer.truncation_side={config.truncation_side!r}: not with trainer.objective={objective}; "
                "an over-long pair's prompt is cut from the left (its end, next to the responses, is kept)"
            )

    def _tracked_for(self, spec: ModelSpec) -> str:
        return f"{spec.task} with trainer.objective={self.objective}"

    def cache_key(self, dataset, spec: ModelSpec, config: TrainConfig) -> dict[str, Any]:
        return {"truncation_side": config.truncation_side, "pairs": True}

    def tokenize(self, dataset, split: str, tokenizer, spec: ModelSpec, config: TrainConfig, locate):
        from modelops.tasks.preference import tokenize_pairs

        return tokenize_pairs(dataset[split], tokenizer, spec.max_length, config.too_long, locate)

    def rows(self, tokenized):
        return tokenized  # the collator reads the prompt/chosen/rejected ids

    def collator(self, tokenizer, spec: ModelSpec, packing: bool, layout: str):
        from modelops.tasks.preference import PairCollator

        return PairCollator(tokenizer.pad_token_id)

    def preview(self, tokenized, tokenizer, n: int, labels: list[str] | None = None) -> str:
        from modelops.tasks.preference import preview_pairs

        return preview_pairs(tokenized, tokenizer, n)

    def loss_step(self, accelerator, model, spec: ModelSpec, config: TrainConfig):
        from modelops.tasks.preference import preference_step

        return preference_step(model, spec.peft is not None, self.objective, config.beta, config.label_smoothing,
                               config.simpo_gamma, accelerator.device, accelerator.unwrap_model,
                               accelerator.autocast)  # fmt: skip

    def validation_scorer(self, loss_step, accelerator, model, validation, collate, config: TrainConfig,
                          stepper=None):  # fmt: skip
        """The objective scores its own validation pairs (loss, reward accuracy and margin)."""
        if validation is None:
            return None
        import functools

        return functools.partial(loss_step.validate, accelerator, model, validation, collate, config.eval_batch_size)

    def default_metrics(self, data_format: str) -> list[str]:
        return ["preference_accuracy", "reward_accuracy", "reward_margin"]


#: `trainer.objective` -> its task, for the objectives that decide the task themselves.
OBJECTIVES: dict[str, Callable[[str], Task]] = {
    "dpo": Preference, "ipo": Preference, "simpo": Preference, "orpo": Preference, "grpo": GRPO,
}  # fmt: skip
#: `model.task` -> what `trainer.objective=sft` trains (an objective not in `OBJECTIVES`).
SUPERVISED: dict[str, Callable[[str], Task]] = {"seq_cls": SequenceClassification, "causal_lm": CausalLMSFT}
#: data format -> the task whose data it is, for evaluation (no objective there).
BY_FORMAT: dict[str, Callable[[str], Task]] = {
    "classification": SequenceClassification, "preference": Preference,
    **{fmt: CausalLMSFT for fmt in ("text", *GENERATIVE_FORMATS)},
}  # fmt: skip


def task_for(spec: ModelSpec | None, dataset_format: str, objective: str | None = "sft") -> Task:
    """The task that trains `spec` with `objective`, or (`spec` None: evaluation) the task of `dataset_format` data.

    The compatibility of the three is the task's `check`, not this choice.
    """
    if spec is None or objective is None:
        if dataset_format not in BY_FORMAT:
            raise DataError(f"no task scores {dataset_format!r} data; formats with one: {list(BY_FORMAT)}")
        return BY_FORMAT[dataset_format]("sft")
    factory = OBJECTIVES.get(objective) or SUPERVISED[spec.task]
    return factory(objective)


def model_task(name: str) -> Task:
    """The task a loaded model's head is made for (`seq_cls`, `causal_lm`): how an evaluation scores with it."""
    return SUPERVISED[name]("sft")


def tracked_metrics() -> dict[str, tuple[str, ...]]:
    """Validation metrics per task name, over every registered task (`trainer.eval_metric` choices)."""
    kinds = [*SUPERVISED.values(), *OBJECTIVES.values()]
    return {kind.name: kind.eval_metrics for kind in kinds if isinstance(kind, type)}
