"""Memory and speed levers: gradient checkpointing, compile, the precision choice, clear errors for GPU-only ones."""

from __future__ import annotations

import json

import pytest
import torch

from modelops.errors import ConfigError
from modelops.models.spec import ModelSpec
from modelops.train.config import TrainConfig

LORA = {"task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}


def _instruction(n_train: int):
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo

    return Dataset({"train": instruction_demo(n=200, seed=1)["train"].select(range(n_train))}, format="instruction")


def _train(tmp_path, spec=None, **options):
    from modelops.train.loop import train

    spec = spec or ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=128)
    options = {"learning_rate": 2e-3, "warmup_ratio": 0.0, "log_every": 1, "resume": None, "batch_size": 8,
               "cache_dir": str(tmp_path / "cache"), "preview_examples": 0, "checkpoint_every": None,
               **options}  # fmt: skip
    return train(spec, _instruction(32), TrainConfig(**options), tmp_path / "run")


def _losses(run_dir) -> list[float]:
    return [
        row["loss"] for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in row
    ]


def _loss_and_grads(checkpointing: bool):
    """One LoRA forward/backward on a fixed batch, in train mode (checkpointing only acts there)."""
    from peft import LoraConfig

    from modelops.models.loading import load_model

    spec = ModelSpec("tiny-llama", "causal_lm", peft=LoraConfig(**LORA), gradient_checkpointing=checkpointing)
    model = load_model(spec, seed=0).train()
    ids = torch.arange(3, 43).reshape(2, 20)
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_with_lora_gives_the_same_loss_and_gradients():
    loss, grads = _loss_and_grads(checkpointing=False)
    loss_ckpt, grads_ckpt = _loss_and_grads(checkpointing=True)
    torch.testing.assert_close(loss_ckpt, loss)
    assert grads_ckpt.keys() == grads.keys() and len(grads) > 0
    for name, grad in grads.items():
        if "lora_B" in name:  # B starts at zero, so A's first gradient is zero; B's must not be
            assert grad.abs().sum() > 0, name  # a gradient reached every adapter through the checkpointed layers
        torch.testing.assert_close(grads_ckpt[name], grad, atol=1e-6, rtol=1e-5)


def test_gradient_checkpointing_with_lora_trains(tmp_path):
    from peft import LoraConfig

    spec = ModelSpec("tiny-llama", "causal_lm", max_length=128, peft=LoraConfig(**LORA), gradient_checkpointing=True)
    result = _train(tmp_path, spec, max_steps=8, learning_rate=1e-2)
    losses = _losses(tmp_path / "run")
    assert result.steps == 8 and losses[-1] < losses[0]


def test_precision_auto_is_fp32_on_a_cpu_and_says_so(tmp_path, capsys):
    assert TrainConfig().mixed_precision == "auto"
    _train(tmp_path, max_steps=1)
    out = capsys.readouterr().out
    assert out.count("precision: fp32 (CPU)") == 1
    events = json.loads((tmp_path / "run" / "job.json").read_text())["events"]
    assert any("precision: fp32 (CPU)" in json.dumps(e) for e in events)


def test_explicit_precisions_still_validate():
    for value in ("no", "fp16", "bf16", "auto"):
        assert TrainConfig(mixed_precision=value).mixed_precision == value
    with pytest.raises(ConfigError, match=r"trainer\.mixed_precision"):
        TrainConfig(mixed_precision="fp8")


def test_packing_says_which_layout_it_chose(tmp_path, capsys):
    result = _train(tmp_path, max_steps=3, batching="packing")
    assert result.steps == 3
    assert capsys.readouterr().out.count("packing: position_ids layout") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU error only")
def test_liger_without_a_gpu_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer\.liger"):
        _train(tmp_path, max_steps=1, liger=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU error only")
def test_quantization_without_a_gpu_is_a_config_error_naming_the_key():
    from peft import LoraConfig

    from modelops.models.loading import load_model

    with pytest.raises(ConfigError, match=r"model\.quantization=nf4: .*CUDA"):
        load_model(ModelSpec("tiny-llama", "causal_lm", peft=LoraConfig(**LORA), quantization="nf4"))


def test_quantization_values_and_its_need_for_an_adapter_are_checked():
    from peft import LoraConfig

    with pytest.raises(ConfigError, match=r"model\.quantization: 'int3'"):
        ModelSpec("tiny-llama", "causal_lm", peft=LoraConfig(**LORA), quantization="int3")
    with pytest.raises(ConfigError, match=r"model\.quantization: .*model\.peft"):
        ModelSpec("tiny-llama", "causal_lm", quantization="nf4")


def test_the_cli_validates_the_new_keys(tmp_path):
    """The YAML defaults and the dataclass agree: the composed trainer and hf model carry the new keys."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(Path(__file__).parents[1] / "conf"), version_base=None):
        cfg = compose("config", overrides=["model=hf", "model.name_or_path=x"])
    assert cfg.trainer.compile is False and cfg.trainer.liger is False and cfg.trainer.mixed_precision == "auto"
    assert cfg.model.quantization is None and cfg.model.gradient_checkpointing is False


@pytest.mark.slow
def test_compile_trains_like_eager(tmp_path):
    """torch.compile (inductor on CPU) computes the same losses as eager, step for step."""
    from torch._dynamo.utils import counters

    _train(tmp_path / "eager", max_steps=4)
    counters.clear()
    _train(tmp_path / "compiled", max_steps=4, compile=True)
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did compile the forward
    eager, compiled = _losses(tmp_path / "eager" / "run"), _losses(tmp_path / "compiled" / "run")
    assert compiled[-1] < compiled[0]
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), atol=1e-4, rtol=1e-4)
