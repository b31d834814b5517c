"""The default recipe end to end, on tiny settings: the run directory, and a model that beats the base."""

from __future__ import annotations

import json

import pytest

from modelops.config.build import compose
from modelops.run import run
from tests.conftest import TINY


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose(["+recipe=lora_small", *TINY])
    results = run(cfg, run_dir)
    return run_dir, results


def test_fine_tuned_model_beats_base(finished_run):
    _, results = finished_run
    base, tuned = results["base"]["metrics"], results["fine_tuned"]["metrics"]
    assert tuned["accuracy"] >= 0.85
    assert tuned["accuracy"] >= base["accuracy"] + 0.2
    assert tuned["f1"] > base["f1"]


def test_loss_falls(finished_run):
    run_dir, _ = finished_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"] * 0.5
    assert all(r["tokens_per_s"] > 0 for r in rows)


def test_run_directory_layout(finished_run):
    run_dir, results = finished_run
    job = json.loads((run_dir / "job.json").read_text())
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert job["started_at"] and job["finished_at"]
    eval_doc = json.loads((run_dir / "eval.json").read_text())
    assert eval_doc["fine_tuned"]["metrics"] == results["fine_tuned"]["metrics"]
    report = json.loads((run_dir / "data" / "sanitize_report.json").read_text())
    train_steps = {s["step"]: s for s in report["splits"]["train"]["steps"]}
    assert train_steps["exact_dedup"]["reasons"].get("duplicate", 0) > 0  # the demo data has duplicates
    assert train_steps["drop_empty"]["reasons"].get("empty", 0) > 0
    assert train_steps["normalize"]["modified"] > 0
    rejected = [json.loads(line) for line in (run_dir / "data" / "rejected.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rejected} == {"drop_empty", "exact_dedup"}
    lineage = json.loads((run_dir / "data" / "lineage.json").read_text())
    assert lineage["sanitized"]["train"]["rows"] == report["splits"]["train"]["rows_out"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "modelops.json", "README.md"):
        assert (run_dir / "model" / name).exists(), name
    assert (run_dir / "predictions.jsonl").exists()


def test_adapter_loads_with_plain_peft_and_predicts_the_same(finished_run):
    import torch
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    from modelops.data.demo_sentiment import sentiment
    from modelops.evaluate import Evaluator

    run_dir, _ = finished_run
    model = AutoPeftModelForSequenceClassification.from_pretrained(run_dir / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    texts = [p["text"] for p in predictions[:32]]
    with torch.inference_mode():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    labels = json.loads((run_dir / "model" / "modelops.json").read_text())["labels"]
    plain = [labels[i] for i in logits.argmax(-1).tolist()]
    assert plain == [p["prediction"] for p in predictions[:32]]
    # The Evaluator accepts the run directory itself as well.
    dataset = sentiment(n_train=0, n_validation=0, n_test=64, seed=7)
    again = Evaluator().evaluate(model=run_dir, dataset=dataset)
    assert again.accuracy >= 0.85


def test_stage_subset_sanitize_only(tmp_path):
    cfg = compose(["+recipe=lora_small", *TINY, "stages=[sanitize]"])
    results = run(cfg, tmp_path)
    assert results == {}
    assert (tmp_path / "data" / "sanitize_report.json").exists()
    assert not (tmp_path / "model").exists()
    assert json.loads((tmp_path / "job.json").read_text())["status"] == "succeeded"


def test_base_to_tuned_deltas_carry_paired_intervals(finished_run):
    run_dir, results = finished_run
    deltas = json.loads((run_dir / "eval.json").read_text())["deltas"]
    accuracy = deltas["accuracy"]
    assert accuracy["delta"] == pytest.approx(
        results["fine_tuned"]["metrics"]["accuracy"] - results["base"]["metrics"]["accuracy"]
    )
    assert accuracy["low"] <= accuracy["delta"] <= accuracy["high"]
    assert not accuracy["includes_zero"] and accuracy["mcnemar_p"] < 0.05  # +0.2 or more on the test split
