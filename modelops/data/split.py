"""Splitting one table into train/validation/test by row indices, reproducibly for a seed.

Sizes are fractions of the rows (``0.1``) or row counts (``500``). With stratification each
label's rows are shuffled and dealt out on their own, with the per-label share rounded by
largest remainder, so every split keeps the label proportions to within one row per label
while the split sizes stay exactly what was asked. Everything is numpy over row indices:
no Python object per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelops.errors import DataError


def split_sizes(n: int, sizes: Mapping[str, float | int], where: str = "'train'") -> dict[str, int]:
    """Row counts per named split; what is left over stays in the source split (`where` names it).

    Raises:
        DataError: a size that is negative, a fraction outside [0, 1), a split that would get no
            rows (a fraction of too few rows), or splits that take every row.
    """
    counts: dict[str, int] = {}
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int | float) or size < 0:
            raise DataError(f"split: {name}={size!r} is not a fraction in [0, 1) or a row count")
        if isinstance(size, float) and size >= 1:
            raise DataError(f"split: {name}={size!r}; a fraction must be below 1 (use an int for a row count)")
        counts[name] = round(size * n) if isinstance(size, float) else int(size)
    asked = ", ".join(f"{name}={size!r}" for name, size in sizes.items())
    empty = [name for name, count in counts.items() if count == 0 and sizes[name]]
    if empty:
        raise DataError(
            f"split: {asked} of the {n} row(s) of {where} leaves {empty} with no rows; "
            "give more rows, larger fractions, or row counts (e.g. validation=1)"
        )
    if sum(counts.values()) >= n:
        raise DataError(f"split: {asked} of the {n} row(s) of {where} takes {counts} and leaves none for {where}")
    return counts


def split_indices(
    n: int,
    sizes: Mapping[str, float | int],
    seed: int = 0,
    groups: Any = None,
    source: str = "train",
    where: str | None = None,
) -> dict[str, np.ndarray]:
    """Sorted row indices for `source` and every named split.

    Args:
        n: rows in the table being split.
        sizes: split name -> fraction or row count.
        seed: the seed of the shuffle; the same seed gives the same split.
        groups: optional integer class id per row (numpy array); stratifies when given.
        source: the name of the split that keeps the remaining rows.
        where: how errors name the source (default its name), e.g. ``'train' (data/train.jsonl)``.
    """
    counts = split_sizes(n, sizes, where or repr(source))
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        bounds = np.cumsum([0, *counts.values()])
        parts = {name: order[bounds[i] : bounds[i + 1]] for i, name in enumerate(counts)}
        parts[source] = order[bounds[-1] :]
    else:
        parts = _stratified(np.asarray(groups), counts, rng, source)
    return {name: np.sort(parts[name]) for name in [source, *counts]}


def _stratified(groups: np.ndarray, counts: dict[str, int], rng: np.random.Generator, source: str) -> dict:
    classes, inverse = np.unique(groups, return_inverse=True)
    members = [rng.permutation(np.flatnonzero(inverse == k)) for k in range(len(classes))]
    class_sizes = np.array([len(m) for m in members])
    taken = np.zeros(len(classes), dtype=np.int64)
    parts: dict[str, list] = {name: [] for name in [*counts, source]}
    for name, count in counts.items():
        share = _apportion(count, class_sizes, class_sizes - taken)
        for k, member in enumerate(members):
            parts[name].append(member[taken[k] : taken[k] + share[k]])
        taken += share
    for k, member in enumerate(members):
        parts[source].append(member[taken[k] :])
    return {name: np.concatenate(chunks) if chunks else np.empty(0, np.int64) for name, chunks in parts.items()}


def _apportion(count: int, class_sizes: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Split `count` rows over classes in proportion to their sizes (largest remainder), within `available`."""
    exact = count * class_sizes / class_sizes.sum()
    share = np.minimum(np.floor(exact).astype(np.int64), available)
    order = np.argsort(-(exact - share), kind="stable")
    i = 0
    while share.sum() < count:
        k = order[i % len(order)]
        if share[k] < available[k]:
            share[k] += 1
        i += 1
    return share


def label_groups(part: Any, column: str = "label") -> np.ndarray:
    """Integer class ids for a `datasets.Dataset`'s label column, straight from Arrow."""
    import pyarrow.compute as pc

    labels = part.select_columns([column]).with_format("arrow")[:][column].combine_chunks()
    return pc.dictionary_encode(labels).indices.to_numpy(zero_copy_only=False)
