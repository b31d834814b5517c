"""`TrainConfig`: the training loop's settings as plain typed fields (no torch import here).

The field defaults below are the one source of the trainer's defaults: `conf/trainer/default.yaml` spells
the same values out for the CLI (a test keeps them equal), so `TrainConfig()`, `FineTuningJob(...)` and the
CLI's `trainer=default` train alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelops.errors import ConfigError
from modelops.tasks.task import tracked_metrics
from modelops.tasks.truncation import SIDES, TOO_LONG

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "no", "fp16", "bf16")
BATCHING = ("pad", "group_by_length", "packing")
EVAL_MODES = ("auto", "min", "max")
LOSS_ON = ("answer", "all")
#: `sft` trains on demonstrations; `dpo`..`orpo` on `preference` pairs (modelops.tasks.preference); `grpo` on
#: `prompt` rows with reward functions (modelops.tasks.rollout, modelops.tasks.grpo).
OBJECTIVES = ("sft", "dpo", "ipo", "simpo", "orpo", "grpo")
#: GRPO's loss aggregations and reward scalings (as TRL's `loss_type` and `scale_rewards`).
GRPO_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
SCALE_REWARDS = ("group", "batch", "none")
#: Metrics the loop can track during training, per task (`loss` is the validation loss per target token),
#: and for the preference objectives (`loss` is the objective's mean over validation pairs): each task's own.
EVAL_METRICS = tracked_metrics()


@dataclass
class TrainConfig:
    """How to train. `conf/trainer/default.yaml` spells out these field defaults.

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
        num_generations: GRPO: completions sampled per prompt (the group whose rewards are compared). A
            micro-batch holds `batch_size` prompts, so `batch_size * num_generations` completions.
        max_new_tokens: GRPO: the most tokens a completion may have (TRL's `max_completion_length`).
        temperature: GRPO: sampling temperature (> 0); the log-probs are taken at the same temperature.
        top_p: GRPO: nucleus sampling mass, in (0, 1].
        epsilon: GRPO: the clipping range of the importance ratio, [1 - epsilon, 1 + epsilon_high].
        epsilon_high: GRPO: the upper clipping range (DAPO's clip-higher, e.g. 0.28); null: `epsilon`.
        loss_type: GRPO: how token losses are aggregated: `grpo` (mean per sequence, then over sequences),
            `dr_grpo` (sum over the step / (sequences * max_new_tokens)), `dapo` (sum over the step / its
            completion tokens) or `bnpo` (mean over each micro-batch's tokens), as TRL's `loss_type`.
        scale_rewards: GRPO: advantages are rewards minus their group's mean, divided by the std of the
            `group`, of the `batch`, or not at all (`none`, as Dr. GRPO).
        num_iterations: GRPO: optimizer steps per generation (each over the same completions, PPO-style;
            the importance ratio is to the policy that sampled them).
        rewards: GRPO: reward functions, each `fn(prompts, completions, **columns) -> list[float]` (TRL's
            convention; `columns` are the rows' other columns), as `_partial_` nodes or callables; see
            `modelops.tasks.rewards` for the shipped ones.
        reward_weights: GRPO: one weight per reward function (null: all 1); the reward is the weighted sum.
    """

    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    optimizer: Any = None
    scheduler: str = "linear"
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    max_grad_norm: float | None = 1.0
    batching: str = "group_by_length"
    mixed_precision: str = "auto"
    seed: int = 0
    log_every: int = 10
    log_with: Any = None
    eval_batch_size: int = 64
    eval_every: int | None = None
    eval_metric: str = "loss"
    eval_mode: str = "auto"
    early_stopping_patience: int | None = None
    keep_best: bool = False
    checkpoint_every: int | None = 500
    keep_checkpoints: int = 2
    resume: str | None = "auto"
    loss_on: str = "answer"
    too_long: str = "truncate"
    truncation_side: str = "left"
    cache_dir: str | None = None
    merge_adapter: bool = False
    preview_examples: int = 1
    compile: bool = False
    liger: bool = False
    chunked_loss: bool = True
    objective: str = "sft"
    beta: float | None = None
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    num_generations: int = 8
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    epsilon: float = 0.2
    epsilon_high: float | None = None
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    num_iterations: int = 1
    rewards: Any = None
    reward_weights: Any = None

    def __post_init__(self) -> None:
        if self.beta is None:  # DPO's temperature, or GRPO's KL weight (0: no reference model, as TRL)
            self.beta = 0.0 if self.objective == "grpo" else 0.1
        if self.objective == "grpo" and self.eval_metric == "loss":  # the default: GRPO's validation has no loss
            self.eval_metric = "reward"
        if isinstance(self.scale_rewards, bool):  # TRL's booleans
            self.scale_rewards = "group" if self.scale_rewards else "none"
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
            (
                "beta",
                self.beta >= 0 if self.objective == "grpo" else self.beta > 0,
                "must be >= 0" if self.objective == "grpo" else "must be > 0",
            ),
            ("label_smoothing", 0 <= self.label_smoothing < 0.5, "must be in [0, 0.5)"),
            ("simpo_gamma", self.simpo_gamma >= 0, "must be >= 0"),
            ("num_generations", self.num_generations >= 2, "must be >= 2 (advantages compare a prompt's completions)"),
            ("max_new_tokens", self.max_new_tokens >= 1, "must be >= 1"),
            ("temperature", self.temperature > 0, "must be > 0 (GRPO samples)"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("epsilon", 0 <= self.epsilon < 1, "must be in [0, 1)"),
            ("epsilon_high", self.epsilon_high is None or self.epsilon_high >= 0, "must be >= 0 or null"),
            ("loss_type", self.loss_type in GRPO_LOSS_TYPES, f"must be one of {list(GRPO_LOSS_TYPES)}"),
            ("scale_rewards", self.scale_rewards in SCALE_REWARDS, f"must be one of {list(SCALE_REWARDS)}"),
            ("num_iterations", self.num_iterations >= 1, "must be >= 1"),
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
