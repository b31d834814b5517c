"""Inference batching: length-sorted batches padded to their longest member, under inference mode.

Sorting by token length keeps padding minimal; every batch is masked, and results are put back in the
original row order, so what the Evaluator reports does not depend on the batch size or on row order
(beyond float rounding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any


def sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Row indices in batches of `batch_size`, shortest rows first (ties keep row order)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def pad(rows: Sequence[Sequence[int]], value: int, left: bool = False):
    """A `(len(rows), longest)` long tensor of `rows` padded with `value` on the right (or the left)."""
    import torch

    width = max(len(row) for row in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if not row:
            continue
        values = torch.tensor(row, dtype=torch.long)
        if left:
            out[i, width - len(row) :] = values
        else:
            out[i, : len(row)] = values
    return out


def attention_mask(rows: Sequence[Sequence[int]], left: bool = False):
    """1 over each row's tokens, 0 over its padding (same layout as `pad`)."""
    return pad([[1] * len(row) for row in rows], 0, left)


def model_device(model) -> Any:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    import torch

    return next(iter(model.parameters()), torch.empty(0)).device


@contextlib.contextmanager
def inference(model) -> Iterator[None]:
    """Eval mode and `torch.inference_mode()` for the block; the model's training mode is restored after.

    This is what lets a training loop evaluate its live model (periodic validation) and carry on training.
    """
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
