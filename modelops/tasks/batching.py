"""Batches for scoring: rows sorted by length (least padding), in a fixed order."""

from __future__ import annotations


def eval_batches(tokenized, batch_size: int) -> list[list[int]]:
    """Index batches for evaluation: sorted by length (least padding), in a fixed order."""
    order = sorted(range(len(tokenized)), key=tokenized["length"].__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
