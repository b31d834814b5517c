"""Token-level loss, perplexity and bits per byte of a causal language model over a list of texts."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from modelops.errors import EvaluationError
from modelops.models import loss as lm_loss
from modelops.models.labels import IGNORE_INDEX as _IGNORE


def language_model_scores(
    model,
    tokenizer,
    texts: list[str],
    *,
    max_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    device=None,
) -> dict[str, Any]:
    """Score ``texts`` with a causal LM: mean token negative log-likelihood, perplexity and bits per byte.

    Every text is tokenized with the tokenizer's special tokens. The first token of a text is context only, never
    predicted: when the tokenizer adds a BOS token that is the BOS (so every word of the text is scored); otherwise
    it is the text's first token. All predicted tokens of all texts are pooled, so ``loss`` is the mean over tokens,
    not a mean of per-text means.

    Texts longer than ``max_length`` tokens are scored with a sliding window, the "perplexity of fixed-length
    models" method of the Hugging Face docs: windows of ``max_length`` tokens start at ``0, stride, 2*stride, ...``
    until one reaches the end of the text, and each window scores only the tokens that the previous window did not
    reach, using the ones before them in the window as context. Each token is thus scored once, with at least
    ``max_length - stride`` tokens of context once past the first window. With ``stride == max_length`` the windows
    do not overlap and the first token of each window is context only, as in the Hugging Face recipe.

    Windows are sorted by length and batched with right padding that is masked out (attention mask 0, label -100),
    so the result does not depend on ``batch_size`` or on the order of ``texts`` beyond float rounding. The model runs
    in eval mode under ``torch.inference_mode`` (its training mode is restored afterwards).

    Args:
        model: A causal LM (``transformers`` ``*ForCausalLM``, or a PEFT model wrapping one).
        tokenizer: Its tokenizer; only ``tokenizer(texts)["input_ids"]`` is used, padding is done here.
        texts: The texts to score.
        max_length: Tokens per window; defaults to the model's ``max_position_embeddings``.
        stride: How far each window advances; defaults to ``max_length // 2``. Must be in ``1..max_length``.
        batch_size: Windows per forward pass.
        device: Where to run; defaults to the device of the model's parameters.

    Returns:
        ``{"loss": mean NLL per predicted token (nats), "perplexity": exp(loss), "bits_per_byte": total NLL in bits
        divided by the total UTF-8 bytes of texts, "tokens": number of predicted tokens, "rows": per text,
        {"nll": summed NLL (nats), "tokens": predicted tokens, "bytes": UTF-8 bytes}}``; the corpus values are
        the ratios of the rows' sums (what the paired intervals of `modelops.stats.paired_metrics` resample).

    Raises:
        EvaluationError: If the model is not a causal LM, ``texts`` is empty or has no text of two tokens or more,
            or ``max_length``/``stride``/``batch_size`` is impossible.
    """
    _check_causal_lm(model)
    if not texts:
        raise EvaluationError("perplexity needs at least one text; the evaluation set is empty")
    max_length, stride = _window_sizes(model, max_length, stride)
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    token_ids = tokenizer(list(texts))["input_ids"]
    row_bytes = [len(text.encode("utf-8")) for text in texts]
    rows = [(ids, ids) for ids in token_ids]
    return labelled_scores(model, rows, row_bytes, max_length, stride, batch_size, device)


def labelled_scores(
    model, rows: list[tuple[list[int], list[int]]], total_bytes: int | Sequence[int], max_length: int | None = None,
    stride: int | None = None, batch_size: int = 8, device=None,
) -> dict[str, Any]:  # fmt: skip
    """Like `language_model_scores`, on token ids whose labels say which tokens are scored.

    Each row is ``(input_ids, labels)``; a token is scored when its label is not -100 (the mask training uses,
    so ``score_on=answer`` scores the answer tokens only). The first token of a row is never scored. Windows
    are as in `language_model_scores`; ``total_bytes`` are the UTF-8 bytes of the scored text (bits per byte):
    one per row (they then go in each row's ``"bytes"``), or one total (each row's ``"bytes"`` is None).
    """
    _check_causal_lm(model)
    max_length, stride = _window_sizes(model, max_length, stride)
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    row_bytes = [None] * len(rows) if isinstance(total_bytes, int) else [int(b) for b in total_bytes]
    windows = [
        (i, window) for i, (ids, labels) in enumerate(rows) for window in _windows(ids, labels, max_length, stride)
    ]
    row_nll, row_tokens = _score_windows(model, windows, len(rows), batch_size, device)
    total_nll, tokens = math.fsum(row_nll), sum(row_tokens)
    total_bytes = total_bytes if isinstance(total_bytes, int) else sum(row_bytes)
    if tokens == 0:
        raise EvaluationError(
            "perplexity needs a text of at least two tokens (a scored token after the first); no row has one"
        )
    loss = total_nll / tokens
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_byte": total_nll / math.log(2) / total_bytes,
        "tokens": tokens,
        "rows": [
            {"nll": nll, "tokens": count, "bytes": size}
            for nll, count, size in zip(row_nll, row_tokens, row_bytes, strict=True)
        ],
    }


def with_row_scores(predictions: list[dict[str, Any]], scores: list[dict[str, Any]], table) -> list[dict[str, Any]]:
    """Prediction rows with each row's ``nll``, ``tokens`` and ``bytes`` (`labelled_scores`' ``"rows"``) added.

    Without other predictions, one row per evaluated row, named by ``row`` (a content hash of the row, so a
    comparison of two saved evaluations can check they scored the same data).
    """
    if not predictions:
        predictions = [{"row": _row_hash(row)} for row in table]
    return [{**prediction, **score} for prediction, score in zip(predictions, scores, strict=True)]


def _row_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _check_causal_lm(model) -> None:
    """Raise EvaluationError unless ``model`` has a language-modelling head and generates left to right."""
    name = type(model).__name__
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is None:
        is_classifier = "Classification" in name or hasattr(model, "score") or hasattr(model, "classifier")
        what = "a classifier" if is_classifier else "a model without a language-modelling head"
        raise EvaluationError(f"perplexity needs a causal language model; {name} is {what}")
    config = getattr(model, "config", None)
    can_generate = getattr(model, "can_generate", lambda: False)
    if not can_generate() or getattr(config, "is_encoder_decoder", False):
        raise EvaluationError(f"perplexity needs a causal language model; {name} is not one (masked or seq2seq LM)")


def _window_sizes(model, max_length: int | None, stride: int | None) -> tuple[int, int]:
    """Resolve the defaults of ``max_length`` (the model's context) and ``stride`` (half of it) and check them."""
    if max_length is None:
        max_length = getattr(model.config, "max_position_embeddings", None)
        if max_length is None:
            raise EvaluationError(f"{type(model).__name__}.config has no max_position_embeddings; pass max_length")
    if max_length < 2:
        raise EvaluationError(f"max_length must be >= 2 tokens to predict anything, got {max_length}")
    stride = max(1, max_length // 2) if stride is None else stride
    if not 1 <= stride <= max_length:
        raise EvaluationError(f"stride must be in 1..max_length={max_length}, got {stride}")
    return max_length, stride


def _windows(ids: list[int], labels: list[int], max_length: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """Split one row into ``(window ids, window labels)``; a window's labels keep only the tokens it scores.

    A window scores the labelled tokens the previous window did not reach; its first token has nothing before
    it in the window, so it is never scored. Windows that score nothing are dropped.
    """
    windows, scored_until = [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        first = max(scored_until, begin + 1)
        window_labels = [_IGNORE] * (first - begin) + labels[first:end]
        if any(label != _IGNORE for label in window_labels):
            windows.append((ids[begin:end], window_labels))
        scored_until = end
        if end == len(ids):
            break
    return windows


def _score_windows(
    model, windows: list[tuple[int, tuple[list[int], list[int]]]], num_rows: int, batch_size: int, device
) -> tuple[list[float], list[int]]:
    """Per row, the summed NLL (nats, float64) and the number of scored tokens of its ``(row, window)`` windows."""
    import torch

    device = device if device is not None else next(model.parameters()).device
    # Sorting by length keeps padding small; the stable sort plus masking keeps the result order-independent.
    ordered = sorted(windows, key=lambda item: len(item[1][0]))
    was_training = model.training
    model.eval()
    row_nll, row_tokens = [0.0] * num_rows, [0] * num_rows
    try:
        with torch.inference_mode():
            for start in range(0, len(ordered), batch_size):
                batch = ordered[start : start + batch_size]
                input_ids, attention_mask, labels = _collate([window for _, window in batch], device)
                nll, counts = _window_nll(model, input_ids, attention_mask, labels)
                for (row, _), window_nll, count in zip(batch, nll, counts, strict=True):
                    row_nll[row] += window_nll
                    row_tokens[row] += count
    finally:
        model.train(was_training)
    return row_nll, row_tokens


def _collate(batch: list[tuple[list[int], list[int]]], device):
    """Right-pad windows into tensors; labels are -100 on padding and wherever the window scores nothing."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.zeros(len(batch), width, dtype=torch.long)
    attention_mask = torch.zeros(len(batch), width, dtype=torch.long)
    labels = torch.full((len(batch), width), _IGNORE, dtype=torch.long)
    for row, (ids, window_labels) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        labels[row, : len(ids)] = torch.tensor(window_labels, dtype=torch.long)
    return input_ids.to(device), attention_mask.to(device), labels.to(device)


def _window_nll(model, input_ids, attention_mask, labels) -> tuple[list[float], list[int]]:
    """Per window, the summed NLL of its labelled tokens (float64) and their count; logits at t predict t + 1.

    From hidden states, the labelled positions only, in chunks: a large vocabulary's full logits never exist.
    """
    import torch

    logprobs, rows = lm_loss.token_logprobs(model, {"input_ids": input_ids, "attention_mask": attention_mask}, labels)
    sums = torch.zeros(labels.shape[0], dtype=torch.float64, device=logprobs.device)
    sums = sums.index_add(0, rows, logprobs.double())
    counts = torch.bincount(rows, minlength=labels.shape[0])
    return (-sums).tolist(), counts.tolist()
