"""Preference metrics of the Evaluator against a hand computation, one pair at a time, with no batching."""

from __future__ import annotations

import copy

import pytest

from modelops.errors import EvaluationError

ROWS = [
    {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "7"},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"},
    {"prompt": "What is 9 + 9?", "chosen": "18", "rejected": "16"},
]


def _dataset():
    from modelops.data.dataset import Dataset

    return Dataset.from_records(ROWS, split="test", format="preference")


def _models():
    import torch

    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    tokenizer = load_tokenizer("tiny-llama")
    base = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=64), seed=0).eval()
    tuned = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in tuned.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return base, tuned, tokenizer


def _by_hand(model, tokenizer, prompt: str, response: str) -> tuple[float, int]:
    """log p(response + EOS | BOS + prompt), one sequence, summed token by token."""
    import torch

    context = tokenizer(prompt)["input_ids"]
    answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([context + answer])
    with torch.no_grad():
        log_probs = model(input_ids=ids).logits[0].log_softmax(-1)
    total = sum(float(log_probs[len(context) + i - 1, token]) for i, token in enumerate(answer))
    return total, len(answer)


def test_preference_metrics_equal_a_hand_computation():
    from modelops.evaluate import Evaluator

    base, tuned, tokenizer = _models()
    results = Evaluator(batch_size=2, reference=(base, tokenizer)).evaluate((tuned, tokenizer), _dataset())
    prefers, wins, margins = [], [], []
    for row in ROWS:
        (c, nc), (r, nr) = (_by_hand(tuned, tokenizer, row["prompt"], row[side]) for side in ("chosen", "rejected"))
        rc, rr = (_by_hand(base, tokenizer, row["prompt"], row[side])[0] for side in ("chosen", "rejected"))
        prefers.append(c / nc > r / nr)
        margins.append((c - rc) - (r - rr))
        wins.append(margins[-1] > 0)
    assert results.metrics["preference_accuracy"] == pytest.approx(sum(prefers) / 3)
    assert results.metrics["reward_accuracy"] == pytest.approx(sum(wins) / 3)
    assert results.metrics["reward_margin"] == pytest.approx(sum(margins) / 3, abs=1e-5)
    assert results.metrics["reward_margin"] != 0


def test_a_base_model_is_its_own_reference_and_other_data_is_refused():
    from modelops.data.dataset import Dataset
    from modelops.evaluate import Evaluator

    base, _, tokenizer = _models()
    results = Evaluator().evaluate((base, tokenizer), _dataset())
    assert results.metrics["reward_margin"] == 0.0 and results.metrics["reward_accuracy"] == 0.0
    chat = Dataset.from_records([{"prompt": "a", "completion": "b"}], split="test")
    with pytest.raises(EvaluationError, match=r"'reward_accuracy': preference metrics score preference data"):
        Evaluator(metrics=["reward_accuracy"]).evaluate((base, tokenizer), chat)
    with pytest.raises(EvaluationError, match=r"'perplexity': preference metrics score preference data"):
        Evaluator(metrics=["perplexity"]).evaluate((base, tokenizer), _dataset())
