"""`ModelSpec`: what model to load and how to adapt it, as plain typed fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelops.errors import ConfigError

TASKS = ("seq_cls", "causal_lm")


@dataclass
class ModelSpec:
    """A model to fine-tune or evaluate.

    Args:
        name_or_path: a packaged alias (`minilm`), a `conf/model` option name, a local directory
            or a hub id.
        task: `seq_cls` (sequence classification) or `causal_lm`.
        peft: a PEFT config object (`peft.LoraConfig`, ...) or null for full fine-tuning.
        max_length: tokens kept per example; longer inputs are truncated.
        dtype: `float32`, `bfloat16` or `float16` for the weights.
        attn_implementation: passed to transformers (`sdpa`, `eager`, ...); null for its default.
        trust_remote_code: allow code shipped with a hub model to run (off unless set).
        gradient_checkpointing: trade compute for activation memory (non-reentrant, so LoRA works).
        quantization: `nf4` loads the base in 4-bit NormalFloat with bf16 compute (QLoRA: needs
            `peft`, a CUDA GPU and bitsandbytes); null keeps `dtype`.
        use_kernels: let transformers swap layers for hub kernels (the `kernels` package, which downloads
            them at run time). Off: transformers 5.25 turns them on by default, and an offline GPU
            machine then fails or fetches code; modelops runs the same everywhere unless this asks.
    """

    name_or_path: str = "minilm"
    task: str = "seq_cls"
    peft: Any = None
    max_length: int = 128
    dtype: str = "float32"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    quantization: str | None = None
    use_kernels: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"model.task: {self.task!r} is not one of {list(TASKS)}")
        if self.max_length < 1:
            raise ConfigError(f"model.max_length: must be >= 1, got {self.max_length}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model.dtype: {self.dtype!r} is not one of ['float32', 'bfloat16', 'float16']")
        if self.quantization not in (None, "nf4"):
            raise ConfigError(f"model.quantization: {self.quantization!r} is not one of [null, 'nf4']")
        if self.quantization and self.peft is None:
            raise ConfigError("model.quantization: a 4-bit base trains only through an adapter; set model.peft")
        rank = getattr(self.peft, "r", None)
        if rank is not None and rank < 1:
            raise ConfigError(f"model.peft.r: LoRA rank must be >= 1, got {rank}")
