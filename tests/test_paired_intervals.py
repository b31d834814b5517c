"""Paired intervals of loss/perplexity/bits per byte and preference accuracy, from real evaluations of a tiny
causal LM: a model trained on the data's pattern is clearly better (interval excludes 0), the same model is not
(interval includes 0), and the saved predictions give `modelops-registry compare` the same intervals."""

from __future__ import annotations

import copy
import json
import random
from types import SimpleNamespace

import pytest
import torch

from modelops.data.dataset import Dataset
from modelops.evaluate import Evaluator
from modelops.evaluate.results import comparison_table
from modelops.registry.views import _render_paired, paired_comparison
from modelops.stats import paired_metrics

WORDS = ["the", "red", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]


def _texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) for _ in range(count)]


@pytest.fixture(scope="module")
def models():
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    tokenizer = load_tokenizer("tiny-llama")
    base = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=64), seed=0).eval()
    tuned = copy.deepcopy(base).train()
    batch = tokenizer(_texts(0, 32), return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(12):  # a few steps on the ten-word language: far better than random weights on it
        optimizer.zero_grad()
        tuned(**batch, labels=labels).loss.backward()
        optimizer.step()
    return base, tuned.eval(), tokenizer


def test_loss_perplexity_and_bpb_intervals_of_a_clearly_better_model(models, tmp_path):
    base_model, tuned_model, tokenizer = models
    data = Dataset.from_records([{"text": t} for t in _texts(1, 60)], split="test", format="text")
    evaluator = Evaluator(resamples=2000)
    base = evaluator.evaluate((base_model, tokenizer), data)
    tuned = evaluator.evaluate((tuned_model, tokenizer), data)
    deltas = evaluator.compare(base, tuned)
    assert set(deltas) == {"loss", "perplexity", "bits_per_byte"}
    for name in deltas:  # the interval is about the reported statistic: the difference of the corpus values
        assert deltas[name]["delta"] == pytest.approx(tuned.metrics[name] - base.metrics[name], rel=1e-9)
        assert deltas[name]["high"] < 0 and not deltas[name]["includes_zero"], name
    assert deltas["perplexity"]["ratio_high"] < 1
    # Each prediction row carries what the intervals resample, and names its row.
    assert len(base.predictions) == 60 and {"row", "nll", "tokens", "bytes"} <= set(base.predictions[0])
    assert sum(r["tokens"] for r in base.predictions) == base.metrics.get("tokens", sum(
        r["tokens"] for r in tuned.predictions))  # fmt: skip
    same = evaluator.compare(base, evaluator.evaluate((base_model, tokenizer), data))
    assert all(d["includes_zero"] for d in same.values())
    table = comparison_table({"base": base, "fine_tuned": tuned}, deltas)
    loss_line = next(line for line in table.splitlines() if line.lstrip().startswith("loss"))
    assert "[-" in loss_line and not loss_line.rstrip().endswith("~")

    # Two saved evaluations of the same rows: what `modelops-registry compare` shows for two versions.
    for name, result in (("a", base), ("b", tuned)):
        result.save(tmp_path / name)
    runs = [SimpleNamespace(data=SimpleNamespace(tags={"run_dir": str(tmp_path / n)})) for n in "ab"]
    paired = paired_comparison(*runs)
    assert paired["loss"] == paired_metrics(base.predictions, tuned.predictions)["loss"]
    text = _render_paired(paired)
    assert "per example, loss (n=60): delta -" in text and "McNemar" not in text.split("loss")[1].splitlines()[0]
    other = Dataset.from_records([{"text": t} for t in _texts(2, 60)], split="test", format="text")
    evaluator.evaluate((tuned_model, tokenizer), other).save(tmp_path / "b")
    assert "not evaluated on the same rows" in paired_comparison(*runs)["note"]


def test_answer_loss_rows_sit_beside_the_generations(models):
    base_model, tuned_model, tokenizer = models
    rows = [{"prompt": f"Say {w}: ", "completion": w} for w in WORDS * 2]
    data = Dataset.from_records(rows, split="test", format="completion")
    evaluator = Evaluator(metrics=["exact_match", "loss"], max_new_tokens=2, resamples=500)
    base = evaluator.evaluate((base_model, tokenizer), data)
    tuned = evaluator.evaluate((tuned_model, tokenizer), data)
    assert {"prediction", "exact_match", "nll", "tokens", "bytes"} <= set(base.predictions[0])
    deltas = evaluator.compare(base, tuned)
    assert set(deltas) == {"exact_match", "loss"}
    assert deltas["loss"]["delta"] == pytest.approx(tuned.metrics["loss"] - base.metrics["loss"], rel=1e-9)


def test_preference_accuracy_rows_and_their_interval(models, tmp_path):
    base_model, tuned_model, tokenizer = models
    rng = random.Random(3)
    pairs = [{"prompt": "say:", "chosen": " ".join(rng.choices(WORDS, k=4)), "rejected": "zebra quantum xylophone"}
             for _ in range(40)]  # fmt: skip
    data = Dataset.from_records(pairs, split="test", format="preference")
    evaluator = Evaluator(metrics=["preference_accuracy"], resamples=1000)
    base = evaluator.evaluate((base_model, tokenizer), data)
    tuned = evaluator.evaluate((tuned_model, tokenizer), data)
    for result in (base, tuned):  # the rows agree with the metric
        prefers = [row["prefers_chosen"] for row in result.predictions]
        assert sum(prefers) / len(prefers) == pytest.approx(result.metrics["preference_accuracy"])
    deltas = evaluator.compare(base, tuned)
    acc = deltas["preference_accuracy"]
    assert acc["delta"] == pytest.approx(tuned.preference_accuracy - base.preference_accuracy)
    assert 0 <= acc["mcnemar_p"] <= 1
    # The tuned model knows the ten words and not the rejected ones: clearly better on 40 pairs.
    assert tuned.preference_accuracy == 1.0 and not acc["includes_zero"], (base.preference_accuracy, acc)
    same = evaluator.compare(base, base)["preference_accuracy"]
    assert same["includes_zero"] and same["mcnemar_p"] == 1.0
    base.save(tmp_path)
    saved = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [row["prefers_chosen"] for row in saved] == [row["prefers_chosen"] for row in base.predictions]
