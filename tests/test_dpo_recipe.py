"""The dpo_tiny recipe: SFT on the chosen answers, then DPO from that model; held-out reward accuracy rises."""

from __future__ import annotations

import json

import pytest

from modelops.config.build import compose
from modelops.run import run


@pytest.mark.slow
def test_dpo_tiny_sft_then_dpo_rewards_the_chosen_answers_on_held_out_pairs(tmp_path):
    sft = run(compose(["+recipe=dpo_tiny", "trainer.objective=sft"]), tmp_path / "sft")
    start = tmp_path / "sft" / "model"
    dpo = run(compose(["+recipe=dpo_tiny", f"model.name_or_path={start}"]), tmp_path / "dpo")
    base, tuned = dpo["base"]["metrics"], dpo["fine_tuned"]["metrics"]
    assert dpo["base"]["split"] == "test" and dpo["base"]["num_examples"] == 120  # pairs training never saw
    assert base["reward_accuracy"] == 0.0 and base["reward_margin"] == 0.0  # the start model is its own reference
    assert tuned["reward_accuracy"] >= 0.7 and tuned["reward_margin"] > 0
    assert tuned["preference_accuracy"] > sft["fine_tuned"]["metrics"]["preference_accuracy"]
    info = json.loads((tmp_path / "dpo" / "model" / "modelops.json").read_text())
    assert info["base_model"] == str(start) and info["objective"] == "dpo"
    rows = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["rewards/accuracies"] > 0.6 and rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
