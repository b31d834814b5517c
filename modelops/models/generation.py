"""Greedy generation in left-padded, length-sorted batches.

Prompts are tokenized with the tokenizer's special tokens and left-padded within a batch (the attention mask
hides the padding, and `generate` derives positions from it), so a prompt's continuation does not depend on
what it is batched with. A prompt longer than ``max_length - max_new_tokens`` tokens keeps its last tokens.
Generation stops at the EOS token or after ``max_new_tokens``; the text returned is the new tokens decoded
without special tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelops.errors import EvaluationError
from modelops.evaluate.batching import attention_mask, model_device, pad, sorted_batches


def greedy_generate(
    model, tokenizer, prompts: Sequence[str], batch_size: int, max_new_tokens: int, max_length: int | None
) -> list[str]:
    """The greedy continuation of each prompt, in prompt order."""
    if max_new_tokens < 1:
        raise EvaluationError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    keep = None if max_length is None else max_length - max_new_tokens
    if keep is not None and keep < 1:
        raise EvaluationError(f"max_length={max_length} leaves no room for a prompt and {max_new_tokens} new tokens")
    ids = [row[-keep:] if keep else row for row in tokenizer(list(prompts))["input_ids"]]
    stop = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    device = model_device(model)
    outputs: list[str] = [""] * len(ids)
    for index in sorted_batches([len(row) for row in ids], batch_size):
        rows = [ids[i] for i in index]
        generated = model.generate(
            input_ids=pad(rows, pad_id, left=True).to(device),
            attention_mask=attention_mask(rows, left=True).to(device),
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad_id, eos_token_id=stop,
        )  # fmt: skip
        width = max(len(row) for row in rows)
        for i, new in zip(index, generated[:, width:].tolist(), strict=True):
            outputs[i] = tokenizer.decode(_until(new, stop), skip_special_tokens=True)
    return outputs


def _stop_ids(model, tokenizer) -> list[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(ids) if isinstance(ids, list | tuple) else [ids]
    ids.append(tokenizer.eos_token_id)
    stop = sorted({i for i in ids if i is not None})
    if not stop:
        raise EvaluationError("generation needs an EOS token; the tokenizer and model define none")
    return stop


def _until(tokens: list[int], stop: list[int]) -> list[int]:
    """Tokens up to (not including) the first stop token."""
    for position, token in enumerate(tokens):
        if token in stop:
            return tokens[:position]
    return tokens
