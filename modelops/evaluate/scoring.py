"""Class scores for classification data: a classifier's logits, or a causal LM's log-likelihood of each label.

A causal LM classifies the way lm-evaluation-harness scores multiple choice (its ``acc``): for every row and
every label, the summed log-probability of the label's verbalisation (``choice_template``, default
``" {label}"``) given the row's prompt (``prompt_template``, default ``"{text}\\nLabel:"``); the label with the
highest sum wins (the first label on a tie). The prompt is tokenized with the tokenizer's special tokens (BOS),
the verbalisation without, and the two are concatenated; a pair longer than ``max_length`` tokens loses tokens
from the start of the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelops.errors import EvaluationError
from modelops.evaluate.batching import attention_mask, model_device, pad, sorted_batches
from modelops.models import loss as lm_loss
from modelops.models.labels import IGNORE_INDEX as _IGNORE


def classifier_logits(model, tokenizer, texts: Sequence[str], batch_size: int, max_length: int) -> np.ndarray:
    """Logits `(len(texts), num_labels)` of a sequence classifier, inputs truncated to `max_length` tokens."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [key for key in ("input_ids", "token_type_ids") if key in encoded]
    pad_values = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": 0}
    device = model_device(model)
    ids = encoded["input_ids"]
    out = np.empty((len(ids), model.config.num_labels), dtype=np.float32)
    for index in sorted_batches([len(row) for row in ids], batch_size):
        batch = {key: pad([encoded[key][i] for i in index], pad_values[key]).to(device) for key in keys}
        batch["attention_mask"] = attention_mask([ids[i] for i in index]).to(device)
        out[index] = model(**batch).logits.float().cpu().numpy()
    return out


def choice_loglikelihoods(
    model, tokenizer, prompts: Sequence[str], choices: Sequence[str], batch_size: int, max_length: int
) -> np.ndarray:
    """Summed log-probability `(len(prompts), len(choices))` of each choice's tokens after each prompt."""
    prompt_ids = tokenizer(list(prompts))["input_ids"]
    choice_ids = tokenizer(list(choices), add_special_tokens=False)["input_ids"]
    for choice, ids in zip(choices, choice_ids, strict=True):
        if not 0 < len(ids) < max_length:
            raise EvaluationError(f"label verbalisation {choice!r} is {len(ids)} tokens; needs 1..{max_length - 1}")
    requests = [(p, c) for p in range(len(prompts)) for c in range(len(choices))]
    sequences = [(prompt_ids[p] + choice_ids[c])[-max_length:] for p, c in requests]
    scored = [len(choice_ids[c]) for _, c in requests]
    totals = np.empty(len(requests), dtype=np.float64)
    device = model_device(model)
    for index in sorted_batches([len(s) for s in sequences], batch_size):
        rows = [sequences[i] for i in index]
        labels = [
            [_IGNORE] * (len(row) - scored[i]) + row[len(row) - scored[i] :] for i, row in zip(index, rows, strict=True)
        ]
        totals[index] = _sequence_logprobs(
            model, pad(rows, 0).to(device), attention_mask(rows).to(device), pad(labels, _IGNORE).to(device)
        )
    return totals.reshape(len(prompts), len(choices))


def _sequence_logprobs(model, input_ids, mask, labels) -> np.ndarray:
    """Per row, the summed log-probability of its labelled tokens (logits at t predict the token at t + 1).

    From hidden states, the labelled positions only, in chunks: a large vocabulary's full logits never exist.
    """
    sums, _ = lm_loss.sequence_logprobs(model, {"input_ids": input_ids, "attention_mask": mask}, labels)
    return sums.double().cpu().numpy()
