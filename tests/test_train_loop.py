"""The training loop's behaviour on tiny causal LMs: gradient accumulation, LoRA, NaN, early stopping, keep-best."""

from __future__ import annotations

import json

import pytest

from modelops.errors import ConfigError, JobError
from modelops.models.spec import ModelSpec
from modelops.train.config import TrainConfig


def _instruction(n_train: int, n_validation: int = 0):
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo

    rows = instruction_demo(n=200, seed=1)["train"]
    splits = {"train": rows.select(range(n_train))}
    if n_validation:
        splits["validation"] = rows.select(range(n_train, n_train + n_validation))
    return Dataset(splits, format="instruction")


def _train(tmp_path, dataset, spec=None, **options):
    from modelops.train.loop import train

    spec = spec or ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=128)
    options = {"learning_rate": 1e-3, "warmup_ratio": 0.0, "log_every": 1, "resume": None,
               "cache_dir": str(tmp_path / "cache"), "preview_examples": 0, **options}  # fmt: skip
    return train(spec, dataset, TrainConfig(**options), tmp_path / "run")


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _max_diff(a, b) -> float:
    assert set(a) == set(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _tiny_weights():
    from modelops.models.tiny import tiny_model_path

    return tiny_model_path("tiny-llama") / "model.safetensors"


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _reference_step(dataset, lr: float):
    """One SGD step written out by hand: HF's own mean loss over every target token of the 8 rows at once."""
    import torch
    from transformers import AutoModelForCausalLM

    from modelops.models.loading import load_tokenizer
    from modelops.models.tiny import tiny_model_path
    from modelops.tasks.sft import tokenize_causal_lm

    tokenizer = load_tokenizer("tiny-llama")
    rows = tokenize_causal_lm(dataset["train"], "instruction", tokenizer, 128)
    width = max(len(r) for r in rows["input_ids"])
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(zip(rows["input_ids"], rows["labels"], strict=True)):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path("tiny-llama"))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    optimizer.step()
    return {k: v.detach() for k, v in model.named_parameters()}


def test_gradient_accumulation_1x8_equals_8x1_and_a_hand_written_step(tmp_path):
    import functools

    import torch

    dataset = _instruction(8)  # rows of different lengths and different answer lengths
    # SGD: the update is the gradient itself (Adam's first step is sign-like and hides gradient errors).
    common = {"max_steps": 1, "max_grad_norm": None, "batching": "pad", "scheduler": "constant",
              "optimizer": functools.partial(torch.optim.SGD), "learning_rate": 0.5, "weight_decay": 0.0}  # fmt: skip
    big = _train(tmp_path / "a", dataset, batch_size=8, gradient_accumulation_steps=1, **common)
    small = _train(tmp_path / "b", dataset, batch_size=1, gradient_accumulation_steps=8, **common)
    a, b = _weights(big.model_dir / "model.safetensors"), _weights(small.model_dir / "model.safetensors")
    before = _weights(_tiny_weights())
    assert _max_diff(a, before) > 1e-3  # the step did move the weights
    assert _max_diff(a, b) < 1e-6
    reference = _reference_step(dataset, lr=0.5)
    assert _max_diff(a, {k: reference[k] for k in a}) < 1e-6


def test_lora_trains_adapters_and_leaves_frozen_weights_alone(tmp_path):
    from peft import LoraConfig

    from modelops.models.tiny import tiny_model_path

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=targets)
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=128, peft=lora)
    result = _train(tmp_path, _instruction(64), spec, epochs=3, batch_size=8, learning_rate=1e-2, merge_adapter=True)
    losses = [r["loss"] for r in _metrics(tmp_path / "run")]
    assert sum(losses[-8:]) / 8 < losses[0] * 0.85  # the last epoch against the untrained model
    base = _weights(tiny_model_path("tiny-llama") / "model.safetensors")
    merged = _weights(result.model_dir / "merged" / "model.safetensors")
    changed = {k for k in base if float((base[k] - merged[k]).abs().max()) > 0}
    assert changed == {k for k in base if k.endswith(tuple(f"{t}.weight" for t in targets))}
    assert len(changed) == len(targets) * 4  # every targeted projection of the 4 layers moved; nothing else


def test_packing_trains_and_counts_only_real_tokens(tmp_path):
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=256)
    result = _train(tmp_path, _instruction(48), spec, epochs=4, batch_size=2, batching="packing", learning_rate=3e-3)
    rows = _metrics(tmp_path / "run")
    assert rows[-1]["loss"] < rows[0]["loss"] * 0.8
    assert result.tokens_per_second > 0


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(JobError, match=r"loss became (nan|inf).*trainer.learning_rate"):
        _train(tmp_path, _instruction(16), max_steps=6, batch_size=4, learning_rate=1e12, max_grad_norm=None)


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    # eval_mode=max on the loss: a falling loss is no improvement, so the run must stop early.
    result = _train(tmp_path, _instruction(32, 16), max_steps=20, batch_size=4, eval_every=1,
                    early_stopping_patience=2, eval_mode="max")  # fmt: skip
    evals = [r for r in _metrics(tmp_path / "run") if "eval_loss" in r]
    best, bad, expected = None, 0, None
    for row in evals:
        if best is None or row["eval_loss"] > best:
            best, bad = row["eval_loss"], 0
        else:
            bad += 1
            if bad == 2:
                expected = row["step"]
                break
    assert result.stopped_early and result.steps == expected < 20
    assert evals[-1]["step"] == expected


def test_keep_best_saves_the_best_evaluation_not_the_last_step(tmp_path):
    result = _train(tmp_path, _instruction(32, 16), max_steps=8, batch_size=4, eval_every=2, checkpoint_every=2,
                    keep_checkpoints=10, keep_best=True, eval_mode="max")  # fmt: skip
    evals = [r for r in _metrics(tmp_path / "run") if "eval_loss" in r]
    best_step = max(evals, key=lambda r: r["eval_loss"])["step"]
    assert result.best_step == best_step
    saved = _weights(result.model_dir / "model.safetensors")
    checkpoints = tmp_path / "run" / "checkpoints"
    assert _max_diff(saved, _weights(checkpoints / f"step-{best_step}" / "model.safetensors")) == 0
    if best_step != 8:
        assert _max_diff(saved, _weights(checkpoints / "step-8" / "model.safetensors")) > 0
    assert json.loads((result.model_dir / "modelops.json").read_text())["best_step"] == best_step


def test_tokenised_data_is_cached_between_runs(tmp_path):
    dataset = _instruction(16)
    _train(tmp_path / "a", dataset, max_steps=1, batch_size=4, cache_dir=str(tmp_path / "cache"))
    _train(tmp_path / "b", dataset, max_steps=1, batch_size=4, cache_dir=str(tmp_path / "cache"))
    events = [json.loads((tmp_path / d / "run" / "job.json").read_text())["events"] for d in "ab"]
    hits = [next(e["cache_hits"] for e in ev if e["message"] == "data ready") for ev in events]
    assert hits == [{"train": False}, {"train": True}]


def test_bf16_on_a_cpu_falls_back_to_fp32_with_a_warning(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.warns(UserWarning, match="needs a GPU"):
        result = _train(tmp_path, _instruction(8), max_steps=1, batch_size=4, mixed_precision="bf16")
    assert all(t.dtype == torch.float32 for t in _weights(result.model_dir / "model.safetensors").values())


def test_a_classifier_on_instruction_data_fails_before_loading(tmp_path):
    spec = ModelSpec(name_or_path="minilm", task="seq_cls")
    with pytest.raises(ConfigError, match=r"model\.task=seq_cls needs classification data"):
        _train(tmp_path, _instruction(8), spec, max_steps=1)
    with pytest.raises(ConfigError, match=r"needs trainer\.eval_every"):
        TrainConfig(keep_best=True)


def test_tensorboard_tracker_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    _train(tmp_path, _instruction(8), max_steps=2, batch_size=4, log_with="tensorboard")
    assert list((tmp_path / "run").rglob("events.out.tfevents*"))
