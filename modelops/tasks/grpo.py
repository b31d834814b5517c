"""GRPO's math: group-relative advantages, completion log-probs, the clipped surrogate and its aggregation.

The formulas are TRL 1.16 ``GRPOTrainer``'s (``trl/trainer/grpo_trainer.py``), checked against TRL's own code in
``tests/test_grpo_math.py``:

- advantages (``_generate_and_score_completions``, ``multi_objective_aggregation="sum_then_normalize"``):
  ``A = (r - mean_group(r)) / (std + 1e-4)`` with ``std`` the Bessel-corrected standard deviation over the group
  (``scale_rewards="group"``), over the whole batch (``"batch"``) or no division (``"none"``). A NaN reward (every
  reward function abstained) is left out of the means and gets advantage 0.
- per token (``_compute_loss``): ``ρ = exp(logπ - logπ_old)``,
  ``loss = -min(ρ·A, clip(ρ, 1-ε, 1+ε_high)·A) + β·ρ·(exp(logπ_ref - logπ) - (logπ_ref - logπ) - 1)``
  (the factor ρ is TRL's default ``use_bias_correction_kl=True``; ``bias_correction_kl=False`` drops it).
- aggregation per ``loss_type``: ``grpo`` mean over each sequence's tokens, then over sequences; ``dr_grpo`` token
  sum / (sequences × max_completion_length); ``dapo`` token sum / tokens of the whole step; ``bnpo`` token mean of
  the micro-batch.

Under gradient accumulation (several micro-batches, several processes per optimizer step), `aggregate` takes the
step's totals and returns the micro-batch's share, so the shares add up to the step's loss however it is split.
TRL normalises ``bnpo`` per micro-batch (token mean, divided by the number of accumulation steps, then averaged over
processes by DDP); that depends on the split, and `aggregate` does the same: the micro-batch's token mean times its
share of the step's sequences, which is TRL's ``1 / (accumulation steps × processes)`` when the micro-batches are
equally large, as TRL's always are.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import inspect
from typing import Any

#: The aggregations `aggregate` knows (TRL's ``loss_type`` names).
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
#: How advantages are scaled (TRL's ``scale_rewards``; TRL also takes True for "group" and False for "none").
SCALE_REWARDS = ("group", "batch", "none")
#: TRL's epsilon in the division by the standard deviation.
STD_EPSILON = 1e-4


def check_scale_rewards(scale_rewards: Any) -> str:
    """The `scale_rewards` name, with TRL's booleans mapped (True: "group", False: "none"); ValueError otherwise."""
    if isinstance(scale_rewards, bool):
        return "group" if scale_rewards else "none"
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards={scale_rewards!r}: must be one of {', '.join(SCALE_REWARDS)} (or a bool)")
    return scale_rewards


def _nanstd(x, dim=None):
    """Bessel-corrected standard deviation ignoring NaNs (NaN with fewer than two values), as TRL's `nanstd`."""
    import torch

    mean = torch.nanmean(x, dim=dim, keepdim=True)
    variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    correction = torch.where(count > 1, count / (count - 1), torch.full_like(variance, float("nan")))
    std = torch.sqrt(variance * correction)
    return std.squeeze() if dim is None else std.squeeze(dim)


def group_advantages(rewards, num_generations: int, scale_rewards: str = "group"):
    """Group-relative advantages, exactly as TRL 1.16's GRPOTrainer computes them.

    Args:
        rewards: float tensor (or list) [N], N = prompts × num_generations, a prompt's completions consecutive.
            NaN marks a completion no reward function scored: left out of the group's mean and std, advantage 0.
        num_generations: completions per prompt (the group size).
        scale_rewards: "group" (divide by the group's std + 1e-4), "batch" (by the whole batch's std + 1e-4) or
            "none"; True/False as TRL ("group"/"none").

    Returns:
        float tensor [N] of advantages.
    """
    import torch

    scale = check_scale_rewards(scale_rewards)
    rewards = torch.as_tensor(rewards)
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    if num_generations < 1 or rewards.dim() != 1 or rewards.numel() % num_generations:
        raise ValueError(
            f"rewards of shape {tuple(rewards.shape)} do not split into groups of num_generations={num_generations}"
        )
    grouped = rewards.view(-1, num_generations)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(num_generations)
    advantages = rewards - mean
    if scale == "group" and num_generations > 1:
        advantages = advantages / (_nanstd(grouped, dim=1).repeat_interleave(num_generations) + STD_EPSILON)
    elif scale == "group":
        advantages = advantages / STD_EPSILON  # TRL: std 0 for groups of one (then rewards - mean is 0 anyway)
    elif scale == "batch":
        std = _nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        advantages = advantages / (std + STD_EPSILON)
    return torch.nan_to_num(advantages, nan=0.0)


def _accepts(forward, name: str) -> bool:
    """Whether `forward` takes the keyword `name` (by name or through **kwargs, as PEFT's wrappers pass it on)."""
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def completion_logps(
    model, input_ids, attention_mask, completion_length: int, temperature: float = 1.0, position_ids=None
):
    """Per-token log-probs and entropies of the last `completion_length` tokens of each row.

    Logits are divided by `temperature` (as TRL does, so they are those of the sampling distribution) and taken in
    float32. ``logits_to_keep=completion_length + 1`` is passed when the model's forward takes it, so only those
    logits are computed; otherwise the full logits are computed and the last positions kept.

    `position_ids` (optional) are passed on: for left-padded rows, the positions ``generate`` gave the tokens.

    Returns:
        (logps [B, C], entropy [B, C]). The entropy is detached (it is logged, not trained on). Values at padded
        completion positions are computed like the others and mean nothing; the completion mask drops them. The
        float32 softmax over the vocabulary is taken one row at a time, so the extra memory is one row's.
    """
    import torch

    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:  # left-padded prompts: the positions generation used (from the mask)
        kwargs["position_ids"] = position_ids
    if _accepts(model.forward, "logits_to_keep"):
        kwargs["logits_to_keep"] = completion_length + 1
    logits = model(**kwargs).logits[:, -(completion_length + 1) : -1]
    targets = input_ids[:, -completion_length:].unsqueeze(-1)
    logps, entropy = [], []
    for row in range(logits.size(0)):
        scaled = logits[row].float() / temperature
        normaliser = torch.logsumexp(scaled, dim=-1)
        logps.append(scaled.gather(-1, targets[row]).squeeze(-1) - normaliser)
        with torch.no_grad():
            entropy.append(normaliser - (torch.softmax(scaled, dim=-1) * scaled).sum(-1))
    return torch.stack(logps), torch.stack(entropy)


def per_token_loss(
    logps,
    old_logps,
    ref_logps,
    advantages,
    mask,
    *,
    epsilon: float,
    epsilon_high: float | None,
    beta: float,
    bias_correction_kl: bool = True,
):
    """TRL 1.16's clipped surrogate per token, plus ``beta`` times the k3 KL to the reference when beta > 0.

    Args:
        logps: [B, C] log-probs of the completion tokens under the policy being trained (with grad).
        old_logps: [B, C] log-probs when the completions were sampled; None: ``logps.detach()`` (ratio 1).
        ref_logps: [B, C] log-probs under the reference model; None needs ``beta == 0``.
        advantages: [B] (or [B, C]).
        mask: [B, C], 1 for completion tokens, 0 for padding.
        epsilon: lower clip ε (ratio floor 1 - ε).
        epsilon_high: upper clip (ceiling 1 + epsilon_high); None: ``epsilon``.
        beta: KL coefficient.
        bias_correction_kl: multiply the KL by the (differentiable) ratio ρ, as TRL 1.16's default
            ``use_bias_correction_kl=True`` (DeepSeek-V3.2's unbiased reverse-KL gradient). This changes the KL's
            gradient even on-policy, where ρ = 1 in value; the logged KL is the corrected one, as TRL's.

    Returns:
        (loss [B, C], stats): stats are scalar float tensors summed over the masked tokens, so that they add up over
        micro-batches and processes: ``tokens``, ``clipped_low``, ``clipped_high``, ``clipped_region`` and, when
        ``ref_logps`` is given, ``kl``. Divided by ``tokens`` they are TRL's ``clip_ratio/low_mean``,
        ``clip_ratio/high_mean``, ``clip_ratio/region_mean`` and ``kl``.
    """
    import torch

    if ref_logps is None and beta != 0:
        raise ValueError(f"beta={beta} needs the reference log-probs (ref_logps is None)")
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    old_logps = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high)
    loss = -torch.min(ratio * advantages, clipped * advantages)
    mask = mask.to(loss.dtype)
    kl = None
    if ref_logps is not None:
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        if bias_correction_kl:
            kl = kl * ratio
        if beta != 0:
            loss = loss + beta * kl
    with torch.no_grad():
        low = (ratio < 1 - epsilon) & (advantages < 0)
        high = (ratio > 1 + epsilon_high) & (advantages > 0)
        stats = {
            "tokens": mask.sum(),
            "clipped_low": (low * mask).sum(),
            "clipped_high": (high * mask).sum(),
            "clipped_region": ((low | high) * mask).sum(),
        }
        if kl is not None:
            stats["kl"] = (kl.detach() * mask).sum()
    return loss, stats


def aggregate(
    per_token_loss,
    mask,
    loss_type: str,
    *,
    max_completion_length: int,
    num_sequences: int | None = None,
    num_tokens: float | None = None,
):
    """The scalar loss of a batch for `loss_type` (one of `LOSS_TYPES`).

    With `num_sequences` and `num_tokens` None (one batch, no accumulation, one process) this is TRL 1.16's
    ``_compute_loss`` for that loss type. When given, they are the totals of the whole optimizer step (all
    micro-batches, all processes) and the result is this batch's share of the step's loss:

    - grpo: sum of the batch's per-sequence token means / num_sequences;
    - dr_grpo: token sum / (num_sequences × max_completion_length);
    - dapo: token sum / num_tokens;
    - bnpo: the batch's token mean × (batch sequences / num_sequences), as TRL (which divides each micro-batch's
      token mean by the accumulation steps, and DDP averages processes): it depends on the split.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r}: must be one of {', '.join(LOSS_TYPES)}")
    mask = mask.to(per_token_loss.dtype)
    masked = per_token_loss * mask
    batch = per_token_loss.size(0)
    sequences = batch if num_sequences is None else num_sequences
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / sequences
    if loss_type == "dr_grpo":
        return masked.sum() / (sequences * max_completion_length)
    if loss_type == "dapo":
        if num_tokens is None:
            return masked.sum() / mask.sum().clamp(min=1.0)
        return masked.sum() / (num_tokens.clamp(min=1.0) if hasattr(num_tokens, "clamp") else max(num_tokens, 1.0))
    return masked.sum() / mask.sum().clamp(min=1.0) * (batch / sequences)
