"""Every training recipe runs end to end on CPU with tiny settings, through the real config and pipeline."""

from __future__ import annotations

import json

import pytest

from modelops.config.build import compose
from modelops.run import run
from tests.conftest import TINY

#: Causal-LM recipes shrunk to a minute on a 2-core CPU.
CAUSAL_TINY = ["trainer.log_every=2", "trainer.eval_every=10", "evaluator.batch_size=16"]


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _answer_loss(model_ref, cfg) -> float:
    """Mean loss over the answer tokens of the test split (HF's own loss, one row at a time)."""
    import torch
    from transformers import AutoModelForCausalLM

    from modelops.config.build import instantiate
    from modelops.models.resolve import resolve_name_or_path
    from modelops.tasks.sft import tokenize_causal_lm

    dataset = instantiate(cfg.dataset, "dataset")
    model = AutoModelForCausalLM.from_pretrained(resolve_name_or_path(str(model_ref))).eval()
    from modelops.models.loading import load_tokenizer

    rows = tokenize_causal_lm(dataset["test"], dataset.format, load_tokenizer("tiny-llama"), 256)
    total = count = 0.0
    with torch.inference_mode():
        for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True):
            n = sum(1 for y in labels[1:] if y != -100)
            total += float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss) * n
            count += n
    return total / count


def test_full_small_fine_tunes_every_weight_and_keeps_the_labels(tmp_path):
    from transformers import AutoModelForSequenceClassification

    cfg = compose(["+recipe=full_small", *TINY, "trainer.learning_rate=1e-4", "trainer.epochs=2"])
    results = run(cfg, tmp_path)
    assert results["fine_tuned"]["metrics"]["accuracy"] >= results["base"]["metrics"]["accuracy"] + 0.2
    losses = _losses(tmp_path)
    assert losses[-1] < losses[0] * 0.5
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    labels = json.loads((tmp_path / "model" / "modelops.json").read_text())["labels"]
    assert [model.config.id2label[i] for i in range(len(labels))] == labels
    assert not (tmp_path / "model" / "adapter_config.json").exists()


@pytest.mark.slow
def test_sft_tiny_loss_falls_and_test_loss_improves(tmp_path):
    cfg = compose(["+recipe=sft_tiny", *CAUSAL_TINY])
    results = run(cfg, tmp_path)
    losses = _losses(tmp_path)
    assert sum(losses[-3:]) / 3 < losses[0] * 0.6  # the first step's loss is the untrained model's
    base, tuned = results["base"]["metrics"], results["fine_tuned"]["metrics"]
    assert tuned["loss"] < base["loss"]  # every token of the test rows, scored by the Evaluator
    # The answers of the test split, which is what SFT trains: scored here with plain transformers.
    answer_loss = _answer_loss(tmp_path / "model", cfg), _answer_loss("tiny-llama", cfg)
    assert answer_loss[0] < answer_loss[1] * 0.6
    info = json.loads((tmp_path / "model" / "modelops.json").read_text())
    assert info["format"] == "instruction" and info["best_step"] is not None
    assert (tmp_path / "data" / "train_preview.txt").read_text().strip()


@pytest.mark.slow
def test_lora_chat_runs_on_cpu_with_a_tiny_model(tmp_path):
    cfg = compose(["+recipe=lora_chat", "model.name_or_path=tiny-llama", "model.max_length=256", *CAUSAL_TINY,
                   "dataset.n=120", "trainer.learning_rate=5e-3", "trainer.epochs=1"])  # fmt: skip
    with pytest.warns(UserWarning, match="bf16 needs a GPU"):
        results = run(cfg, tmp_path)
    losses = _losses(tmp_path)
    assert losses[-1] < losses[0]
    assert (tmp_path / "model" / "adapter_model.safetensors").exists()
    assert results["fine_tuned"]["metrics"]["loss"] < results["base"]["metrics"]["loss"]
