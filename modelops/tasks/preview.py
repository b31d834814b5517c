"""A human-readable view of tokenised causal-LM rows: which tokens carry the loss."""

from __future__ import annotations

from modelops.models.labels import IGNORE_INDEX

_GREEN, _RESET = "\033[32m", "\033[0m"


def preview(tokenized, tokenizer, n: int = 3, color: bool = False) -> str:
    """The first `n` rows decoded, loss-carrying spans wrapped in `[[ ]]` (or green with `color=True`).

    Each example is headed by its count of trainable tokens over its total. Special tokens are shown.

    Args:
        tokenized: a `datasets.Dataset` with input_ids and labels (tokenised or packed).
        tokenizer: the tokenizer that made it.
        n: how many rows.
        color: ANSI colour instead of brackets, for a terminal.
    """
    blocks = []
    for i, row in enumerate(tokenized.select(range(min(n, len(tokenized))))):
        ids, labels = list(row["input_ids"]), list(row["labels"])
        trained = len(labels) - labels.count(IGNORE_INDEX)
        text = "".join(
            _render(tokenizer.decode(span, skip_special_tokens=False), on, color) for span, on in _spans(ids, labels)
        )
        blocks.append(f"--- example {i}: {trained}/{len(ids)} tokens carry loss\n{text}")
    return "\n".join(blocks)


def _spans(ids: list[int], labels: list[int]) -> list[tuple[list[int], bool]]:
    """Runs of consecutive tokens that all carry loss or all do not."""
    spans: list[tuple[list[int], bool]] = []
    for token, label in zip(ids, labels, strict=True):
        on = label != IGNORE_INDEX
        if spans and spans[-1][1] == on:
            spans[-1][0].append(token)
        else:
            spans.append(([token], on))
    return spans


def _render(text: str, on: bool, color: bool) -> str:
    if not on:
        return text
    return f"{_GREEN}{text}{_RESET}" if color else f"[[{text}]]"
