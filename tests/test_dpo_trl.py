"""The DPO loss, rewards and log-probs of one fixed batch equal TRL's `DPOTrainer` on the same model and data."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("trl")

BETA = 0.1
ROWS = [
    {"prompt": f"Q{i}: what is {i}+{i}?", "chosen": f" {2 * i}", "rejected": " no idea" * (1 + i % 3)} for i in range(4)
]


def _models():
    import torch

    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    tokenizer = load_tokenizer("tiny-llama")
    reference = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=128), seed=0).eval()
    policy = copy.deepcopy(reference)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a policy that differs from its reference, so the loss is not log 2
        for param in policy.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return policy, reference, tokenizer


def _trl(policy, reference, tokenizer, tmp_path) -> dict[str, float]:
    import datasets
    from trl import DPOConfig, DPOTrainer

    # TRL 1.16 defaults to bf16 and gradient checkpointing, also on a CPU: configured as fp32, like ours.
    args = DPOConfig(output_dir=str(tmp_path / "trl"), bf16=False, gradient_checkpointing=False, use_cpu=True,
                     per_device_train_batch_size=len(ROWS), beta=BETA, loss_type=["sigmoid"], report_to=[])  # fmt: skip
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=datasets.Dataset.from_list(ROWS),
                         processing_class=tokenizer)  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    trainer.model.eval()  # no dropout, and the metrics land in the "eval" bucket
    loss = trainer._compute_loss(trainer.model, batch, False)
    metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    return {"loss": float(loss.detach()), **metrics}


def _ours(policy, reference_model, tokenizer) -> dict[str, float]:
    import datasets

    from modelops.tasks.preference import PairCollator, PreferenceLoss, PreferenceStep, Reference, tokenize_pairs

    tokenized = tokenize_pairs(datasets.Dataset.from_list(ROWS), tokenizer, max_length=128)
    batch = PairCollator(tokenizer.pad_token_id)([tokenized[i] for i in range(len(ROWS))])
    reference = Reference(reference_model, peft=False)
    step = PreferenceStep(PreferenceLoss("dpo", BETA), reference)
    policy.eval()
    loss = step(policy, batch) / len(ROWS)

    class _One:
        num_processes = 1

    return {"loss": float(loss.detach()), **step.metrics(_One())}


def test_dpo_loss_and_rewards_equal_trl(tmp_path):
    policy, reference, tokenizer = _models()
    ours = _ours(copy.deepcopy(policy), copy.deepcopy(reference), tokenizer)
    theirs = _trl(policy, reference, tokenizer, tmp_path)
    assert abs(ours["loss"] - 0.6931) > 1e-3  # the policy really differs from the reference
    names = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
             "logps/rejected"]  # fmt: skip
    for name in names:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-5), name
