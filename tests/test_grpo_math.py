"""GRPO's math equals TRL 1.16's GRPOTrainer, computed by TRL's own code on the same inputs.

- loss and clip ratios / KL: TRL's `_compute_loss` fed an `inputs` dict built here (advantages, old and reference
  log-probs, masks); only its per-token log-prob method is replaced, to return the given log-probs (the reference's
  input, not the component under test).
- advantages: TRL's `_generate_and_score_completions` on fixed completions (its public `rollout_func` hook) with
  reward functions that return given values (None: abstain).
- completion log-probs and entropies: TRL's `_get_per_token_logps_and_entropies` on the same tiny model.
"""

from __future__ import annotations

import copy

import pytest

from modelops.tasks import grpo

pytest.importorskip("trl")

B, C, P = 6, 7, 5  # sequences, completion tokens, prompt tokens
MAX_COMPLETION_LENGTH = C + 3  # dr_grpo divides by the configured maximum, not the batch's width


@pytest.fixture(scope="module")
def tiny():
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    tokenizer = load_tokenizer("tiny-llama")
    model = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=128), seed=0)
    return model, tokenizer


def _trainer(tiny, tmp_path, monkeypatch, rewards=None, **config):
    """A TRL GRPOTrainer on a copy of the tiny model (TRL patches the model's forward), configured in fp32."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model, tokenizer = tiny
    settings = dict(per_device_train_batch_size=B, num_generations=2, max_completion_length=MAX_COMPLETION_LENGTH)
    settings.update(config)
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), bf16=False, gradient_checkpointing=False, use_cpu=True,
                      report_to=[], logging_steps=1, **settings)  # fmt: skip
    return GRPOTrainer(
        model=copy.deepcopy(model), args=args, processing_class=tokenizer,
        reward_funcs=rewards or [lambda completions, **kw: [0.0] * len(completions)],
        train_dataset=datasets.Dataset.from_list([{"prompt": f"q{i}"} for i in range(B)]),
        rollout_func=_fixed_completions,
    )  # fmt: skip


def _fixed_completions(prompts, trainer):
    """TRL's rollout hook: the same short completion for every prompt (the rewards come from the rows)."""
    return {"prompt_ids": [[1, 70, 71]] * len(prompts), "completion_ids": [[72, 73, 2]] * len(prompts),
            "logprobs": None}  # fmt: skip


def _batch(seed: int = 0, lengths=(7, 3, 5, 1, 6, 7)):
    """Log-probs, old/reference log-probs that differ enough to clip both ways, advantages of both signs, a padded
    completion mask (rows of different lengths) and left-padded prompts."""
    import torch

    g = torch.Generator().manual_seed(seed)
    logps = -(0.5 + 2.5 * torch.rand(B, C, generator=g))
    mask = (torch.arange(C).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).long()
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[1, :2] = 0
    return {
        "logps": logps,
        "entropies": torch.rand(B, C, generator=g),
        "old": logps + 0.5 * torch.randn(B, C, generator=g),
        "ref": logps + 0.2 * torch.randn(B, C, generator=g),
        "advantages": torch.tensor([1.2, -0.7, 0.0, 0.4, -1.5, 0.9]),
        "mask": mask,
        "prompt_mask": prompt_mask,
    }


def _trl_loss(trainer, batch, monkeypatch, rows=slice(None), old=True, ref=True, num_items=None):
    """TRL's `_compute_loss` on `batch[rows]`; returns (loss, d loss / d logps, TRL's logged metrics)."""
    import torch

    logps = batch["logps"][rows].clone().requires_grad_(True)
    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies",
                        lambda *args, **kwargs: (logps, batch["entropies"][rows], None))  # fmt: skip
    mask = batch["mask"][rows]
    inputs = {
        "prompt_ids": torch.full((mask.size(0), P), 70), "prompt_mask": batch["prompt_mask"][rows],
        "completion_ids": torch.full(mask.shape, 72), "completion_mask": mask,
        "advantages": batch["advantages"][rows],
        "num_items_in_batch": batch["mask"].sum() if num_items is None else num_items,
    }  # fmt: skip
    if old:
        inputs["old_per_token_logps"] = batch["old"][rows]
    if ref:
        inputs["ref_per_token_logps"] = batch["ref"][rows]
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    mode = "train" if trainer.model.training else "eval"
    return loss.detach(), logps.grad, {k: v[-1] for k, v in trainer._metrics[mode].items()}


def _our_loss(
    batch, loss_type, epsilon, epsilon_high, beta, rows=slice(None), old=True, ref=True, totals=False, corrected=True
):
    logps = batch["logps"][rows].clone().requires_grad_(True)
    per_token, stats = grpo.per_token_loss(
        logps, batch["old"][rows] if old else None, batch["ref"][rows] if ref else None, batch["advantages"][rows],
        batch["mask"][rows], epsilon=epsilon, epsilon_high=epsilon_high, beta=beta, bias_correction_kl=corrected,
    )  # fmt: skip
    step = {"num_sequences": B, "num_tokens": batch["mask"].sum()} if totals else {}
    loss = grpo.aggregate(
        per_token, batch["mask"][rows], loss_type, max_completion_length=MAX_COMPLETION_LENGTH, **step
    )
    loss.backward()
    return loss.detach(), logps.grad, stats


CASES = {  # name: (epsilon, epsilon_high, beta, old log-probs given, reference given, KL bias correction)
    "on_policy_no_kl": (0.2, None, 0.0, False, False, True),
    "iterations_asymmetric_clip_kl": (0.2, 0.28, 0.04, True, True, True),
    "iterations_no_kl": (0.1, 0.3, 0.0, True, False, True),
    "on_policy_kl": (0.2, 0.2, 0.1, False, True, True),
    "iterations_kl_uncorrected": (0.2, 0.28, 0.1, True, True, False),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("loss_type", grpo.LOSS_TYPES)
def test_loss_and_clip_ratios_equal_trl(tiny, tmp_path, monkeypatch, loss_type, case):
    epsilon, epsilon_high, beta, old, ref, corrected = CASES[case]
    trainer = _trainer(tiny, tmp_path, monkeypatch, loss_type=loss_type, beta=beta, epsilon=epsilon,
                       use_bias_correction_kl=corrected,
                       **({} if epsilon_high is None else {"epsilon_high": epsilon_high}))  # fmt: skip
    trainer.model.eval()  # one batch, no accumulation: TRL's eval normalisation
    batch = _batch()
    theirs, their_grad, metrics = _trl_loss(trainer, batch, monkeypatch, old=old, ref=ref)
    ours, our_grad, stats = _our_loss(
        batch, loss_type, epsilon, epsilon_high, beta, old=old, ref=ref, corrected=corrected
    )

    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)
    assert our_grad.flatten().tolist() == pytest.approx(their_grad.flatten().tolist(), abs=1e-5)
    tokens = stats["tokens"].item()
    assert tokens == batch["mask"].sum().item()
    for ours_name, trl_name in [("clipped_low", "clip_ratio/low_mean"), ("clipped_high", "clip_ratio/high_mean"),
                                ("clipped_region", "clip_ratio/region_mean")]:  # fmt: skip
        assert stats[ours_name].item() / tokens == pytest.approx(metrics[trl_name], abs=1e-5), ours_name
    if old:  # the old log-probs differ: some tokens really are clipped, on each side
        assert stats["clipped_low"] > 0 and stats["clipped_high"] > 0
    if beta:
        assert stats["kl"].item() / tokens == pytest.approx(metrics["kl"], abs=1e-5)
        assert metrics["kl"] > 1e-3


def test_kl_needs_a_reference():
    batch = _batch()
    with pytest.raises(ValueError, match="ref_logps"):
        grpo.per_token_loss(batch["logps"], None, None, batch["advantages"], batch["mask"], epsilon=0.2,
                            epsilon_high=None, beta=0.1)  # fmt: skip


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("split", [[2, 4, 6], [1, 6], [3, 5, 6]])
def test_micro_batch_shares_sum_to_the_step_loss(loss_type, split):
    batch = _batch(seed=3)
    whole, whole_grad, _ = _our_loss(batch, loss_type, 0.2, 0.28, 0.04)
    total, grads, start = 0.0, [], 0
    for end in split:
        share, grad, _ = _our_loss(batch, loss_type, 0.2, 0.28, 0.04, rows=slice(start, end), totals=True)
        total, start = total + share.item(), end
        grads.append(grad)
    import torch

    assert total == pytest.approx(whole.item(), abs=1e-6)
    assert torch.cat(grads).flatten().tolist() == pytest.approx(whole_grad.flatten().tolist(), abs=1e-6)


def test_bnpo_share_depends_on_the_split_as_trls():
    """bnpo is a token mean per micro-batch in TRL too: an uneven split gives another step loss."""
    batch = _batch(seed=3, lengths=(7, 1, 1, 1, 7, 7))
    whole = _our_loss(batch, "bnpo", 0.2, None, 0.0, ref=False)[0].item()
    shares = [_our_loss(batch, "bnpo", 0.2, None, 0.0, rows=r, ref=False, totals=True)[0].item()
              for r in (slice(0, 3), slice(3, 6))]  # fmt: skip
    assert sum(shares) != pytest.approx(whole, abs=1e-4)


@pytest.mark.parametrize("loss_type", grpo.LOSS_TYPES)
def test_accumulated_shares_equal_trls_accumulation(tiny, tmp_path, monkeypatch, loss_type):
    """Three equal micro-batches of one optimizer step: the shares summed equal TRL's micro-batch losses summed
    (TRL in train mode with gradient_accumulation_steps=3, as its Trainer scales them)."""
    trainer = _trainer(tiny, tmp_path, monkeypatch, loss_type=loss_type, beta=0.04, epsilon_high=0.28,
                       per_device_train_batch_size=2, gradient_accumulation_steps=3)  # fmt: skip
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 3
    batch = _batch(seed=5)
    theirs = ours = 0.0
    for start in (0, 2, 4):
        rows = slice(start, start + 2)
        theirs += _trl_loss(trainer, batch, monkeypatch, rows=rows)[0].item()
        ours += _our_loss(batch, loss_type, 0.2, 0.28, 0.04, rows=rows, totals=True)[0].item()
    assert ours == pytest.approx(theirs, abs=1e-5)


REWARDS = [1.0, 0.0, 0.5, 0.5, 2.0, -1.0, 0.25, 3.0, None, 1.0, None, None]  # 6 groups of 2; ties; abstentions


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none", True, False])
@pytest.mark.parametrize("num_generations", [2, 4])
def test_advantages_equal_trl(tiny, tmp_path, monkeypatch, scale_rewards, num_generations):
    """Two reward functions with weights, one abstaining on some rows: `score` then `group_advantages` give
    TRL's advantages (its `_generate_and_score_completions`, sum_then_normalize)."""
    import torch

    from modelops.tasks.rewards import build_rewards, may_abstain, score

    @may_abstain
    def first(completions, r, **kwargs):
        return r

    @may_abstain
    def second(completions, s, **kwargs):
        return s

    n = len(REWARDS)  # rows 10 and 11: both functions abstain (unscorable); row 8: only `first` abstains
    columns = {"r": REWARDS, "s": [None if i in (10, 11) else (i % 3) * 0.5 for i in range(n)]}
    trainer = _trainer(tiny, tmp_path, monkeypatch, rewards=[first, second], reward_weights=[1.0, 0.3],
                       per_device_train_batch_size=n, num_generations=num_generations,
                       scale_rewards=scale_rewards)  # fmt: skip
    trainer.model.train()
    rows = [{"prompt": f"q{i // num_generations}", "r": columns["r"][i], "s": columns["s"][i]} for i in range(n)]
    theirs = trainer._generate_and_score_completions(rows)["advantages"]

    total, per_function = score(build_rewards([first, second], [1.0, 0.3]), [r["prompt"] for r in rows],
                                ["x"] * n, columns)  # fmt: skip
    ours = grpo.group_advantages(total, num_generations, scale_rewards)
    assert ours.tolist() == pytest.approx(theirs.tolist(), abs=1e-5)
    assert torch.isnan(torch.tensor(per_function["first"])).sum() == 3
    assert torch.isnan(total).tolist() == [i in (10, 11) for i in range(n)]


def test_advantages_unscorable_rows_are_left_out():
    """A row no function scored (NaN total) is out of its group's mean and std and gets advantage 0, as TRL."""
    import torch

    rewards = torch.tensor([1.0, float("nan"), 0.0, 2.0])
    out = grpo.group_advantages(rewards, 4, "group")
    mean, std = 1.0, 1.0  # of 1, 0, 2 (Bessel)
    expected = [(1 - mean) / (std + 1e-4), 0.0, (0 - mean) / (std + 1e-4), (2 - mean) / (std + 1e-4)]
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


def test_group_advantages_refuses_bad_input():
    with pytest.raises(ValueError, match="num_generations=4"):
        grpo.group_advantages([1.0, 2.0, 3.0], 4)
    with pytest.raises(ValueError, match="scale_rewards"):
        grpo.group_advantages([1.0, 2.0], 2, "groups")
    with pytest.raises(ValueError, match="loss_type"):
        grpo.aggregate(_batch()["logps"], _batch()["mask"], "gspo", max_completion_length=C)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_completion_logps_equal_trl(tiny, tmp_path, monkeypatch, temperature):
    """Our log-probs/entropies of the completion tokens equal TRL's fused LM head's (temperature-scaled logits),
    with left-padded prompts and right-padded completions; the path without `logits_to_keep` gives the same."""
    import torch

    model, _ = tiny
    trainer = _trainer(tiny, tmp_path, monkeypatch, temperature=temperature)
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, 260, (B, P + C), generator=g)
    attention_mask = torch.cat([_batch()["prompt_mask"], _batch()["mask"]], dim=1)
    trainer.model.eval()
    with torch.no_grad():
        theirs, their_entropy, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, C, compute_entropy=True
        )
        ours, entropy = grpo.completion_logps(model.eval(), input_ids, attention_mask, C, temperature)

        class NoLogitsToKeep(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, use_cache=False):
                return self.inner(input_ids=input_ids, attention_mask=attention_mask)

        fallback, _ = grpo.completion_logps(NoLogitsToKeep(model), input_ids, attention_mask, C, temperature)
    keep = _batch()["mask"].bool()
    assert ours.shape == entropy.shape == (B, C)
    assert ours[keep].tolist() == pytest.approx(theirs[keep].tolist(), abs=1e-5)
    assert entropy[keep].tolist() == pytest.approx(their_entropy[keep].tolist(), abs=1e-5)
    assert fallback[keep].tolist() == pytest.approx(ours[keep].tolist(), abs=1e-5)


def test_completion_logps_gradient_equals_trl(tiny, tmp_path, monkeypatch):
    """The log-probs are differentiable as TRL's: the gradient of their masked sum w.r.t. the weights is TRL's."""
    import torch

    model, _ = tiny
    ours_model = copy.deepcopy(model).train()
    trainer = _trainer(tiny, tmp_path, monkeypatch, temperature=0.9)
    trainer.model.train()
    input_ids = torch.randint(4, 260, (B, P + C), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.cat([_batch()["prompt_mask"], _batch()["mask"]], dim=1)
    mask = _batch()["mask"]
    theirs, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention_mask, C)
    (theirs * mask).sum().backward()
    ours, entropy = grpo.completion_logps(ours_model, input_ids, attention_mask, C, 0.9)
    (ours * mask).sum().backward()
    assert not entropy.requires_grad
    their_grads = dict(trainer.model.named_parameters())
    for name, param in ours_model.named_parameters():
        assert torch.allclose(param.grad, their_grads[name].grad, atol=1e-4, rtol=1e-3), name
