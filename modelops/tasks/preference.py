"""Preference tuning: DPO, IPO, SimPO and ORPO on `preference` pairs, as a loss step the loop calls.

A pair is tokenised into `prompt_ids`, `chosen_ids` and `rejected_ids` (`tokenize_pairs`); the
collator puts the chosen and the rejected sequence of every pair into ONE padded batch of 2B rows
(`[prompt+chosen] * B + [prompt+rejected] * B`), so one forward pass scores both sides. Only the
response tokens are scored. The loss of a micro-batch is the SUM of its pair losses; the loop divides
by the pairs of the whole optimizer step, so gradient accumulation is exact, as for SFT.

The reference model (DPO and IPO): under LoRA the policy itself with its adapter disabled (no second
copy); for full fine-tuning a frozen copy of the initial weights, made before training starts. Either
runs in eval mode under `no_grad` (no dropout: the reference of a pair is a fixed number). SimPO and
ORPO need no reference.

The formulas follow TRL (`DPOTrainer` sigmoid/ipo, `CPOTrainer` simpo, `ORPOTrainer`):

- dpo: Δ = (log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r)) over summed response log-probs;
  loss = −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ) (ε = `label_smoothing`, the conservative DPO of TRL's `robust`
  family; ε = 0 is TRL's `sigmoid`).
- ipo: Δ over per-token mean log-probs; loss = (Δ − 1/(2β))².
- simpo: no reference; loss = −(1−ε)·log σ(β(m(c) − m(r)) − γ) − ε·log σ(−(β(m(c) − m(r)) − γ)), m the
  per-token mean log-prob, γ = `simpo_gamma`.
- orpo: no reference; loss = −m(c) − β·log σ(log odds(c) − log odds(r)), odds(y) = p/(1−p) with p = exp m(y);
  the NLL term is the chosen response's per-token mean (per pair, so the loss stays a mean over pairs).

Rewards (logged as TRL does): β·(log π − log π_ref) for dpo and ipo, β·m for simpo and orpo.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from modelops.errors import DataError
from modelops.models import loss as lm_loss
from modelops.models.labels import IGNORE_INDEX
from modelops.models.templates import segments
from modelops.tasks.truncation import Locate, where

#: Objectives that compare against a reference model.
WITH_REFERENCE = ("dpo", "ipo")
#: The metrics every preference step logs (TRL's names).
STEP_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "logps/chosen", "logps/rejected")  # fmt: skip


# -- rendering and tokenising pairs ----------------------------------------------------------------


def _render(prompt: Any, response: Any, tokenizer) -> tuple[str, str]:
    """(prompt text, response text) of one side; the response ends with EOS (nothing after it)."""
    if isinstance(prompt, str):
        parts = segments({"prompt": prompt, "completion": response}, "completion", tokenizer)
    else:
        parts = segments({"messages": list(prompt) + list(response)}, "chat", tokenizer)
    last = max((i for i, (_, trainable) in enumerate(parts) if trainable), default=None)
    if last is None:
        raise DataError("a preference side has no assistant response")
    text = parts[last][0]
    eos = tokenizer.eos_token
    if eos and eos in text:  # what a template puts after the EOS is context, not generated
        text = text[: text.rfind(eos) + len(eos)]
    return "".join(t for t, _ in parts[:last]), text


def pair_texts(row: dict[str, Any], tokenizer) -> tuple[str, str, str]:
    """A preference row as (prompt, chosen, rejected) text, rendered as SFT renders the same turns.

    Raises:
        DataError: the chosen and rejected sides render different prompts.
    """
    prompt, chosen = _render(row["prompt"], row["chosen"], tokenizer)
    prompt_r, rejected = _render(row["prompt"], row["rejected"], tokenizer)
    if prompt != prompt_r:
        raise DataError("the chosen and rejected sides of a pair render different prompts")
    return prompt, chosen, rejected


def fit_pair(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int) -> tuple[list[int], ...]:
    """Make prompt+chosen and prompt+rejected fit `max_length`, keeping both responses as long as possible.

    The prompt is cut from the left first (its end, next to the responses, stays); only when the
    longer response alone leaves no room for one prompt token are the responses cut from the right.

    Returns:
        (prompt, chosen, rejected, prompt_cut, responses_cut): the kept ids and what was cut.
    """
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest <= max_length:
        return prompt, chosen, rejected, False, False
    room = max_length - longest
    if room >= 1:
        return prompt[len(prompt) - room :], chosen, rejected, True, False
    budget = max_length - 1
    return prompt[-1:], chosen[:budget], rejected[:budget], len(prompt) > 1, True


def tokenize_pairs(table, tokenizer, max_length: int, too_long: str = "truncate", locate: Locate | None = None):
    """Tokenise a `preference` split into prompt_ids, chosen_ids, rejected_ids and `length`.

    The prompt gets the tokenizer's own special tokens (its BOS), the responses none; each response
    ends with EOS. `length` is the longer side (prompt + longer response), what group-by-length batching sorts by.

    Args:
        table: a `datasets.Dataset` of preference rows (`prompt`, `chosen`, `rejected`: text or messages).
        tokenizer: a transformers tokenizer.
        max_length: most tokens of prompt + response.
        too_long: `truncate` (see `fit_pair`; counted and warned), `skip` (the pair is dropped; counted
            and warned) or `reject` (a DataError naming the row).
        locate: maps row indices to their places (file:line) for error messages; default "row N".

    Raises:
        DataError: a row too long with too_long="reject", a response with no token left, or no pair
            left after too_long="skip".
    """
    import datasets

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        texts = [pair_texts(row, tokenizer) for row in rows]
        out: dict[str, list] = {k: [] for k in ("prompt_ids", "chosen_ids", "rejected_ids", "length", "_cut")}
        for index, (prompt, chosen, rejected) in zip(indices, texts, strict=True):
            special = not (tokenizer.bos_token and prompt.startswith(tokenizer.bos_token))
            ids = [tokenizer(prompt, add_special_tokens=special)["input_ids"]]
            ids += tokenizer([chosen, rejected], add_special_tokens=False)["input_ids"]
            fitted = fit_pair(*ids, max_length)
            if too_long == "skip" and (fitted[3] or fitted[4]):
                continue  # counted below: the pairs missing from the output
            _check_fit(where(index, locate), ids, fitted, max_length, too_long)
            for key, value in zip(("prompt_ids", "chosen_ids", "rejected_ids"), fitted[:3], strict=True):
                out[key].append(value)
            out["length"].append(len(fitted[0]) + max(len(fitted[1]), len(fitted[2])))
            out["_cut"].append(2 if fitted[4] else int(fitted[3]))
        return out

    ids = datasets.List(datasets.Value("int32"))
    features = datasets.Features({"prompt_ids": ids, "chosen_ids": ids, "rejected_ids": ids,
                                  "length": datasets.Value("int32"), "_cut": datasets.Value("int8")})  # fmt: skip
    tokenized = table.map(encode, batched=True, with_indices=True, remove_columns=table.column_names,
                          features=features, load_from_cache_file=False, desc="tokenising pairs")  # fmt: skip
    _warn_cut(tokenized["_cut"], max_length)
    _check_skipped(len(table), len(tokenized), max_length)
    return tokenized.remove_columns("_cut")


def _check_fit(place: str, ids: list[list[int]], fitted: tuple, max_length: int, too_long: str) -> None:
    prompt, chosen, rejected = ids
    if (fitted[3] or fitted[4]) and too_long == "reject":
        raise DataError(
            f"{place}: prompt {len(prompt)} + response {max(len(chosen), len(rejected))} tokens exceed "
            f"max_length={max_length} (too_long='reject'; 'truncate' cuts the prompt from the left first)"
        )
    if not fitted[1] or not fitted[2]:
        raise DataError(f"{place}: a response has no token (chosen {len(chosen)}, rejected {len(rejected)})")


def _check_skipped(rows_in: int, rows_out: int, max_length: int) -> None:
    if rows_out == 0 and rows_in:
        raise DataError(
            f"no pair left after tokenisation: all {rows_in} pairs are longer than max_length={max_length} "
            "(trainer.too_long='skip'; 'truncate' cuts the prompt from the left first)"
        )
    if rows_out < rows_in:
        warnings.warn(
            f"{rows_in - rows_out} of {rows_in} pairs are longer than max_length={max_length}: skipped "
            "(trainer.too_long='skip')",
            UserWarning,
            stacklevel=3,
        )


def _warn_cut(cut: Sequence[int], max_length: int) -> None:
    prompts = sum(1 for c in cut if c >= 1)
    responses = sum(1 for c in cut if c == 2)
    if prompts or responses:
        warnings.warn(
            f"{prompts} of {len(cut)} pairs are longer than max_length={max_length}: their prompts were cut from the "
            f"left; {responses} of them also had their responses cut from the right",
            UserWarning,
            stacklevel=3,
        )


def chosen_as_sft(table):
    """The chosen side of each pair as a demonstration (`completion` rows, or `chat` rows for messages).

    What `trainer.objective=sft` trains on preference data: the usual first stage before DPO.
    """
    first = table[0]["prompt"] if len(table) else ""
    if isinstance(first, str):
        rows = {"prompt": table["prompt"], "completion": table["chosen"]}
        return table.from_dict(rows), "completion"
    messages = [list(p) + list(c) for p, c in zip(table["prompt"], table["chosen"], strict=True)]
    return table.from_dict({"messages": messages}), "chat"


def preview_pairs(tokenized, tokenizer, n: int) -> str:
    """The first `n` pairs as the model sees them: prompt, then each response (the tokens that are scored)."""
    shown = []
    for i, row in enumerate(tokenized.select(range(min(n, len(tokenized))))):
        prompt = tokenizer.decode(row["prompt_ids"], skip_special_tokens=False)
        chosen = tokenizer.decode(row["chosen_ids"], skip_special_tokens=False)
        rejected = tokenizer.decode(row["rejected_ids"], skip_special_tokens=False)
        shown.append(
            f"--- pair {i}: {row['length']} tokens\n{prompt}[[chosen: {chosen}]]\n{prompt}[[rejected: {rejected}]]"
        )
    return "\n".join(shown)


# -- batching --------------------------------------------------------------------------------------


class PairCollator:
    """Pairs into one batch of 2B rows: every prompt+chosen, then every prompt+rejected, padded right.

    Labels are -100 on the prompt and the padding. `num_targets` is the pair count (the loss is a sum
    over pairs), `num_tokens` the non-padding tokens.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import numpy as np
        import torch

        prompts = [list(f["prompt_ids"]) for f in features]
        sides = [list(f["chosen_ids"]) for f in features] + [list(f["rejected_ids"]) for f in features]
        rows = [(p, s) for p, s in zip(prompts * 2, sides, strict=True)]
        width = max(len(p) + len(s) for p, s in rows)
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, (prompt, side) in enumerate(rows):
            end = len(prompt) + len(side)
            input_ids[i, :end] = prompt + side
            labels[i, len(prompt) : end] = side
            mask[i, :end] = 1
        return {
            "input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels), "num_tokens": int(mask.sum()), "num_targets": len(features),
        }  # fmt: skip


# -- log-probs and losses --------------------------------------------------------------------------


@dataclass
class SideLogps:
    """Summed response log-probs and response token counts of the chosen and rejected sides ([B] each)."""

    chosen: Any
    rejected: Any
    chosen_tokens: Any
    rejected_tokens: Any

    def means(self) -> tuple[Any, Any]:
        """Per-token mean log-probs (the length-normalised score of SimPO, IPO and ORPO)."""
        return self.chosen / self.chosen_tokens.clamp(min=1), self.rejected / self.rejected_tokens.clamp(min=1)


def response_logps(model, batch: dict[str, Any]) -> SideLogps:
    """Score a `PairCollator` batch in one forward pass: summed log-probs of each response.

    From hidden states, the response positions only, in chunks (`modelops.models.loss.sequence_logprobs`).
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    sums, counts = lm_loss.sequence_logprobs(model, inputs, batch["labels"])
    half = sums.shape[0] // 2
    return SideLogps(sums[:half], sums[half:], counts[:half], counts[half:])


@dataclass(frozen=True)
class PreferenceLoss:
    """The pair losses and rewards of one objective (formulas in the module docstring).

    Args:
        objective: dpo | ipo | simpo | orpo.
        beta: DPO/IPO/SimPO temperature; ORPO's weight on the odds-ratio term (TRL's `beta`, the paper's λ).
        label_smoothing: DPO and SimPO: the assumed share of flipped preferences (0 = plain sigmoid loss).
        simpo_gamma: SimPO's target reward margin γ.
    """

    objective: str
    beta: float
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5

    def __call__(self, policy: SideLogps, reference: SideLogps | None) -> tuple[Any, Any, Any]:
        """Return (losses, chosen rewards, rejected rewards), each [B]; rewards are detached."""
        return _PAIR_LOSSES[self.objective](self, policy, reference)


def _smoothed_sigmoid(delta, smooth: float):
    import torch.nn.functional as F

    return -(1 - smooth) * F.logsigmoid(delta) - smooth * F.logsigmoid(-delta)


def _ratio_rewards(beta: float, policy: SideLogps, reference: SideLogps):
    """Policy/reference log-ratios of each side, and their rewards (dpo, ipo)."""
    chosen_ratio, rejected_ratio = policy.chosen - reference.chosen, policy.rejected - reference.rejected
    return chosen_ratio, rejected_ratio, (beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def _dpo(loss: PreferenceLoss, policy: SideLogps, reference: SideLogps):
    chosen_ratio, rejected_ratio, rewards = _ratio_rewards(loss.beta, policy, reference)
    return _smoothed_sigmoid(loss.beta * (chosen_ratio - rejected_ratio), loss.label_smoothing), *rewards


def _ipo(loss: PreferenceLoss, policy: SideLogps, reference: SideLogps):
    _, _, rewards = _ratio_rewards(loss.beta, policy, reference)
    chosen_mean, rejected_mean = policy.means()
    ref_chosen, ref_rejected = reference.means()
    delta = (chosen_mean - ref_chosen) - (rejected_mean - ref_rejected)
    return (delta - 1 / (2 * loss.beta)) ** 2, *rewards


def _simpo(loss: PreferenceLoss, policy: SideLogps, reference: None):
    chosen_mean, rejected_mean = policy.means()
    rewards = (loss.beta * chosen_mean.detach(), loss.beta * rejected_mean.detach())
    delta = loss.beta * (chosen_mean - rejected_mean) - loss.simpo_gamma
    return _smoothed_sigmoid(delta, loss.label_smoothing), *rewards


def _orpo(loss: PreferenceLoss, policy: SideLogps, reference: None):
    import torch
    import torch.nn.functional as F

    chosen_mean, rejected_mean = policy.means()
    rewards = (loss.beta * chosen_mean.detach(), loss.beta * rejected_mean.detach())
    log_odds = (chosen_mean - rejected_mean) - (
        torch.log1p(-torch.exp(chosen_mean)) - torch.log1p(-torch.exp(rejected_mean))
    )
    return -chosen_mean - loss.beta * F.logsigmoid(log_odds), *rewards


#: Each objective's pair losses and rewards (formulas in the module docstring).
_PAIR_LOSSES = {"dpo": _dpo, "ipo": _ipo, "simpo": _simpo, "orpo": _orpo}


# -- the loss step the loop calls ------------------------------------------------------------------


class Reference:
    """The reference model's log-probs: the adapter-disabled policy (PEFT) or a frozen copy (full fine-tuning).

    Build it before `accelerator.prepare` (the copy is of the initial weights).

    Args:
        model: the policy, unprepared.
        peft: whether the policy is a PEFT model (then no copy is made).
        autocast: the mixed-precision context the policy runs under (`accelerator.autocast`): preparing
            gives the policy's forward its autocast, and the copy, never prepared, runs under the same one.
    """

    def __init__(self, model, peft: bool, autocast: Callable[[], Any] = nullcontext):
        self.peft, self.autocast = peft, autocast
        self.frozen = None
        if not peft:
            self.frozen = copy.deepcopy(model).eval().requires_grad_(False)

    def to(self, device) -> Reference:
        if self.frozen is not None and device is not None:
            self.frozen.to(device)
        return self

    def logps(self, policy, batch: dict[str, Any]) -> SideLogps:
        """Score `batch` with the reference, in eval mode, without gradients."""
        return self.score(policy, lambda model: response_logps(model, batch))

    def score(self, policy, fn: Callable[[Any], Any]) -> Any:
        """`fn(reference_model)`: the frozen copy, or `policy` with its adapter disabled; eval mode, no gradients."""
        import torch

        if self.frozen is not None:
            with torch.no_grad(), self.autocast():
                return fn(self.frozen)
        was_training = policy.training
        policy.eval()
        try:
            with torch.no_grad(), policy.disable_adapter():
                return fn(policy)
        finally:
            policy.train(was_training)


class PreferenceStep:
    """The preference loss of one micro-batch (summed over its pairs) and the step metrics it adds up.

    Called by the loop's stepper in place of the SFT loss. Metrics are summed on the device and read
    (one sync, reduced over processes) only when the loop logs.

    Args:
        loss: the objective's pair losses.
        reference: the reference model, or None for SimPO/ORPO.
        unwrap: returns the bare (PEFT) model under a DDP wrapper, for the adapter-disabled reference.
    """

    def __init__(self, loss: PreferenceLoss, reference: Reference | None, unwrap=lambda m: m):
        self.loss, self.reference, self.unwrap = loss, reference, unwrap
        self._sums = None

    def __call__(self, model, batch: dict[str, Any]):
        import torch

        policy = response_logps(model, batch)
        reference = self.reference.logps(self.unwrap(model), batch) if self.reference is not None else None
        losses, chosen, rejected = self.loss(policy, reference)
        values = torch.stack([
            torch.ones_like(chosen), chosen, rejected, (chosen > rejected).float(), chosen - rejected,
            policy.chosen.detach(), policy.rejected.detach(),
        ]).sum(-1)  # fmt: skip
        self._sums = values if self._sums is None else self._sums + values
        return losses.sum()

    def validate(self, accelerator, model, validation, collate, batch_size: int) -> dict[str, float]:
        """Validation metrics over the pairs of `validation`: the objective's mean `loss`, `reward_accuracy`
        and `reward_margin` (rewards as logged in training).

        Each process scores every `num_processes`-th batch and the sums are reduced, so every pair
        counts once; the model is scored in eval mode and put back in train mode.
        """
        import torch

        from modelops.tasks.batching import eval_batches

        batches = eval_batches(validation, batch_size)[accelerator.process_index :: accelerator.num_processes]
        sums = torch.zeros(4, dtype=torch.float64, device=accelerator.device)
        model.eval()
        with torch.inference_mode():
            for index in batches:
                batch = {k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v
                         for k, v in collate(validation.__getitems__(index)).items()}  # fmt: skip
                policy = response_logps(model, batch)
                reference = self.reference.logps(self.unwrap(model), batch) if self.reference is not None else None
                losses, chosen, rejected = self.loss(policy, reference)
                margin = chosen - rejected
                parts = [losses.sum(), (margin > 0).sum(), margin.sum(), torch.tensor(len(margin))]
                sums += torch.stack([p.double().to(sums.device) for p in parts])
        model.train()
        sums = accelerator.reduce(sums, "sum") if accelerator.num_processes > 1 else sums
        loss, wins, margins, count = sums.tolist()
        count = max(count, 1)
        return {"loss": loss / count, "reward_accuracy": wins / count, "reward_margin": margins / count}

    def metrics(self, accelerator) -> dict[str, float]:
        """Means over the pairs since the last call (all processes), then start again."""
        if self._sums is None:
            return {}
        sums = accelerator.reduce(self._sums, "sum") if accelerator.num_processes > 1 else self._sums
        self._sums = None
        count, *rest = sums.tolist()
        return {name: value / max(count, 1) for name, value in zip(STEP_METRICS, rest, strict=True)}


def preference_step(model, peft: bool, objective: str, beta: float, label_smoothing: float, simpo_gamma: float,
                    device=None, unwrap=lambda m: m,
                    autocast: Callable[[], Any] = nullcontext) -> PreferenceStep:  # fmt: skip
    """The loss step for `objective`, with its reference (made now, from `model`'s initial weights) on `device`."""
    reference = Reference(model, peft, autocast).to(device) if objective in WITH_REFERENCE else None
    return PreferenceStep(PreferenceLoss(objective, beta, label_smoothing, simpo_gamma), reference, unwrap)
