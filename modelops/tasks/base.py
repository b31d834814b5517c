"""`Task`: what differs between tasks, with one level of defaults (the tasks themselves are in `task.py`).

Apart from the registry (`modelops.tasks.task`) so a module of its own (`tasks/grpo.py`, say) can subclass
`Task` and `task.py` can import that module to register it, without an import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelops.errors import ConfigError
from modelops.models.spec import ModelSpec
from modelops.tasks.batching import model_columns

#: The trainer's settings, `modelops.train.config.TrainConfig`: a layer above this one, so read by attribute
#: and never imported here.
TrainConfig = Any


class Task:
    """What differs between tasks. One level of defaults: a subclass overrides what its task does otherwise.

    Attributes:
        name: the task's name where the config and messages show it (`trainer.eval_metric` lists per name).
        objective: the `trainer.objective` it trains with.
        causal: whether it trains a causal LM (attention kernel choice, packing, `loss_on`, truncation side).
        eval_metrics: the validation metrics the loop can track (`trainer.eval_metric`).
        truncation_report: whether tokenising writes the `too_long` report (`tokenize_report.json`).
        preview_in_training: whether training shows the first examples (`trainer.preview_examples`).
        labelled: its rows carry a class label (classification metrics score them).
        pairs: its rows are preference pairs (preference metrics score them, and only them).
    """

    name: str = ""
    causal: bool = False
    eval_metrics: tuple[str, ...] = ("loss",)
    truncation_report: bool = True
    preview_in_training: bool = True
    labelled: bool = False
    pairs: bool = False

    def __init__(self, objective: str = "sft"):
        self.objective = objective

    def check(self, spec: ModelSpec, dataset, config: TrainConfig) -> None:
        """Refuse a model, data format or settings this task cannot train with (ConfigError/DataError)."""

    def check_eval_metric(self, spec: ModelSpec, config: TrainConfig) -> None:
        """Refuse a `trainer.eval_metric` this task does not compute during training."""
        if config.eval_every and config.eval_metric not in self.eval_metrics:
            raise ConfigError(
                f"trainer.eval_metric: {config.eval_metric!r} is not tracked for {self._tracked_for(spec)}; "
                f"use one of {list(self.eval_metrics)}"
            )

    def _tracked_for(self, spec: ModelSpec) -> str:
        return spec.task

    def model_labels(self, labels: list[str] | None) -> list[str] | None:
        """The labels the model is loaded with (a classifier's head); None for other tasks."""
        return None

    def cache_key(self, dataset, spec: ModelSpec, config: TrainConfig) -> dict[str, Any]:
        """What, beyond the data, tokenizer and lengths, changes this task's tokenised rows."""
        return {}

    def tokenize(self, dataset, split: str, tokenizer, spec: ModelSpec, config: TrainConfig, locate):
        """The rows of `dataset[split]` as token ids (with the bookkeeping columns of `modelops.tasks.truncation`).

        Args:
            locate: row indices -> their places (file:line) for messages.
        """
        raise NotImplementedError

    def rows(self, tokenized):
        """The columns of the tokenised rows that batches carry."""
        return tokenized.select_columns(model_columns(tokenized))

    def collator(self, tokenizer, spec: ModelSpec, packing: bool, layout: str) -> Callable[[list], dict[str, Any]]:
        """Batches of rows, with `num_tokens` and `num_targets` (what the step divides by)."""
        raise NotImplementedError

    def preview(self, tokenized, tokenizer, n: int, labels: list[str] | None = None) -> str:
        """The first `n` examples as the model sees them."""
        return ""

    def loss_step(self, accelerator, model, spec: ModelSpec, config: TrainConfig):
        """The objective's own loss step (summed loss of a batch, its metrics, `validate`); None: the
        stepper's cross-entropy (token-level for causal LMs, row-level for classifiers)."""
        return None

    def stepper(self, default: Callable[..., Any], accelerator, model, optimizer, scheduler, config: TrainConfig,
                loss_step, tokenizer=None):  # fmt: skip
        """The object the loop calls `.step(window)` on each optimizer step: `default` (the loop's `_Stepper`)
        unless the task steps otherwise (one that generates before it steps, say). The loop also asks it for
        `feed(windows)`: the iterator of what `step` takes, made from the loop's windows of micro-batches."""
        return default(accelerator, model, optimizer, scheduler, self.causal, config.max_grad_norm, loss_step,
                       config.liger, config.chunked_loss)  # fmt: skip

    def steps_per_window(self, config: TrainConfig) -> int:
        """Optimizer steps taken on each window of micro-batches (more than one: the same data stepped on again)."""
        return 1

    def resume_key(self, config: TrainConfig) -> dict[str, Any]:
        """What else a checkpoint must agree on to be resumed by this run (beside data order and step count)."""
        return {}

    def checkpointed(self) -> list[Any]:
        """Objects (with `state_dict`/`load_state_dict`) saved with every checkpoint and restored on resume."""
        return []

    def validation_scorer(self, loss_step, accelerator, model, validation, collate, config: TrainConfig,
                          stepper=None):  # fmt: skip
        """What computes the validation metrics; None: the loop's own (loss and perplexity or accuracy/F1)."""
        return None

    def default_metrics(self, data_format: str) -> list[str]:
        """The metrics the Evaluator computes on this task's data when none are asked for."""
        raise NotImplementedError

    def generates(self, data_format: str) -> bool:
        """Whether rows of `data_format` are a prompt and its answer (generation is scored against the answer)."""
        return False

    def lm_texts(self, table, data_format: str, tokenizer) -> list[str]:
        """The text LM metrics score for each row: the example rendered by `segments` (prompt and answer)."""
        from modelops.models.templates import segments

        return ["".join(text for text, _ in segments(row, data_format, tokenizer)) for row in table]
