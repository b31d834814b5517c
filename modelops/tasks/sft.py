"""Causal-LM training rows: token ids, and labels that carry the loss only where the model should learn.

`modelops.models.templates.segments` renders a row as `(text, trainable)` segments; this module turns
them into tokens. Segment boundaries are token boundaries: each segment is tokenised on its own,
without special tokens, and the ids are concatenated. Tokenising the whole text at once could merge
characters on both sides of a prompt/answer boundary into one token (BPE merges), and then no exact
loss mask exists; tokenising apart keeps the mask exact and matches generation, where the prompt is
tokenised alone and the model continues after its last token. The price: the tokens at a boundary
may differ from those of the same text encoded in one piece.

The loss stops at the EOS: text a template puts after the EOS inside an assistant turn (the newline
of ChatML-style turns) is context, not something the model generates, so it carries no loss.
"""

from __future__ import annotations

from modelops.errors import ConfigError
from modelops.models.labels import IGNORE_INDEX
from modelops.models.templates import segments
from modelops.tasks import truncation
from modelops.tasks.truncation import CUT, ROW, RowError


def tokenize_causal_lm(
    table,
    fmt: str,
    tokenizer,
    max_length: int,
    loss_on: str = "answer",
    too_long: str = "truncate",
    truncation_side: str = "left",
    locate: truncation.Locate | None = None,
):
    """Tokenise one split for causal-LM training.

    Args:
        table: a `datasets.Dataset` holding one split in format `fmt`.
        fmt: text | completion | instruction | chat.
        tokenizer: a transformers tokenizer (its chat template, when set, renders instruction and chat rows).
        max_length: most tokens per row.
        loss_on: "answer" trains the completion/output/assistant tokens only (every token for the text
            format); "all" trains every token.
        too_long: what happens to a row longer than `max_length`: "truncate" cuts the prompt (the tokens
            before the first one that carries loss) from `truncation_side`, then, if the answer alone
            is still too long, its end; "skip" drops the row; "reject" raises on the first such row.
            The `CUT` column says what happened to each row (see `truncation.summary`).
        truncation_side: "left" (keep the end of the prompt, next to the answer) or "right".
        locate: maps row indices to their places (file:line) for error messages; default "row N".

    Returns:
        A `datasets.Dataset` with columns input_ids, labels (-100 where no loss), length, and the
        bookkeeping columns `ROW` (index in `table`) and `CUT`. The BOS is prepended when the
        tokenizer has one and its post-processor would add it (and the rendered text does not already
        start with it); its label is -100 unless loss_on="all". The EOS that ends each answer keeps its
        label even when the pad token is the EOS token.

    Raises:
        ConfigError: a `max_length` below 2 (`TrainConfig` checks `loss_on`, `too_long` and `truncation_side`).
        DataError: a row too long with too_long="reject", or a row where no token carries loss; the
            message names the row's place.
    """
    import datasets

    _check_options(max_length)
    bos = bos_to_add(tokenizer)
    # Text rows are all answer; "all" also keeps an EOS written inside the text from ending the loss there.
    mode = "all" if fmt == "text" else loss_on

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        parts = [_loss_segments(segments(row, fmt, tokenizer), tokenizer, mode) for row in rows]
        flat = [text for row_parts in parts for text, _ in row_parts]
        ids = iter(tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else [])
        out: dict[str, list] = {"input_ids": [], "labels": [], "length": [], ROW: [], CUT: []}
        for index, row_parts in zip(indices, parts, strict=True):
            row_bos = None if bos is None or (row_parts and row_parts[0][0].startswith(tokenizer.bos_token)) else bos
            input_ids, labels = _join(row_parts, ids, row_bos, loss_on)
            if len(input_ids) > max_length and too_long != "truncate":
                if too_long == "reject":
                    raise RowError(index, truncation.too_long_message(len(input_ids), max_length))
                continue  # skip: counted from the missing ROW values
            keep_first = int(bool(input_ids) and input_ids[0] == tokenizer.bos_token_id)
            input_ids, labels, cut = truncation.cut_to_fit(input_ids, labels, max_length, truncation_side, keep_first)
            _check_loss(index, labels)
            for name, value in zip(out, (input_ids, labels, len(input_ids), index, cut), strict=True):
                out[name].append(value)
        return out

    ids = datasets.List(datasets.Value("int32"))
    features = datasets.Features(
        {"input_ids": ids, "labels": ids, "length": datasets.Value("int32"), ROW: datasets.Value("int64"),
         CUT: datasets.Value("int8")}
    )  # fmt: skip
    try:
        return table.map(
            encode, batched=True, with_indices=True, remove_columns=table.column_names, features=features,
            load_from_cache_file=False, desc="tokenising",
        )  # fmt: skip
    except RowError as exc:
        raise truncation.row_error(exc, locate) from exc


def _check_options(max_length: int) -> None:
    if not isinstance(max_length, int) or max_length < 2:
        raise ConfigError(f"max_length={max_length!r} must be an integer >= 2")


def bos_to_add(tokenizer) -> int | None:
    """The BOS id when the tokenizer's own post-processing would put it first, else None."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bos if with_special[:1] == [bos] and without[:1] != [bos] else None


def _loss_segments(parts: list[tuple[str, bool]], tokenizer, loss_on: str) -> list[tuple[str, bool]]:
    """Segments with the final trainable flag: all of them for loss_on="all", else up to each answer's EOS."""
    if loss_on == "all":
        return [(text, True) for text, _ in parts]
    eos = tokenizer.eos_token
    out = []
    for text, trainable in parts:
        cut = text.rfind(eos) + len(eos) if trainable and eos and eos in text else len(text)
        out += [(text[:cut], trainable), (text[cut:], False)] if cut < len(text) else [(text, trainable)]
    return out


def _join(parts: list[tuple[str, bool]], ids, bos: int | None, loss_on: str) -> tuple[list[int], list[int]]:
    input_ids = [] if bos is None else [bos]
    labels = [] if bos is None else [bos if loss_on == "all" else IGNORE_INDEX]
    for _, trainable in parts:
        segment = next(ids)
        input_ids += segment
        labels += segment if trainable else [IGNORE_INDEX] * len(segment)
    return input_ids, labels


def _check_loss(index: int, labels: list[int]) -> None:
    """Insist that some token carries loss; the first position is never a target (nothing predicts it).

    Truncation always keeps the answer's first token (see `truncation.cut_to_fit`), so this is
    about the row itself.
    """
    if labels[1:].count(IGNORE_INDEX) == len(labels) - 1:
        raise RowError(index, f"no token carries loss ({_why_no_loss(labels)})")


def _why_no_loss(labels: list[int]) -> str:
    if labels.count(IGNORE_INDEX) < len(labels):
        return "its only trainable token is the first, which no position predicts"
    return "nothing in it is trainable: empty answer or text"
