"""`TrainConfig`: the training loop's settings as plain typed fields (no torch import here).

The default of every field is read from `conf/trainer/default.yaml`, the one place it is written, so
`TrainConfig()`, `FineTuningJob(...)` and the CLI's `trainer=default` train alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelops.config.options import group_defaults
from modelops.errors import ConfigError
from modelops.tasks.task import tracked_metrics
from modelops.tasks.truncation import SIDES, TOO_LONG

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "no", "fp16", "bf16")
BATCHING = ("pad", "group_by_length", "packing")
EVAL_MODES = ("auto", "min", "max")
LOSS_ON = ("answer", "all")
#: `sft` trains on demonstrations; the others on `preference` pairs (modelops.tasks.preference).
OBJECTIVES = ("sft", "dpo", "ipo", "simpo", "orpo")
#: Metrics the loop can track during training, per task (`loss` is the validation loss per target token),
#: and for the preference objectives (`loss` is the objective's mean over validation pairs): each task's own.
EVAL_METRICS = tracked_metrics()

_DEFAULTS = group_defaults("trainer")


@dataclass
class TrainConfig:
    """How to train. Field defaults come from `conf/trainer/default.yaml`.

    Args:
        epochs: passes over the training split.
        max_steps: stop after this many optimizer steps (overrides epochs when set).
        batch_size: examples (packed rows with `batching=packing`) per device per forward pass.
        gradient_accumulation_steps: forward passes per optimizer step. The loss is averaged over all
            target tokens of the accumulated batches, so 1x8 and 8x1 give the same update.
        learning_rate: peak learning rate.
        weight_decay: AdamW weight decay (not applied to biases and norms).
        optimizer: a partial optimizer factory (`_target_: torch.optim.AdamW`, `_partial_: true`);
            called with parameter groups and `lr`. Null (the dataclass default, which needs no torch
            import) means `torch.optim.AdamW` with torch's own defaults, which is what the YAML's node
            spells out. AdamW runs fused (on a GPU and a CPU).
        scheduler: `linear`, `cosine` or `constant`, after warmup.
        warmup_ratio: share of steps spent warming up the learning rate from 0.
        warmup_steps: warmup length in steps; overrides `warmup_ratio` when set.
        max_grad_norm: clip gradients to this norm (null: no clipping).
        batching: `pad` (shuffled batches padded to their longest row), `group_by_length` (rows of
            similar length batched together) or `packing` (causal LMs: rows concatenated up to
            `model.max_length`, each still attending only to itself).
        mixed_precision: `auto` (bf16 on a GPU that supports it, else fp32; the choice is printed),
            `no` (fp32), `fp16` or `bf16`; an explicit fp16/bf16 on a machine without a GPU falls back
            to `no` with a warning (bf16 matmuls are slow on CPUs).
        compile: compile the model's forward with `torch.compile` (inductor, in place): fused
            kernels, after compiling on the first steps (and again for new batch shapes).
        liger: causal LMs on a CUDA GPU: Liger kernels (the `liger-kernel` package) for RMSNorm, RoPE
            and SwiGLU/GeGLU in place of transformers' own, and Liger's fused linear cross-entropy for the
            SFT loss (no logits written out at all).
        chunked_loss: causal LMs: compute the loss from hidden states, only at the positions that carry it,
            through the LM head in chunks (`modelops.models.loss`); false takes the plain path (full-vocabulary
            logits of every position), kept to measure what chunking saves.
        seed: seeds python, numpy, torch and the data order.
        log_every: log loss, learning rate and tokens/s every this many optimizer steps.
        log_with: Accelerate trackers (`tensorboard`, `wandb`, `mlflow`, `trackio`, ... or a list);
            `metrics.jsonl` is always written.
        eval_batch_size: batch size for evaluation.
        eval_every: evaluate on the validation split every this many steps and at the end (null: never).
        eval_metric: the metric early stopping and `keep_best` follow: `loss` (validation loss),
            `accuracy`/`f1` (classifiers), `perplexity` (causal LMs), or `reward_accuracy`/`reward_margin`
            (preference objectives).
        eval_mode: `min`, `max` or `auto` (min for loss and perplexity, max otherwise).
        early_stopping_patience: stop after this many evaluations without improvement (null: never).
        keep_best: the saved `model/` holds the weights of the best evaluation, not the last step.
        checkpoint_every: write a resumable checkpoint every this many steps (null: only on SIGTERM/SIGINT).
        keep_checkpoints: how many of the latest checkpoints to keep.
        resume: `auto` (continue from the run directory's latest complete checkpoint, if any), null
            (start fresh), or a checkpoint directory.
        loss_on: causal LMs: `answer` (completions, outputs, assistant turns) or `all` tokens.
        too_long: examples longer than `model.max_length` are `truncate`d, `skip`ped or `reject`ed (an error
            naming the file and line); truncations and skips are counted in `data/tokenize_report.json`.
            Classifiers cut the text's end; causal LMs cut the prompt first (see `truncation_side`), then the end.
        truncation_side: causal LMs: the side an over-long prompt is cut from, `left` (keeps the end of the
            prompt, next to the answer) or `right`.
        cache_dir: where tokenised data is cached (default `$MODELOPS_CACHE/tokenized`).
        merge_adapter: with a PEFT model, also save the merged full model in `model/merged/`.
        preview_examples: how many training examples to show with their loss mask before training.
        objective: `sft` (demonstrations; on `preference` data, the chosen side of each pair), or a
            preference objective on `preference` pairs, causal LMs only: `dpo`, `ipo` (both against a
            reference: the base with the adapter disabled under LoRA, a frozen copy of the initial
            weights otherwise), `simpo` or `orpo` (no reference). See `modelops.tasks.preference`.
        beta: DPO/IPO/SimPO temperature; ORPO's weight on the odds-ratio term (as TRL's `beta`).
        label_smoothing: DPO and SimPO: the assumed share of flipped preference labels, in [0, 0.5).
        simpo_gamma: SimPO's target reward margin.
    """

    epochs: int = _DEFAULTS["epochs"]
    max_steps: int | None = _DEFAULTS["max_steps"]
    batch_size: int = _DEFAULTS["batch_size"]
    gradient_accumulation_steps: int = _DEFAULTS["gradient_accumulation_steps"]
    learning_rate: float = _DEFAULTS["learning_rate"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    optimizer: Any = None
    scheduler: str = _DEFAULTS["scheduler"]
    warmup_ratio: float = _DEFAULTS["warmup_ratio"]
    warmup_steps: int | None = _DEFAULTS["warmup_steps"]
    max_grad_norm: float | None = _DEFAULTS["max_grad_norm"]
    batching: str = _DEFAULTS["batching"]
    mixed_precision: str = _DEFAULTS["mixed_precision"]
    seed: int = _DEFAULTS["seed"]
    log_every: int = _DEFAULTS["log_every"]
    log_with: Any = _DEFAULTS["log_with"]
    eval_batch_size: int = _DEFAULTS["eval_batch_size"]
    eval_every: int | None = _DEFAULTS["eval_every"]
    eval_metric: str = _DEFAULTS["eval_metric"]
    eval_mode: str = _DEFAULTS["eval_mode"]
    early_stopping_patience: int | None = _DEFAULTS["early_stopping_patience"]
    keep_best: bool = _DEFAULTS["keep_best"]
    checkpoint_every: int | None = _DEFAULTS["checkpoint_every"]
    keep_checkpoints: int = _DEFAULTS["keep_checkpoints"]
    resume: str | None = _DEFAULTS["resume"]
    loss_on: str = _DEFAULTS["loss_on"]
    too_long: str = _DEFAULTS["too_long"]
    truncation_side: str = _DEFAULTS["truncation_side"]
    cache_dir: str | None = _DEFAULTS["cache_dir"]
    merge_adapter: bool = _DEFAULTS["merge_adapter"]
    preview_examples: int = _DEFAULTS["preview_examples"]
    compile: bool = _DEFAULTS["compile"]
    liger: bool = _DEFAULTS["liger"]
    chunked_loss: bool = _DEFAULTS["chunked_loss"]
    objective: str = _DEFAULTS["objective"]
    beta: float = _DEFAULTS["beta"]
    label_smoothing: float = _DEFAULTS["label_smoothing"]
    simpo_gamma: float = _DEFAULTS["simpo_gamma"]

    def __post_init__(self) -> None:
        for key, ok, rule in self._checks():
            if not ok:
                raise ConfigError(f"trainer.{key}: {rule}, got {getattr(self, key)!r}")
        if (self.early_stopping_patience or self.keep_best) and not self.eval_every:
            key = "early_stopping_patience" if self.early_stopping_patience else "keep_best"
            raise ConfigError(f"trainer.{key}: needs trainer.eval_every (evaluations to compare)")

    def _checks(self) -> list[tuple[str, bool, str]]:
        def positive_or_null(value: int | None) -> bool:
            return value is None or value >= 1

        return [
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("max_steps", positive_or_null(self.max_steps), "must be >= 1 or null"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps >= 1, "must be >= 1"),
            ("learning_rate", self.learning_rate > 0, "must be > 0"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("scheduler", self.scheduler in SCHEDULES, f"must be one of {list(SCHEDULES)}"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "must be in [0, 1)"),
            ("warmup_steps", self.warmup_steps is None or self.warmup_steps >= 0, "must be >= 0 or null"),
            ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "must be > 0 or null"),
            ("batching", self.batching in BATCHING, f"must be one of {list(BATCHING)}"),
            ("mixed_precision", self.mixed_precision in PRECISIONS, f"must be one of {list(PRECISIONS)}"),
            ("log_every", self.log_every >= 1, "must be >= 1"),
            ("eval_batch_size", self.eval_batch_size >= 1, "must be >= 1"),
            ("eval_every", positive_or_null(self.eval_every), "must be >= 1 or null"),
            ("eval_metric", any(self.eval_metric in m for m in EVAL_METRICS.values()), _metric_rule()),
            ("eval_mode", self.eval_mode in EVAL_MODES, f"must be one of {list(EVAL_MODES)}"),
            ("early_stopping_patience", positive_or_null(self.early_stopping_patience), "must be >= 1 or null"),
            ("checkpoint_every", positive_or_null(self.checkpoint_every), "must be >= 1 or null"),
            ("keep_checkpoints", self.keep_checkpoints >= 1, "must be >= 1"),
            ("loss_on", self.loss_on in LOSS_ON, f"must be one of {list(LOSS_ON)}"),
            ("too_long", self.too_long in TOO_LONG, f"must be one of {list(TOO_LONG)}"),
            ("truncation_side", self.truncation_side in SIDES, f"must be one of {list(SIDES)}"),
            ("preview_examples", self.preview_examples >= 0, "must be >= 0"),
            ("objective", self.objective in OBJECTIVES, f"must be one of {list(OBJECTIVES)}"),
            ("beta", self.beta > 0, "must be > 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 0.5, "must be in [0, 0.5)"),
            ("simpo_gamma", self.simpo_gamma >= 0, "must be >= 0"),
        ]

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger `eval_metric` is an improvement."""
        if self.eval_mode != "auto":
            return self.eval_mode == "max"
        return self.eval_metric not in ("loss", "perplexity")

    @property
    def trackers(self) -> list[str]:
        """`log_with` as a list of tracker names."""
        if not self.log_with:
            return []
        return [self.log_with] if isinstance(self.log_with, str) else list(self.log_with)


def _metric_rule() -> str:
    return "must be one of " + "; ".join(f"{task}: {list(names)}" for task, names in EVAL_METRICS.items())
