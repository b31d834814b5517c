"""Every metrics row goes out through one place: a sink given to `train` sees exactly what metrics.jsonl holds."""

from __future__ import annotations

import json

from modelops.models.spec import ModelSpec
from modelops.train.config import TrainConfig


def test_a_metric_sink_gets_every_training_and_evaluation_row_of_metrics_jsonl(tmp_path):
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo
    from modelops.train.loop import train

    rows = instruction_demo(n=40, seed=1)["train"]
    dataset = Dataset({"train": rows.select(range(8)), "validation": rows.select(range(8, 12))}, format="instruction")
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=96)
    config = TrainConfig(max_steps=3, batch_size=4, learning_rate=1e-3, log_every=1, eval_every=2, resume=None,
                         preview_examples=0, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    seen: list[dict] = []
    train(spec, dataset, config, tmp_path / "run", metric_sinks=[seen.append])
    written = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert seen == written
    assert [r["step"] for r in seen if "loss" in r] == [1, 2, 3]
    assert [r["step"] for r in seen if "eval_loss" in r] == [2, 3]  # every 2 steps and at the end
