"""Tokenising classification data and batching rows with as little padding as possible."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from modelops.errors import DataError
from modelops.models.labels import IGNORE_INDEX

# Rows are sorted by length inside windows of this many batches, so batches stay random
# across the epoch while each batch holds rows of similar length.
_MEGABATCH = 50


def tokenize_classification(table, tokenizer, label2id: dict[str, int], max_length: int):
    """Tokenise a classification split into input_ids/attention_mask/labels plus a `length` column."""
    unknown = sorted({str(v) for v in table.unique("label")} - set(label2id))
    if unknown:
        raise DataError(f"label values {unknown} are not in the model's labels {list(label2id)}")

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["labels"] = [label2id[str(v)] for v in batch["label"]]
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return table.map(encode, batched=True, remove_columns=table.column_names, load_from_cache_file=False)


class LengthGroupedBatches:
    """Batches of indices: shuffled per epoch (seeded), length-sorted within megabatch windows.

    The order is a pure function of `(seed, epoch)`, so a resumed run sees the same batches.

    Args:
        lengths: token count of each row.
        batch_size: rows per batch.
        seed: with the epoch, decides the order.
        group_by_length: when false, plain shuffled batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths = lengths
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
            window = self.batch_size * _MEGABATCH
            order = [
                i
                for start in range(0, len(order), window)
                for i in sorted(order[start : start + window], key=self.lengths.__getitem__, reverse=True)
            ]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            rng.shuffle(batches)
        yield from batches


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


def eval_batches(tokenized, batch_size: int) -> list[list[int]]:
    """Index batches for evaluation: sorted by length (least padding), in a fixed order."""
    order = sorted(range(len(tokenized)), key=tokenized["length"].__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def classification_collator(tokenizer):
    """Pads classification rows to the longest in the batch."""
    from transformers import DataCollatorWithPadding

    return CountingCollator(DataCollatorWithPadding(tokenizer), causal=False)


def model_columns(tokenized) -> list[str]:
    """The columns a collator needs (the rest, like raw text, stays out of the batches)."""
    wanted = ("input_ids", "attention_mask", "token_type_ids", "labels", "position_ids", "length")
    return [c for c in wanted if c in tokenized.column_names]
