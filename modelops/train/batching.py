"""Batching training rows with as little padding as possible, in a seeded order that resumes."""

from __future__ import annotations

import random
from collections.abc import Iterator

# Rows are sorted by length inside windows of at most this many batches (and at least 4 windows
# per epoch, as transformers' LengthGroupedSampler does), so batches stay random across the
# epoch while each batch holds rows of similar length.
_MEGABATCH = 50
_MIN_WINDOWS = 4
# The shortest share of each window is not sorted in but spread over the batches of the next
# shortest rows, at most half of each such batch. Sorted exactly, data with many rows of one short
# length (SST-2: two rows in five are phrases of one or two words, mostly noise for the label)
# gets whole batches of them, each a full Adam step on noise: on 4,000 SST-2-shaped rows
# (benchmarks/bench_train.py), 48 of 125 batches were such batches, costing about 3 points of test
# accuracy. Spread over the whole window they cost padding (a short row padded to a long one's
# length: 34% of the batches); next to the medium rows, a few tokens each (23%; shuffled: 78%).
_SPREAD = 0.4


class LengthGroupedBatches:
    """Batches of indices: shuffled per epoch (seeded), sorted by length within windows of a few batches.

    The order is a pure function of `(seed, epoch)`, so a resumed run sees the same batches.
    With grouping, each window of shuffled rows (see `_MEGABATCH`) is ordered longest first, its
    shortest rows (see `_SPREAD`) spread among the shortest of the others, and cut into
    batches; then the batches of the epoch are shuffled.

    Args:
        lengths: token count of each row.
        batch_size: rows per batch.
        seed: with the epoch, decides the order.
        group_by_length: when false, plain shuffled batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths = list(lengths)  # a datasets column would read the table on every index
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{self.seed}-{self.epoch}")
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if self.group_by_length:
            window = self.batch_size * max(1, min(_MEGABATCH, len(order) // (self.batch_size * _MIN_WINDOWS)))
            windows = [order[start : start + window] for start in range(0, len(order), window)]
            order = [i for rows in windows for i in self._window(rows, rng)]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            rng.shuffle(batches)
        yield from batches

    def _window(self, rows: list[int], rng: random.Random) -> list[int]:
        """`rows` longest first, the shortest `_SPREAD` share spread evenly, in random order, over
        as many of the shortest remaining rows (so they make at most half of each batch there)."""
        ranked = sorted(rows, key=self.lengths.__getitem__, reverse=True)
        short = int(_SPREAD * len(ranked))
        kept, spread = ranked[: len(ranked) - short], ranked[len(ranked) - short :]
        place: dict[int, float] = {i: rank for rank, i in enumerate(kept)}
        span = min(len(kept), len(spread))
        rng.shuffle(spread)
        for j, i in enumerate(spread):
            place[i] = len(kept) - span + (j + rng.random()) * span / len(spread)
        return sorted(ranked, key=place.__getitem__)


def train_loader(tokenized, collate, batch_size: int, seed: int, strategy: str):
    """A shuffled, seeded DataLoader over `tokenized` (which has a `length` column).

    Args:
        strategy: `pad`, `group_by_length` or `packing` (rows already packed: shuffled like `pad`).
    """
    import torch
    from torch.utils.data import DataLoader

    sampler = LengthGroupedBatches(tokenized["length"], batch_size, seed, strategy == "group_by_length")
    # A private generator: creating a loader iterator draws a seed from it, and drawing from the
    # global one would shift the dropout RNG of a resumed run.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(tokenized, batch_sampler=sampler, collate_fn=collate, generator=generator)
