"""Which attention kernel packed causal-LM rows go through: the best one this machine has.

Packed rows hold several examples that must not see each other (`modelops.tasks.packing`). In order:

1. `flash_attention_3` / `flash_attention_2` (the `flash_attn_interface` / `flash-attn` packages, CUDA):
   the varlen kernels, one flat row, no padding, no mask.
2. `flex_attention` (PyTorch's own, CUDA): transformers turns the restarting position_ids into a
   document block mask, and blocks across examples are skipped, not computed and masked.
3. `sdpa` (transformers' default) with position_ids: transformers builds a dense packed-sequence mask
   from the position_ids; right everywhere, the whole L x L attention computed.

flex_attention is not chosen on a CPU: it compiles on first use (minutes on a small CPU) and is no faster
than sdpa there. A `model.attn_implementation` that is set is always kept. torch's own varlen attention
(`torch.nn.attention.varlen`, CUDA) has no transformers attention function yet, so it is not offered.
"""

from __future__ import annotations

import importlib.util


def _flex_available() -> bool:
    return importlib.util.find_spec("torch.nn.attention.flex_attention") is not None


def pick_attention(requested: str | None, packing: bool) -> tuple[str | None, str]:
    """The attention implementation to load the model with, and why.

    Args:
        requested: `model.attn_implementation` (None: choose).
        packing: whether rows are packed (the only case where a document-masked kernel matters).

    Returns:
        (implementation, reason); implementation None leaves transformers' own default (sdpa where the
        model has it).
    """
    import torch

    if requested:
        return requested, "model.attn_implementation"
    cuda = torch.cuda.is_available()
    if cuda and importlib.util.find_spec("flash_attn_interface") is not None:
        return "flash_attention_3", "flash-attn 3 installed: varlen kernel, no padding"
    if cuda and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2", "flash-attn installed: varlen kernel, no padding"
    if not packing:
        return None, "transformers' default: rows are not packed"
    if cuda and _flex_available():
        return "flex_attention", "no flash-attn: PyTorch flex_attention with a document block mask"
    # None: transformers' default, sdpa for every model that has it (eager for the few that do not).
    where = "no flash-attn or flex_attention" if cuda else "CPU"
    return None, f"{where}: a packed-sequence mask from position_ids"


def cpu_kernels() -> list[str]:
    """The attention implementations that run on a CPU (what the packed = separate test covers here)."""
    return ["sdpa", "eager"] + (["flex_attention"] if _flex_available() else [])
