"""The loop trains in train mode: `from_pretrained` returns a model in eval mode, where dropout does nothing."""

from __future__ import annotations

from modelops.models.spec import ModelSpec
from modelops.train.config import TrainConfig


def test_every_dropout_of_a_full_fine_tune_is_active_during_training(tmp_path):
    import torch

    from modelops.data.dataset import Dataset
    from modelops.train.loop import train

    rows = [{"text": f"{word} review number {i}", "label": word} for i in range(4) for word in ("bad", "good")]
    dataset = Dataset.from_records(rows, format="classification", labels=["bad", "good"])
    spec = ModelSpec(name_or_path="minilm", task="seq_cls", max_length=32)  # BERT: dropout in every layer
    config = TrainConfig(max_steps=1, batch_size=8, resume=None, cache_dir=str(tmp_path / "cache"))
    modes: list[bool] = []

    def record(module, args):
        if isinstance(module, torch.nn.Dropout):
            modes.append(module.training)

    # A global forward pre-hook (public torch API) sees each dropout module as the loop runs it.
    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        train(spec, dataset, config, tmp_path / "run")
    finally:
        handle.remove()
    assert modes and all(modes)
