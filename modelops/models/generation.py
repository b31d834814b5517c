"""Batched generation with the KV cache: length-sorted, left-padded batches, per-row stopping.

Prompts are tokenized with the tokenizer's special tokens, sorted by length (so a batch holds prompts of
similar length and little padding) and left-padded within a batch; the attention mask hides the padding and
``generate`` derives positions from it, so a prompt's greedy continuation does not depend on what it is batched
with (beyond float rounding). Each row stops on its own at an EOS token or at one of ``stop`` strings (the
row's text is cut before the stop string); the batch ends when every row has stopped or after
``max_new_tokens``. A prompt longer than ``max_length - max_new_tokens`` tokens keeps its last tokens.

Greedy by default (evaluation); ``temperature > 0`` samples, with ``top_p`` and a ``seed`` (GRPO sampling).
``benchmarks/bench_generate.py`` compares it with a per-row ``model.generate`` loop and transformers'
pipeline batching.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelops.errors import EvaluationError


def generate(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int = 16,
    max_length: int | None = None, stop: Sequence[str] = (), temperature: float = 0.0, top_p: float = 1.0,
    seed: int | None = None,
) -> list[str]:  # fmt: skip
    """The continuation of each prompt, in prompt order, decoded without special tokens.

    Args:
        model: a causal LM (transformers or PEFT), on the device it should run on.
        tokenizer: its tokenizer.
        prompts: the texts to continue.
        max_new_tokens: the most tokens added per prompt.
        batch_size: prompts per ``generate`` call.
        max_length: prompt plus new tokens; longer prompts keep their last tokens. None: no limit.
        stop: strings that end a row's generation; the text returned stops before the first one.
        temperature: 0 decodes greedily; above 0 samples from the softmax at that temperature.
        top_p: nucleus sampling mass (sampling only).
        seed: seeds torch's generator before sampling, so samples repeat.

    Raises:
        EvaluationError: ``max_new_tokens < 1``, no room for a prompt, no EOS token, a bad temperature/top_p.
    """
    import torch

    ids = _prompt_ids(tokenizer, prompts, max_new_tokens, max_length)
    options = generation_options(model, tokenizer, max_new_tokens, stop, temperature, top_p)
    if seed is not None and temperature > 0:
        torch.manual_seed(seed)
    new_tokens = generate_ids(model, ids, options, batch_size)
    return [_cut(tokenizer.decode(new, skip_special_tokens=True), stop) for new in new_tokens]


def generate_ids(model, ids: Sequence[Sequence[int]], options: dict, batch_size: int) -> list[list[int]]:
    """The new tokens of each prompt (token ids, in prompt order), up to its first stop token.

    Prompts are sorted by length and left-padded per batch of ``batch_size``; ``options`` are ``generate``'s
    (``generation_options`` makes them).
    """
    import torch

    device = next(iter(model.parameters()), torch.empty(0)).device
    outputs: list[list[int]] = [[] for _ in ids]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        input_ids, mask = left_pad([list(ids[i]) for i in index], options["pad_token_id"])
        with torch.inference_mode():
            generated = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **options)
        for i, new in zip(index, generated[:, input_ids.shape[1] :].tolist(), strict=True):
            outputs[i] = _until(new, options["eos_token_id"])
    return outputs


def _prompt_ids(tokenizer, prompts: Sequence[str], max_new_tokens: int, max_length: int | None) -> list[list[int]]:
    if max_new_tokens < 1:
        raise EvaluationError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    keep = None if max_length is None else max_length - max_new_tokens
    if keep is not None and keep < 1:
        raise EvaluationError(f"max_length={max_length} leaves no room for a prompt and {max_new_tokens} new tokens")
    return [row[-keep:] if keep else row for row in tokenizer(list(prompts))["input_ids"]]


def generation_options(
    model, tokenizer, max_new_tokens: int, stop=(), temperature: float = 0.0, top_p: float = 1.0
) -> dict:
    """``model.generate``'s keyword arguments: greedy at temperature 0, else sampling; EOS and padding set."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise EvaluationError(f"temperature must be >= 0 and top_p in (0, 1], got {temperature} and {top_p}")
    eos = stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    options = {"max_new_tokens": max_new_tokens, "num_beams": 1, "pad_token_id": pad_id, "eos_token_id": eos,
               "use_cache": True, "do_sample": temperature > 0}  # fmt: skip
    if temperature > 0:
        options.update(temperature=temperature, top_p=top_p, top_k=0)
    else:  # unset the sampling knobs a checkpoint's generation_config may carry, so greedy warns of nothing
        options.update(temperature=None, top_p=None, top_k=None)
    if stop:
        options.update(stop_strings=list(stop), tokenizer=tokenizer)
    return options


def left_pad(rows: list[list[int]], pad_id: int):
    """Rows of token ids as one left-padded batch: (input_ids, attention_mask), long tensors."""
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return input_ids, mask


def stop_ids(model, tokenizer) -> list[int]:
    """The token ids that end a generation: the model's generation config's EOS ids and the tokenizer's."""
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


def _cut(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first stop string."""
    ends = [text.find(s) for s in stop if s and s in text]
    return text[: min(ends)] if ends else text
