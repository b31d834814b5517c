"""Causal-LM training rows: token ids, and labels that carry the loss only where the model should learn.

`modelops.models.templates.segments` renders a row as `(text, trainable)` segments; this module turns
them into tokens. Segment boundaries are token boundaries: each segment is tokenised on its own,
without special tokens, and the ids are concatenated. Tokenising the whole text at once could merge
characters on both sides of a prompt/answer boundary into one token (BPE merges), and then no exact
loss mask exists; tokenising apart keeps the mask exact and matches generation, where the prompt is
tokenised alone and the model continues after its last token. The price: the tokens at a boundary
may differ from those of the same text encoded in one piece.

The loss stops at the EOS: text a template puts after the EOS inside an assistant turn (the newline
of ChatML-style turns) is context, not something the model generates, so it carries no loss.
"""

from __future__ import annotations

import warnings
from typing import Any

from modelops.errors import ConfigError, DataError
from modelops.models.labels import IGNORE_INDEX
from modelops.models.templates import segments


def tokenize_causal_lm(
    table, fmt: str, tokenizer, max_length: int, loss_on: str = "answer", too_long: str = "truncate"
):
    """Tokenise one split for causal-LM training.

    Args:
        table: a `datasets.Dataset` holding one split in format `fmt`.
        fmt: text | completion | instruction | chat.
        tokenizer: a transformers tokenizer (its chat template, when set, renders instruction and chat rows).
        max_length: most tokens per row.
        loss_on: "answer" trains the completion/output/assistant tokens only (every token for the text
            format); "all" trains every token.
        too_long: "truncate" keeps the first `max_length` tokens and warns once with the count of
            truncated rows; "reject" raises on the first row that is too long.

    Returns:
        A `datasets.Dataset` with columns input_ids, labels (-100 where no loss) and length. The BOS is
        prepended when the tokenizer has one and its post-processor would add it (and the rendered
        text does not already start with it); its label is -100 unless loss_on="all". The EOS that ends
        each answer keeps its label even when the pad token is the EOS token.

    Raises:
        ConfigError: a `max_length` below 2 (`TrainConfig` checks `loss_on` and `too_long`).
        DataError: a row too long with too_long="reject", or a row where no token carries loss; the
            message names the row (1-based, as in the rest of modelops).
    """
    import datasets

    _check_options(max_length)
    bos = _bos_to_add(tokenizer)
    # Text rows are all answer; "all" also keeps an EOS written inside the text from ending the loss there.
    mode = "all" if fmt == "text" else loss_on

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        parts = [_loss_segments(segments(row, fmt, tokenizer), tokenizer, mode) for row in rows]
        flat = [text for row_parts in parts for text, _ in row_parts]
        ids = iter(tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else [])
        out: dict[str, list] = {"input_ids": [], "labels": [], "length": [], "_truncated": []}
        for index, row_parts in zip(indices, parts, strict=True):
            row_bos = None if bos is None or (row_parts and row_parts[0][0].startswith(tokenizer.bos_token)) else bos
            input_ids, labels = _join(row_parts, ids, row_bos, loss_on)
            input_ids, labels, truncated = _fit(input_ids, labels, index, max_length, too_long)
            out["input_ids"].append(input_ids)
            out["labels"].append(labels)
            out["length"].append(len(input_ids))
            out["_truncated"].append(truncated)
        return out

    ids = datasets.List(datasets.Value("int32"))
    features = datasets.Features(
        {"input_ids": ids, "labels": ids, "length": datasets.Value("int32"), "_truncated": datasets.Value("bool")}
    )
    tokenized = table.map(
        encode, batched=True, with_indices=True, remove_columns=table.column_names, features=features,
        load_from_cache_file=False, desc="tokenising",
    )  # fmt: skip
    truncated = sum(tokenized["_truncated"])
    if truncated:
        warnings.warn(
            f"{truncated} of {len(tokenized)} rows are longer than max_length={max_length} and were truncated "
            "(their first tokens kept)",
            UserWarning,
            stacklevel=2,
        )
    return tokenized.remove_columns("_truncated")


def _check_options(max_length: int) -> None:
    if not isinstance(max_length, int) or max_length < 2:
        raise ConfigError(f"max_length={max_length!r} must be an integer >= 2")


def _bos_to_add(tokenizer) -> int | None:
    """The BOS id when the tokenizer's own post-processing would put it first, else None."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bos if with_special[:1] == [bos] and without[:1] != [bos] else None


def _loss_segments(parts: list[tuple[str, bool]], tokenizer, loss_on: str) -> list[tuple[str, bool]]:
    """Segments with the final trainable flag: all of them for loss_on="all", else up to each answer's EOS."""
    if loss_on == "all":
        return [(text, True) for text, _ in parts]
    eos = tokenizer.eos_token
    out = []
    for text, trainable in parts:
        cut = text.rfind(eos) + len(eos) if trainable and eos and eos in text else len(text)
        out += [(text[:cut], trainable), (text[cut:], False)] if cut < len(text) else [(text, trainable)]
    return out


def _join(parts: list[tuple[str, bool]], ids, bos: int | None, loss_on: str) -> tuple[list[int], list[int]]:
    input_ids = [] if bos is None else [bos]
    labels = [] if bos is None else [bos if loss_on == "all" else IGNORE_INDEX]
    for _, trainable in parts:
        segment = next(ids)
        input_ids += segment
        labels += segment if trainable else [IGNORE_INDEX] * len(segment)
    return input_ids, labels


def _fit(input_ids: list[int], labels: list[int], index: int, max_length: int, too_long: str) -> tuple[Any, ...]:
    """Apply the too_long policy, then insist that some token carries loss."""
    truncated = len(input_ids) > max_length
    if truncated and too_long == "reject":
        raise DataError(
            f"row {index + 1}: {len(input_ids)} tokens exceed max_length={max_length} (too_long='reject'; "
            "'truncate' keeps the first max_length tokens)"
        )
    kept = labels[:max_length]
    # The first position is never a target (each position predicts the next), so it does not count.
    if kept[1:].count(IGNORE_INDEX) == len(kept) - 1:
        raise DataError(f"row {index + 1}: no token carries loss ({_why_no_loss(labels, max_length, truncated)})")
    return input_ids[:max_length], kept, truncated


def _why_no_loss(labels: list[int], max_length: int, truncated: bool) -> str:
    if truncated and labels[1:].count(IGNORE_INDEX) < len(labels) - 1:
        return f"answer truncated at max_length={max_length}"
    if labels.count(IGNORE_INDEX) < len(labels):
        return "its only trainable token is the first, which no position predicts"
    return "nothing in it is trainable: empty answer or text"
