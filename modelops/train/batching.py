"""Tokenising training data and batching it with as little padding as possible."""

from __future__ import annotations

import random
from collections.abc import Iterator

from modelops.errors import DataError

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


def classification_loader(
    tokenized, tokenizer, batch_size: int, seed: int, group_by_length: bool, shuffle: bool = True
):
    """A DataLoader of padded classification batches (padding only to each batch's longest row)."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids", "labels") if c in tokenized.column_names]
    data = tokenized.with_format(columns=columns)
    collate = DataCollatorWithPadding(tokenizer)
    if not shuffle:
        return DataLoader(data, batch_size=batch_size, collate_fn=collate)
    sampler = LengthGroupedBatches(tokenized["length"], batch_size, seed, group_by_length)
    return DataLoader(data, batch_sampler=sampler, collate_fn=collate)
