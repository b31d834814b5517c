"""Sequence classification rows: tokenised text with its label id, padded to the longest of a batch."""

from __future__ import annotations

from modelops.errors import DataError
from modelops.tasks import truncation
from modelops.tasks.batching import CountingCollator


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


def classification_collator(tokenizer):
    """Pads classification rows to the longest in the batch."""
    from transformers import DataCollatorWithPadding

    return CountingCollator(DataCollatorWithPadding(tokenizer), causal=False)
