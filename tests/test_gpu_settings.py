"""No surprises on a GPU, checked on a CPU: hub kernels stay off unless asked, and a second in-process
training gets its own Accelerate settings (the GPU side of both is in tests/test_gpu.py)."""

from __future__ import annotations

import pytest

from modelops.models.spec import ModelSpec
from modelops.train.config import TrainConfig


@pytest.mark.parametrize("asked", [False, True])
def test_hub_kernels_follow_model_use_kernels(asked):
    from modelops.models.loading import load_model

    # transformers 5.25 turns them on when from_pretrained is not told (its own default is True)
    model = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm", use_kernels=asked))
    assert model.use_kernels is asked


def test_hub_kernels_are_off_by_default_in_the_model_config():
    from hydra import compose, initialize_config_dir

    from modelops.config.paths import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["model=hf", "model.name_or_path=x"])
    assert cfg.model.use_kernels is False and ModelSpec().use_kernels is False


def test_a_second_training_in_the_process_gets_its_own_accelerator_settings(tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo
    from modelops.train.loop import train

    # An earlier run in this process left bf16 in Accelerate's process-wide state (CPU autocast allows it);
    # the state other tests of this process left is cleared first, to set that scene.
    AcceleratorState._reset_state()
    assert Accelerator(mixed_precision="bf16", cpu=True).mixed_precision == "bf16"
    data = Dataset({"train": instruction_demo(n=40, seed=1)["train"].select(range(8))}, format="instruction")
    config = TrainConfig(max_steps=1, batch_size=4, mixed_precision="no", resume=None, checkpoint_every=None,
                         preview_examples=0, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    result = train(ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=64), data, config, tmp_path)
    assert result.steps == 1
    assert Accelerator().mixed_precision == "no"  # the state the second training set, not the first one's
