"""Packing tokenised causal-LM rows into full-length rows, and collating them into batches.

Packed examples must never see each other. Each packed row carries position_ids that restart at 0 for
every example, and the collator keeps the examples apart in one of three layouts (`LAYOUTS`):

- `flat` (flash attention): the batch's packed rows are joined into one row of shape [1, tokens] with
  no padding and no mask; transformers' flash path reads the example boundaries from position_ids and
  runs the varlen kernel (it does so only for a batch of one row).
- `position_ids` (sdpa, eager, flex): rows padded to the batch's longest, no attention mask;
  transformers (5.x, `masking_utils.find_packed_sequence_indices`) builds its own packed-sequence mask
  from position_ids, but only when no mask and no KV cache is passed, so these batches carry
  `use_cache=False`.
- `block_mask`: the old way, an explicit block-diagonal causal mask [batch, 1, L, L], for models whose
  masking ignores position_ids (Bloom, with ALiBi, takes none). O(L^2) memory per row and no flash.

`packed_layout` picks the layout for a loaded model by trying the padding-free one on two tiny examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelops.errors import DataError
from modelops.models.labels import IGNORE_INDEX


def pack(tokenized, max_length: int):
    """Pack rows first-fit-decreasing into rows of at most `max_length` tokens.

    Rows are placed longest first (ties in row order), each into the first packed row with room, so
    the result is deterministic. The first label of every example is set to -100: in a packed row that
    position would otherwise be predicted from the end of the previous example (unpacked, the first
    position is never a target anyway, so nothing is lost).

    Args:
        tokenized: a `datasets.Dataset` with input_ids and labels, as from `tokenize_causal_lm`.
        max_length: most tokens per packed row.

    Returns:
        A `datasets.Dataset` with input_ids, labels, position_ids (restarting at 0 for each example) and length.

    Raises:
        DataError: a row is longer than `max_length` (tokenise with the same max_length first).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = tokenized.select_columns(["input_ids", "labels"]).with_format("arrow")[:]
    ids = table.column("input_ids").combine_chunks()
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)
    too_long = np.flatnonzero(lengths > max_length)
    if too_long.size:
        raise DataError(
            f"row {too_long[0] + 1}: {lengths[too_long[0]]} tokens do not fit max_length={max_length} for packing "
            f"({too_long.size} such rows); tokenise with the same max_length"
        )
    placed = np.argsort(-lengths, kind="stable")
    bins = np.asarray(_first_fit(lengths[placed].tolist(), max_length), dtype=np.int64)
    order = placed[np.argsort(bins, kind="stable")]  # grouped by packed row, in placement order

    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sizes = lengths[order]
    row_start = np.repeat(np.cumsum(sizes) - sizes, sizes)
    position = np.arange(int(sizes.sum())) - row_start
    gather = np.repeat(starts[order], sizes) + position
    values = {
        "input_ids": ids.flatten().to_numpy(zero_copy_only=False)[gather],
        "labels": table.column("labels").combine_chunks().flatten().to_numpy(zero_copy_only=False)[gather].copy(),
        "position_ids": position,
    }
    values["labels"][position == 0] = IGNORE_INDEX
    packed_lengths = np.bincount(bins, weights=lengths[placed]).astype(np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(packed_lengths)]), pa.int32())
    columns = {name: pa.ListArray.from_arrays(offsets, pa.array(v, pa.int32())) for name, v in values.items()}
    columns["length"] = pa.array(packed_lengths, pa.int32())
    return _dataset(pa.table(columns))


def _first_fit(lengths: list[int], capacity: int) -> list[int]:
    """The packed row of each length, first fit: O(n log n) with a max-tree over rows' free room.

    Unopened rows have full room, so the leftmost row with room is either an open one or the next new one.
    """
    size = 1 << max(1, (len(lengths) - 1).bit_length())
    room = [capacity] * (2 * size)
    bins = []
    for length in lengths:
        node = 1
        while node < size:
            node = 2 * node if room[2 * node] >= length else 2 * node + 1
        room[node] -= length
        bins.append(node - size)
        node //= 2
        while node:
            room[node] = max(room[2 * node], room[2 * node + 1])
            node //= 2
    return bins


def _dataset(table):
    import datasets
    from datasets.table import InMemoryTable

    return datasets.Dataset(InMemoryTable(table))


#: The ways a packed batch keeps its examples apart (see the module docstring).
LAYOUTS = ("flat", "position_ids", "block_mask")


def causal_lm_collator(
    pad_token_id: int, packed: bool = False, *, layout: str = "position_ids", mask_dtype=None
) -> Callable[[list], dict]:
    """A collate function for causal-LM rows.

    Args:
        pad_token_id: the id padding is filled with (its labels are always -100, whatever the id).
        packed: rows come from `pack` (they carry position_ids restarting at each example).
        layout: packed only: `flat`, `position_ids` or `block_mask` (see the module docstring).
        mask_dtype: `block_mask` only. None gives a boolean mask (True = attend; right for "sdpa"); a float
            dtype gives an additive mask (0 or the dtype's minimum), needed by the "eager" attention.

    Returns:
        collate(rows) -> dict: input_ids, labels, position_ids [batch, L] (right-padded to the batch's
        longest; [1, tokens] for `flat`), and attention_mask ([batch, L] of 0/1 unpacked; [batch, 1, L, L]
        for `block_mask`; none for the padding-free layouts, which carry `use_cache=False` instead).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")

    def collate(rows: list[dict[str, Any]]) -> dict:
        import torch

        batch = _pad(rows, pad_token_id, packed)
        real = batch.pop("_real")
        if not packed:
            batch["attention_mask"] = real.to(torch.long)
        elif layout == "block_mask":
            batch["attention_mask"] = _block_causal_mask(batch["position_ids"], mask_dtype)
        else:
            if layout == "flat":
                batch = {k: v[real][None] for k, v in batch.items()}
            # A KV cache would switch off transformers' packed-sequence detection.
            batch["use_cache"] = False
        return batch

    return collate


def packed_layout(model) -> str:
    """The layout that keeps packed examples apart in `model`: padding-free where its attention allows.

    Flash attention gets `flat`. Otherwise two short examples are run packed (`position_ids` layout) and
    alone: if the second example's logits agree, the model reads example boundaries from position_ids;
    if not (or the model takes no position_ids), it needs the explicit `block_mask`.
    """
    import torch

    if "flash" in str(model.config._attn_implementation):
        return "flat"
    ids = [[5, 9, 7, 3], [11, 4, 6]]
    rows = [{"input_ids": ids[0] + ids[1], "labels": ids[0] + ids[1], "position_ids": [0, 1, 2, 3, 0, 1, 2]}]
    batch = causal_lm_collator(0, packed=True, layout="position_ids")(rows)
    batch.pop("labels")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}).logits[0, 4:]
            alone = model(input_ids=torch.tensor([ids[1]], device=device), use_cache=False).logits[0]
    except (TypeError, ValueError):  # the model takes no position_ids
        return "block_mask"
    finally:
        model.train(was_training)
    tolerance = 1e-4 if packed.dtype == torch.float32 else 2e-2
    scale = alone.abs().max().clamp(min=1.0)
    return "position_ids" if bool(((packed - alone).abs().max() / scale) <= tolerance) else "block_mask"


def _pad(rows: list[dict[str, Any]], pad_token_id: int, packed: bool) -> dict:
    import torch

    if packed and any("position_ids" not in row for row in rows):
        raise DataError("packed=True needs rows with position_ids, as `pack` makes them")
    width = max(len(row["input_ids"]) for row in rows)
    shape = (len(rows), width)
    batch = {
        "input_ids": torch.full(shape, pad_token_id, dtype=torch.long),
        "labels": torch.full(shape, IGNORE_INDEX, dtype=torch.long),
        # Padding sits at position 0: in a packed row each pad token is then its own example and attends to
        # itself only, so no attention row is empty (an empty row would give NaN in the softmax).
        "position_ids": torch.zeros(shape, dtype=torch.long),
        "_real": torch.zeros(shape, dtype=torch.bool),
    }
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        batch["input_ids"][i, :n] = torch.as_tensor(row["input_ids"])
        batch["labels"][i, :n] = torch.as_tensor(row["labels"])
        batch["position_ids"][i, :n] = torch.as_tensor(row["position_ids"]) if packed else torch.arange(n)
        batch["_real"][i, :n] = True
    return batch


def _block_causal_mask(position_ids, mask_dtype):
    """[batch, 1, L, L]: token i sees token j when j <= i and both belong to the same example."""
    import torch

    example = torch.cumsum(position_ids == 0, dim=1)
    same = example[:, :, None] == example[:, None, :]
    width = position_ids.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    mask = (same & causal)[:, None]
    if mask_dtype is None:
        return mask
    return torch.zeros(mask.shape, dtype=mask_dtype).masked_fill(~mask, torch.finfo(mask_dtype).min)
