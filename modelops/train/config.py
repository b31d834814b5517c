"""`TrainConfig`: the training loop's settings as plain typed fields (no torch import here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelops.errors import ConfigError

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("no", "fp16", "bf16")


@dataclass
class TrainConfig:
    """How to train.

    Args:
        epochs: passes over the training split.
        max_steps: stop after this many optimizer steps (overrides epochs when set).
        batch_size: examples per device per forward pass.
        gradient_accumulation_steps: forward passes per optimizer step.
        learning_rate: peak learning rate.
        weight_decay: AdamW weight decay (not applied to biases and norms).
        optimizer: a partial optimizer factory (`_target_: torch.optim.AdamW`, `_partial_: true`);
            called with parameter groups and `lr`. Null means AdamW.
        scheduler: `linear`, `cosine` or `constant`, after warmup.
        warmup_ratio: share of steps spent warming up the learning rate from 0.
        max_grad_norm: clip gradients to this norm (null: no clipping).
        group_by_length: batch rows of similar length together to cut padding.
        mixed_precision: `no`, `fp16` or `bf16` (CPU runs use `no`: bf16 is slow there).
        seed: seeds python, numpy, torch and the data order.
        log_every: log loss, learning rate and tokens/s every this many optimizer steps.
        eval_batch_size: batch size for evaluation.
    """

    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    optimizer: Any = None
    scheduler: str = "linear"
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    group_by_length: bool = True
    mixed_precision: str = "no"
    seed: int = 0
    log_every: int = 10
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("max_steps", self.max_steps is None or self.max_steps >= 1, "must be >= 1 or null"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps >= 1, "must be >= 1"),
            ("learning_rate", self.learning_rate > 0, "must be > 0"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("scheduler", self.scheduler in SCHEDULES, f"must be one of {list(SCHEDULES)}"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "must be in [0, 1)"),
            ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "must be > 0 or null"),
            ("mixed_precision", self.mixed_precision in PRECISIONS, f"must be one of {list(PRECISIONS)}"),
            ("log_every", self.log_every >= 1, "must be >= 1"),
            ("eval_batch_size", self.eval_batch_size >= 1, "must be >= 1"),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise ConfigError(f"trainer.{key}: {rule}, got {getattr(self, key)!r}")
