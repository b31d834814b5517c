"""Causal-LM loss and token log-probs from hidden states: full-vocabulary logits of a batch never exist at once.

A language model's head turns every position's hidden state into `vocab` logits; for a 152k vocabulary
and 8k tokens that is 1.2 G values, then their fp32 copy, gradient and softmax. Only the positions whose
next token carries a label need them, and they need them one at a time. So:

1. The model runs its own forward (under whatever wraps it: DDP, PEFT, Accelerate's autocast) while a
   pre-hook on its output embedding takes the hidden states and hands the head an empty slice: the
   model's `logits` come back with 0 positions, at no cost. The head module is the one that computes
   the logits, so a tied embedding, an `lm_head` under LoRA (or in `modules_to_save`) and full
   fine-tuning all work the same.
2. The positions whose shifted label is not `IGNORE_INDEX` are selected, and projected through the head
   in chunks of `chunk_tokens` positions (fp32 log-softmax, under the autocast the forward ran in).
   Each chunk is checkpointed: its logits are freed after the forward and recomputed in the backward,
   so the peak is one chunk's logits, whatever the batch.
3. With `liger=True`, Liger's fused linear cross-entropy (a CUDA kernel that never writes logits out)
   computes the summed loss instead.

`full_logits_loss_sum` and `full_logits_token_logprobs` are the plain path (the model's full logits, one
cross-entropy): the reference the chunked path is tested against, and the `trainer.chunked_loss=false`
lever for comparison.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from modelops.models.labels import IGNORE_INDEX

#: Logit values per chunk (tokens x vocab): 2**25 fp32 values = 128 MiB; 220 tokens of a 152k vocabulary.
CHUNK_ELEMENTS = 2**25


@dataclass
class Targets:
    """The positions that carry loss: their hidden states [N, H], target ids [N] and batch rows [N]."""

    hidden: Any
    tokens: Any
    rows: Any
    batch_size: int


@dataclass
class _Head:
    """The output-embedding module, what scales its logits, and the autocast the model's forward ran under."""

    module: Any
    softcap: float | None
    scale: float
    autocast: Callable[[], Any]

    def logits(self, hidden):
        with self.autocast():
            logits = self.module(hidden)
        logits = logits.float()
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap:
            logits = self.softcap * (logits / self.softcap).tanh()
        return logits


def bare_model(model):
    """The model under Accelerate/DDP/FSDP wrappers (their `.module`); a PEFT model stays as it is."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):
        model = model.module
    return model


def _scales(model) -> tuple[float | None, float]:
    """The final-logit softcap (Gemma 2/3) and multiplier (Cohere's `logit_scale`) the model applies after its head."""
    config = getattr(bare_model(model), "config", None)  # a plain torch module has none: nothing to scale
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    scale = getattr(config, "logit_scale", None)
    return getattr(config, "final_logit_softcapping", None), 1.0 if scale is None else float(scale)


def _autocast_now(device_type: str) -> Callable[[], Any]:
    """A context that re-enters the autocast active right now (none when none is)."""
    import torch

    if not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext
    dtype = torch.get_autocast_dtype(device_type)
    return lambda: torch.autocast(device_type, dtype=dtype)


@contextlib.contextmanager
def _captured_head_input(head) -> Iterator[dict[str, Any]]:
    """While active, calls of `head` record their input and compute logits for no position at all."""
    captured: dict[str, Any] = {}

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("input")
        captured["hidden"] = hidden
        captured["autocast"] = _autocast_now(hidden.device.type)
        return (hidden[..., :0, :], *args[1:]), kwargs

    handle = head.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()


def hidden_states(model, inputs: dict[str, Any]) -> tuple[Any, _Head]:
    """Run `model` on `inputs` and return its final hidden states [B, L, H] (the head's input) and its head.

    Raises:
        ValueError: `model` has no output embedding, or its forward did not call it.
    """
    head = bare_model(model).get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(bare_model(model)).__name__} has no language-modelling head")
    with _captured_head_input(head) as captured:
        model(**inputs)
    if "hidden" not in captured:
        raise ValueError(f"{type(bare_model(model)).__name__}.forward did not call its output embedding")
    softcap, scale = _scales(model)
    return captured["hidden"], _Head(head, softcap, scale, captured["autocast"])


def select_targets(hidden, labels) -> Targets:
    """The positions whose next token is labelled: logits at t predict the label at t + 1."""
    shifted = labels[:, 1:].to(hidden.device)
    where = shifted != IGNORE_INDEX
    return Targets(hidden[:, :-1][where], shifted[where], where.nonzero()[:, 0], labels.shape[0])


def chunk_tokens_for(head: _Head) -> int:
    """Positions per chunk: `CHUNK_ELEMENTS` logit values."""
    weight = head.module.weight
    return max(1, CHUNK_ELEMENTS // weight.shape[0])


def _chunk_logprobs(head: _Head, hidden, tokens):
    import torch

    logits = head.logits(hidden)
    return torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)


def chunked_logprobs(head: _Head, targets: Targets, chunk_tokens: int | None = None):
    """Log-probability [N] (fp32) of each target token, computed chunk by chunk (each chunk checkpointed)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    size = chunk_tokens or chunk_tokens_for(head)
    grad = torch.is_grad_enabled() and (
        targets.hidden.requires_grad or any(p.requires_grad for p in head.module.parameters())
    )
    parts = []
    for start in range(0, targets.hidden.shape[0], size):
        hidden, tokens = targets.hidden[start : start + size], targets.tokens[start : start + size]
        if grad:
            parts.append(checkpoint(_chunk_logprobs, head, hidden, tokens, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(head, hidden, tokens))
    if not parts:  # no labelled position: a zero that still belongs to the graph
        return (targets.hidden.sum(-1) * 0.0).float()
    return torch.cat(parts)


def token_logprobs(model, inputs: dict[str, Any], labels, chunk_tokens: int | None = None):
    """Run `model` and return the log-probs [N] of the labelled tokens (shifted) and their batch rows [N]."""
    hidden, head = hidden_states(model, inputs)
    targets = select_targets(hidden, labels)
    return chunked_logprobs(head, targets, chunk_tokens), targets.rows


def loss_sum(model, inputs: dict[str, Any], labels, *, liger: bool = False, chunk_tokens: int | None = None):
    """The summed next-token cross-entropy (fp32) over the labelled positions of `labels`.

    Args:
        model: a causal LM (transformers `*ForCausalLM`, a PEFT model around one, or a DDP wrapper).
        inputs: the keyword arguments of its forward (input_ids, attention_mask, position_ids, use_cache...).
        labels: [B, L] target ids, `IGNORE_INDEX` where no loss; shifted here (position t predicts t + 1).
        liger: use Liger's fused linear cross-entropy (CUDA and the liger-kernel package); a head it cannot
            take (one under LoRA) falls back to the chunked loss with a warning.
        chunk_tokens: positions per chunk; default `CHUNK_ELEMENTS` logits per chunk.
    """
    hidden, head = hidden_states(model, inputs)
    targets = select_targets(hidden, labels)
    if liger and _liger_fits(head):
        return _liger_loss_sum(head, targets)
    return -chunked_logprobs(head, targets, chunk_tokens).sum()


def sequence_logprobs(model, inputs: dict[str, Any], labels, chunk_tokens: int | None = None):
    """Per row, the summed log-prob of its labelled tokens [B] (fp32) and their count [B] (preference, scoring)."""
    import torch

    logprobs, rows = token_logprobs(model, inputs, labels, chunk_tokens)
    sums = torch.zeros(labels.shape[0], dtype=logprobs.dtype, device=logprobs.device).index_add(0, rows, logprobs)
    counts = torch.zeros(labels.shape[0], dtype=torch.long, device=logprobs.device)
    counts = counts.index_add(0, rows, torch.ones_like(rows))
    return sums, counts


def _liger_fits(head: _Head) -> bool:
    import torch

    if type(head.module) is torch.nn.Linear and head.scale == 1.0:
        return True
    warnings.warn(
        f"trainer.liger=true: the LM head is a {type(head.module).__name__} (not a plain Linear, or its logits are "
        "scaled); its loss is computed in chunks instead of by Liger's fused linear cross-entropy",
        UserWarning,
        stacklevel=4,
    )
    return False


def _liger_loss_sum(head: _Head, targets: Targets):
    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    fused = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum", softcap=head.softcap)
    weight, bias = head.module.weight, head.module.bias
    with head.autocast():
        hidden = targets.hidden.to(weight.dtype) if targets.hidden.dtype != weight.dtype else targets.hidden
        return fused(weight, hidden, targets.tokens, bias).float()


# -- the plain path: full logits ----------------------------------------------------------------------


def full_logits_token_logprobs(model, inputs: dict[str, Any], labels):
    """The plain path: the model's full logits [B, L, V], log-softmax in fp32, the labelled positions picked."""
    import torch

    logits = model(**inputs).logits[:, :-1]
    shifted = labels[:, 1:].to(logits.device)
    where = shifted != IGNORE_INDEX
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, shifted.clamp(min=0)[..., None]).squeeze(-1)
    return logprobs[where], where.nonzero()[:, 0]


def full_logits_loss_sum(model, inputs: dict[str, Any], labels):
    """The plain path's summed cross-entropy: full logits of every position, one fp32 cross-entropy."""
    import torch.nn.functional as F

    logits = model(**inputs).logits
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    targets = labels[:, 1:].reshape(-1).to(logits.device)
    return F.cross_entropy(shifted, targets, ignore_index=IGNORE_INDEX, reduction="sum")
