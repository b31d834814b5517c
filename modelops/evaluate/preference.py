"""Metrics on preference pairs (prompt, chosen, rejected): which side a model prefers, and by how much.

Each pair is tokenised and scored as training scores it (`modelops.tasks.preference`: the summed
log-probability of each response given the prompt, both sides in one forward pass), then:

- ``preference_accuracy``: the share of pairs whose chosen response the model finds more likely than the
  rejected one, by the per-token mean log-probability (length-normalised, so a short answer does not win
  by being short); needs no reference.
- ``reward_accuracy``: the share of pairs whose DPO implicit reward r(y) = log π(y) − log π_ref(y) (summed
  log-probs) is higher for the chosen response; ties (a model equal to its reference) count as wrong, as TRL counts.
- ``reward_margin``: the mean of r(chosen) − r(rejected), in nats (β = 1: multiply by a training β to
  compare with the `rewards/margins` logged in training).

The reference of the reward metrics: `Evaluator(reference=...)` when given; else, for a PEFT adapter, the
same model with the adapter disabled; else the ``base_model`` a modelops model directory records; else the
model itself (a base model is its own reference, so its rewards are all 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelops.evaluate.batching import sorted_batches
from modelops.tasks.preference import PairCollator, response_logps, tokenize_pairs

PREFERENCE_METRICS = ("preference_accuracy", "reward_accuracy", "reward_margin")
_NEEDS_REFERENCE = ("reward_accuracy", "reward_margin")


def pair_logps(model, tokenizer, table, batch_size: int, max_length: int):
    """Summed response log-probs and token counts, as float64 arrays `[4, pairs]`: chosen, rejected, their counts."""
    import numpy as np
    import torch

    tokenized = tokenize_pairs(table, tokenizer, max_length)
    collate = PairCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    device = next(model.parameters()).device
    out = np.zeros((4, len(tokenized)), dtype=np.float64)
    for index in sorted_batches(tokenized["length"], batch_size):
        batch = collate(tokenized.__getitems__(index))
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        scores = response_logps(model, batch)
        values = (scores.chosen, scores.rejected, scores.chosen_tokens, scores.rejected_tokens)
        out[:, index] = torch.stack([v.double() for v in values]).cpu().numpy()
    return out


def preference_values(names: list[str], policy, reference) -> dict[str, float]:
    """The metrics `names` from `pair_logps` arrays of the model and of its reference (None: not needed)."""
    chosen, rejected = policy[0], policy[1]
    values = {}
    if "preference_accuracy" in names:
        values["preference_accuracy"] = float(prefers_chosen(policy).mean())
    if reference is not None:
        margin = (chosen - reference[0]) - (rejected - reference[1])
        values["reward_accuracy"] = float((margin > 0).mean())
        values["reward_margin"] = float(margin.mean())
    return {name: values[name] for name in names}


def prefers_chosen(policy):
    """Per pair, whether the chosen side has the higher per-token mean log-probability (a bool array)."""
    chosen, rejected, chosen_n, rejected_n = policy
    return chosen / chosen_n.clip(1) > rejected / rejected_n.clip(1)


def needs_reference(names: list[str]) -> bool:
    return any(name in _NEEDS_REFERENCE for name in names)


def recorded_base(name: str) -> str | None:
    """The base model a modelops model directory was trained from (its ``modelops.json``), if `name` is one."""
    info = Path(name) / "modelops.json"
    if not info.is_file():
        return None
    return json.loads(info.read_text()).get("base_model")


def prediction_rows(table, policy, reference) -> list[dict[str, Any]]:
    """One row per pair: the prompt, the summed log-probs and token counts of each side (and the reference's
    log-probs), and ``prefers_chosen`` (the pair's preference_accuracy outcome), for paired intervals."""
    rows = []
    prefers = prefers_chosen(policy)
    for i, row in enumerate(table):
        out = {
            "prompt": row["prompt"], "logp_chosen": float(policy[0, i]), "logp_rejected": float(policy[1, i]),
            "chosen_tokens": int(policy[2, i]), "rejected_tokens": int(policy[3, i]),
            "prefers_chosen": bool(prefers[i]),
        }  # fmt: skip
        if reference is not None:
            out |= {"ref_logp_chosen": float(reference[0, i]), "ref_logp_rejected": float(reference[1, i])}
        rows.append(out)
    return rows
