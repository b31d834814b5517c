"""Tokenising classification data and batching rows with as little padding as possible."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from modelops.errors import DataError
from modelops.models.labels import IGNORE_INDEX
from modelops.tasks import truncation

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


def tokenize_classification(
    table,
    tokenizer,
    label2id: dict[str, int],
    max_length: int,
    too_long: str = "truncate",
    locate: truncation.Locate | None = None,
):
    """Tokenise a classification split into input_ids/attention_mask/labels plus a `length` column.

    Args:
        table: a `datasets.Dataset` with text and label.
        tokenizer: a transformers tokenizer.
        label2id: label name -> id.
        max_length: most tokens per row (special tokens included).
        too_long: a row longer than `max_length` is cut at the end ("truncate"), dropped ("skip")
            or an error ("reject"); the `CUT` column says what happened to each row.
        locate: maps row indices to their places (file:line) for error messages; default "row N".

    Returns:
        The tokenised split, with the bookkeeping columns `ROW` (index in `table`) and `CUT`.

    Raises:
        DataError: a label the model does not know, or (too_long="reject") a row that is too long.
    """
    from modelops.tasks.truncation import CUT, END_CUT, ROW, WHOLE, RowError, row_error, too_long_message

    unknown = sorted({str(v) for v in table.unique("label")} - set(label2id))
    if unknown:
        raise DataError(f"label values {unknown} are not in the model's labels {list(label2id)}")

    def encode(batch, indices):
        texts = batch["text"]
        # One token of room tells a row that fits from one that had to be cut.
        enc = dict(tokenizer(texts, truncation=True, max_length=max_length + 1))
        over = {i for i, ids in enumerate(enc["input_ids"]) if len(ids) > max_length}
        if over and too_long == "reject":
            first = min(over)
            raise RowError(indices[first], too_long_message(len(tokenizer(texts[first])["input_ids"]), max_length))
        keep = [i for i in range(len(texts)) if not (too_long == "skip" and i in over)]
        cut = [i for i in keep if i in over]
        if cut:
            fixed = tokenizer([texts[i] for i in cut], truncation=True, max_length=max_length)
            for name, values in fixed.items():
                for i, value in zip(cut, values, strict=True):
                    enc[name][i] = value
        out = {name: [values[i] for i in keep] for name, values in enc.items()}
        out["labels"] = [label2id[str(batch["label"][i])] for i in keep]
        out["length"] = [len(ids) for ids in out["input_ids"]]
        out[ROW] = [indices[i] for i in keep]
        out[CUT] = [END_CUT if i in over else WHOLE for i in keep]
        return out

    try:
        return table.map(
            encode, batched=True, with_indices=True, remove_columns=table.column_names, load_from_cache_file=False
        )
    except RowError as exc:
        raise row_error(exc, locate) from exc


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


def classification_collator(tokenizer):
    """Pads classification rows to the longest in the batch."""
    from transformers import DataCollatorWithPadding

    return CountingCollator(DataCollatorWithPadding(tokenizer), causal=False)


def model_columns(tokenized) -> list[str]:
    """The columns a collator needs (the rest, like raw text, stays out of the batches)."""
    wanted = ("input_ids", "attention_mask", "token_type_ids", "labels", "position_ids", "length")
    return [c for c in wanted if c in tokenized.column_names]
