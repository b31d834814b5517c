"""What a checkpoint holds (Accelerate's state, and of a LoRA run only the adapter), and a clear refusal of one
that cannot be restored."""

from __future__ import annotations

import pytest

from modelops.errors import JobError
from modelops.models.spec import ModelSpec
from modelops.train.checkpoint import COMPLETE, complete_checkpoints
from modelops.train.config import TrainConfig


def _train(run_dir, **options):
    from peft import LoraConfig

    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo
    from modelops.train.loop import train

    lora = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=96, peft=lora)
    dataset = Dataset({"train": instruction_demo(n=40, seed=2)["train"].select(range(8))}, format="instruction")
    config = TrainConfig(max_steps=2, batch_size=4, learning_rate=1e-3, log_every=1, preview_examples=0,
                         cache_dir=str(run_dir.parent / "cache"), **options)  # fmt: skip
    return train(spec, dataset, config, run_dir)


def test_a_lora_checkpoint_holds_the_adapter_not_the_frozen_base(tmp_path):
    from safetensors.torch import load_file

    from modelops.models.tiny import tiny_model_path

    _train(tmp_path / "run", checkpoint_every=2)
    (saved,) = complete_checkpoints(tmp_path / "run")
    weights = load_file(str(saved / "model.safetensors"))
    adapter = load_file(str(tmp_path / "run" / "model" / "adapter_model.safetensors"))
    assert len(weights) == len(adapter) > 0 and all("lora_" in name for name in weights)
    base = (tiny_model_path("tiny-llama") / "model.safetensors").stat().st_size
    assert (saved / "model.safetensors").stat().st_size < base / 10
    # The optimizer moments of the adapter and the loop's position came along (Accelerate's files).
    names = {p.name for p in saved.iterdir()}
    assert {"optimizer.bin", "scheduler.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl", COMPLETE} <= names


def test_a_checkpoint_without_accelerate_state_is_refused_with_its_path(tmp_path):
    old = tmp_path / "run" / "checkpoints" / "step-2"
    old.mkdir(parents=True)
    (old / COMPLETE).write_text("2\n")
    (old / "trainer_state.json").write_text("{}")
    with pytest.raises(JobError, match=r"trainer.resume: .*step-2 is not a checkpoint this version can restore"):
        _train(tmp_path / "run")
