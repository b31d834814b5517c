"""The GPU paths: each test needs a CUDA GPU and is skipped without one (none has run on real hardware yet)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from modelops.models.spec import ModelSpec
from modelops.train.config import TrainConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

LORA = {"task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}


def _train(tmp_path, spec=None, **options):
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo
    from modelops.train.loop import train

    spec = spec or ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=128)
    data = Dataset({"train": instruction_demo(n=200, seed=1)["train"].select(range(64))}, format="instruction")
    options = {"learning_rate": 2e-3, "warmup_ratio": 0.0, "log_every": 1, "resume": None, "batch_size": 8,
               "cache_dir": str(tmp_path / "cache"), "preview_examples": 0, "checkpoint_every": None,
               "max_steps": 8, **options}  # fmt: skip
    result = train(spec, data, TrainConfig(**options), tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    return result, [row["loss"] for row in map(json.loads, lines) if "loss" in row]


def test_precision_auto_is_bf16_on_a_gpu_that_supports_it(tmp_path, capsys):
    _train(tmp_path, max_steps=1)
    expected = "precision: bf16 (GPU supports it)" if torch.cuda.is_bf16_supported() else "precision: fp32"
    assert capsys.readouterr().out.count(expected) == 1


def test_adamw_is_fused_on_cuda():
    from modelops.train.loop import _setup_optimizer

    model = torch.nn.Linear(8, 8).cuda()
    optimizer, _ = _setup_optimizer(model, TrainConfig(), total_steps=10, device=torch.device("cuda"))
    assert optimizer.defaults["fused"] is True


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_nf4_base_trains(tmp_path):
    from peft import LoraConfig

    spec = ModelSpec("tiny-llama", "causal_lm", max_length=128, peft=LoraConfig(**LORA), quantization="nf4",
                     gradient_checkpointing=True)  # fmt: skip
    result, losses = _train(tmp_path, spec, learning_rate=1e-2)
    assert result.steps == 8 and losses[-1] < losses[0]


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="needs liger-kernel")
def test_liger_kernels_train_like_transformers_own(tmp_path):
    _, plain = _train(tmp_path / "plain", mixed_precision="no")
    _, liger = _train(tmp_path / "liger", mixed_precision="no", liger=True)
    assert liger[-1] < liger[0]
    torch.testing.assert_close(torch.tensor(liger), torch.tensor(plain), atol=1e-3, rtol=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="needs flash-attn")
def test_flash_attention_packing_is_flat_and_equals_separate_runs(tmp_path):
    from transformers import AutoModelForCausalLM

    from modelops.models.tiny import byte_tokenizer, tiny_model_path
    from modelops.tasks.packing import causal_lm_collator, packed_layout

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path("tiny-llama"), dtype=torch.bfloat16,
                                                 attn_implementation="flash_attention_2").cuda().eval()  # fmt: skip
    assert packed_layout(model) == "flat"
    a, b = list(range(5, 25)), list(range(30, 41))
    rows = [{"input_ids": a + b, "labels": a + b, "position_ids": list(range(20)) + list(range(11))}]
    batch = causal_lm_collator(byte_tokenizer().pad_token_id, packed=True, layout="flat")(rows)
    with torch.no_grad():
        packed = model(**{k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}).logits[0]
        alone = model(input_ids=torch.tensor([b], device="cuda")).logits[0]
    torch.testing.assert_close(packed[20:], alone, atol=2e-2, rtol=2e-2)


@pytest.mark.slow
def test_bench_gpu_full_shapes_run(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_gpu.py"), "--steps", "5"],
                          capture_output=True, text=True, timeout=1800, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("modelops / TRL tokens/s") == 2


@pytest.mark.skipif(not torch.cuda.is_bf16_supported(), reason="needs a GPU with bf16")
def test_bf16_then_fp32_trainings_in_one_process(tmp_path, capsys):
    first, _ = _train(tmp_path / "bf16", mixed_precision="bf16", max_steps=2)
    second, _ = _train(tmp_path / "fp32", mixed_precision="no", max_steps=2)
    out = capsys.readouterr().out
    assert first.steps == second.steps == 2
    assert "precision: bf16" in out and "precision: fp32" in out


def test_hub_kernels_stay_off_on_a_gpu():
    from modelops.models.loading import load_model

    # without the kernels package transformers' default would raise "Kernels are not available"
    model = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm"))
    assert model.use_kernels is False


def test_chunked_loss_and_gradients_equal_full_logits_on_a_gpu():
    from modelops.models import loss as L
    from modelops.models.labels import IGNORE_INDEX
    from modelops.models.loading import load_model

    model = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm")).cuda()
    ids = torch.randint(4, 200, (2, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    labels = ids.clone()
    labels[:, :10] = IGNORE_INDEX
    grads = []
    for compute in (L.full_logits_loss_sum, L.loss_sum):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            value = compute(model, {"input_ids": ids}, labels)
        value.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        model.zero_grad(set_to_none=True)
    for plain, chunked in zip(*grads, strict=True):
        torch.testing.assert_close(chunked, plain, atol=2e-2, rtol=2e-2)


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="needs liger-kernel")
def test_liger_fused_linear_cross_entropy_equals_the_chunked_loss():
    from modelops.models import loss as L
    from modelops.models.labels import IGNORE_INDEX
    from modelops.models.loading import load_model

    model = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm")).cuda()
    ids = torch.randint(4, 200, (2, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    labels = ids.clone()
    labels[:, :10] = IGNORE_INDEX
    chunked = L.loss_sum(model, {"input_ids": ids}, labels)
    fused = L.loss_sum(model, {"input_ids": ids}, labels, liger=True)
    torch.testing.assert_close(fused, chunked, atol=1e-3, rtol=1e-4)
