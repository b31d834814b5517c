"""Batches: what a collated batch counts (tokens, loss targets), the model columns, and scoring order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelops.models.labels import IGNORE_INDEX


def eval_batches(tokenized, batch_size: int) -> list[list[int]]:
    """Index batches for evaluation: sorted by length (least padding), in a fixed order."""
    order = sorted(range(len(tokenized)), key=tokenized["length"].__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class CountingCollator:
    """Wrap a collate function: add `num_tokens` (non-padding tokens) and `num_targets` (loss terms).

    For causal LMs the label of the first token of every (packed) example is ignored: the token
    before it belongs to another example, so there is nothing to predict it from. Counting here,
    on the CPU, keeps the training step free of device syncs.
    """

    def __init__(self, collate: Callable[[list[dict[str, Any]]], dict[str, Any]], causal: bool):
        self.collate = collate
        self.causal = causal

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        num_tokens = sum(int(f["length"]) for f in features)
        batch = dict(self.collate([{k: v for k, v in f.items() if k != "length"} for f in features]))
        if self.causal:
            labels = batch["labels"].clone()
            if "position_ids" in batch:
                labels[batch["position_ids"] == 0] = IGNORE_INDEX
            batch["labels"] = labels
            num_targets = int((labels[:, 1:] != IGNORE_INDEX).sum())
        else:
            num_targets = len(features)
        batch["num_tokens"], batch["num_targets"] = num_tokens, num_targets
        return batch


def model_columns(tokenized) -> list[str]:
    """The columns a collator needs (the rest, like raw text, stays out of the batches)."""
    wanted = ("input_ids", "attention_mask", "token_type_ids", "labels", "position_ids", "length")
    return [c for c in wanted if c in tokenized.column_names]
