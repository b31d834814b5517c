"""Preference objectives: the losses against hand computations, pair batching, truncation, config errors, reference."""

from __future__ import annotations

import copy
import math

import pytest

from modelops.errors import ConfigError, DataError
from modelops.models.labels import IGNORE_INDEX
from modelops.train.config import TrainConfig


def _logps(chosen, rejected, chosen_tokens, rejected_tokens):
    import torch

    from modelops.tasks.preference import SideLogps

    return SideLogps(
        *(torch.tensor(v, dtype=torch.float64) for v in (chosen, rejected, chosen_tokens, rejected_tokens))
    )


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


POLICY = ([-4.0, -9.0], [-6.0, -5.0], [2, 3], [4, 2])
REFERENCE = ([-5.0, -8.0], [-5.5, -6.0], [2, 3], [4, 2])


def test_dpo_loss_and_rewards_by_hand():
    from modelops.tasks.preference import PreferenceLoss

    beta, eps = 0.5, 0.1
    losses, chosen, rejected = PreferenceLoss("dpo", beta, label_smoothing=eps)(_logps(*POLICY), _logps(*REFERENCE))
    # pair 0: chosen ratio -4 - -5 = 1, rejected ratio -6 - -5.5 = -0.5: delta 1.5
    # pair 1: chosen ratio -9 - -8 = -1, rejected ratio -5 - -6 = 1: delta -2
    for i, (delta, rc, rr) in enumerate([(1.5, 1.0, -0.5), (-2.0, -1.0, 1.0)]):
        expected = -(1 - eps) * math.log(_sigmoid(beta * delta)) - eps * math.log(_sigmoid(-beta * delta))
        assert float(losses[i]) == pytest.approx(expected, abs=1e-12)
        assert float(chosen[i]) == pytest.approx(beta * rc) and float(rejected[i]) == pytest.approx(beta * rr)


def test_ipo_loss_uses_per_token_log_ratios():
    from modelops.tasks.preference import PreferenceLoss

    beta = 0.25
    losses, _, _ = PreferenceLoss("ipo", beta)(_logps(*POLICY), _logps(*REFERENCE))
    # pair 0: chosen ratio 1 over 2 tokens, rejected -0.5 over 4 tokens: 0.5 + 0.125
    delta = 1 / 2 - (-0.5 / 4)
    assert float(losses[0]) == pytest.approx((delta - 1 / (2 * beta)) ** 2, abs=1e-12)


def test_simpo_loss_is_length_normalised_with_a_margin():
    from modelops.tasks.preference import PreferenceLoss

    beta, gamma = 2.0, 0.5
    losses, chosen, rejected = PreferenceLoss("simpo", beta, simpo_gamma=gamma)(_logps(*POLICY), None)
    # pair 1: means -9/3 = -3 and -5/2 = -2.5
    expected = -math.log(_sigmoid(beta * (-3 - -2.5) - gamma))
    assert float(losses[1]) == pytest.approx(expected, abs=1e-12)
    assert float(chosen[1]) == pytest.approx(beta * -3) and float(rejected[1]) == pytest.approx(beta * -2.5)


def test_orpo_loss_is_nll_plus_weighted_odds_ratio():
    from modelops.tasks.preference import PreferenceLoss

    beta = 0.1
    losses, _, _ = PreferenceLoss("orpo", beta)(_logps(*POLICY), None)
    # pair 0: mean log-probs -2 (chosen) and -1.5 (rejected)
    p_c, p_r = math.exp(-2.0), math.exp(-1.5)
    log_odds = math.log(p_c / (1 - p_c)) - math.log(p_r / (1 - p_r))
    assert float(losses[0]) == pytest.approx(2.0 - beta * math.log(_sigmoid(log_odds)), abs=1e-12)


def test_pair_collator_puts_both_sides_in_one_batch_with_loss_on_responses_only():
    from modelops.tasks.preference import PairCollator

    features = [
        {"prompt_ids": [1, 5, 6], "chosen_ids": [7, 2], "rejected_ids": [8, 9, 10, 2], "length": 7},
        {"prompt_ids": [1, 4], "chosen_ids": [3, 2], "rejected_ids": [2], "length": 4},
    ]
    batch = PairCollator(pad_token_id=0)(features)
    assert batch["input_ids"].tolist() == [
        [1, 5, 6, 7, 2, 0, 0], [1, 4, 3, 2, 0, 0, 0],  # chosen sides
        [1, 5, 6, 8, 9, 10, 2], [1, 4, 2, 0, 0, 0, 0],  # rejected sides
    ]  # fmt: skip
    x = IGNORE_INDEX
    assert batch["labels"].tolist() == [
        [x, x, x, 7, 2, x, x], [x, x, 3, 2, x, x, x], [x, x, x, 8, 9, 10, 2], [x, x, 2, x, x, x, x],
    ]  # fmt: skip
    assert batch["attention_mask"].sum(1).tolist() == [5, 4, 7, 3]
    assert batch["num_targets"] == 2 and batch["num_tokens"] == 19


def test_response_logps_sum_only_response_tokens():
    import torch

    from modelops.tasks.preference import PairCollator, response_logps

    vocab, width = 11, 5
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 7, width, generator=generator)
    head = torch.nn.Linear(width, vocab, bias=False)
    logits = head(hidden).detach()

    class Fixed(torch.nn.Module):
        """Fixed hidden states through a real head: the log-probs come from hidden states, not full logits."""

        def __init__(self):
            super().__init__()
            self.head = head

        def get_output_embeddings(self):
            return self.head

        def forward(self, input_ids, attention_mask, use_cache):
            return type("Out", (), {"logits": self.head(hidden)})()

    features = [
        {"prompt_ids": [1, 5, 6], "chosen_ids": [7, 2], "rejected_ids": [8, 9, 10, 2], "length": 7},
        {"prompt_ids": [1, 4], "chosen_ids": [3, 2], "rejected_ids": [2], "length": 4},
    ]
    batch = PairCollator(pad_token_id=0)(features)
    with torch.no_grad():
        scores = response_logps(Fixed(), batch)
    log_probs = logits.log_softmax(-1)
    # row 0 (pair 0, chosen): tokens 7 at position 3 and 2 at position 4, predicted from positions 2 and 3
    assert float(scores.chosen[0]) == pytest.approx(float(log_probs[0, 2, 7] + log_probs[0, 3, 2]), abs=1e-5)
    assert float(scores.rejected[1]) == pytest.approx(float(log_probs[3, 1, 2]), abs=1e-5)
    assert scores.chosen_tokens.tolist() == [2, 2] and scores.rejected_tokens.tolist() == [4, 1]


def test_long_pairs_lose_prompt_tokens_from_the_left_first_then_responses():
    from modelops.tasks.preference import fit_pair

    prompt, chosen, rejected = list(range(10)), [20, 21, 22], [30, 31]
    assert fit_pair(prompt, chosen, rejected, 20) == (prompt, chosen, rejected, False, False)
    assert fit_pair(prompt, chosen, rejected, 8) == ([5, 6, 7, 8, 9], chosen, rejected, True, False)
    # the responses alone leave room for no prompt but its last token: they are cut too
    assert fit_pair(prompt, chosen, rejected, 3) == ([9], [20, 21], [30, 31], True, True)


def _tokenizer():
    from modelops.models.loading import load_tokenizer

    return load_tokenizer("tiny-llama")


def test_tokenize_pairs_text_and_chat_rows_and_counts_what_it_cut():
    import datasets

    from modelops.tasks.preference import tokenize_pairs

    tokenizer = _tokenizer()
    rows = [{"prompt": "a" * 30, "chosen": "yes", "rejected": "no"}, {"prompt": "hi", "chosen": "ok", "rejected": "k"}]
    with pytest.warns(UserWarning, match=r"1 of 2 pairs are longer than max_length=12: their prompts were cut"):
        tokenized = tokenize_pairs(datasets.Dataset.from_list(rows), tokenizer, max_length=12)
    first = tokenized[0]
    assert first["chosen_ids"] == tokenizer("yes", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(first["prompt_ids"]) + len(first["chosen_ids"]) == 12 == first["length"]
    assert tokenized[1]["prompt_ids"] == tokenizer("hi")["input_ids"]  # BOS + prompt, uncut
    chat = [{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "ok"}],
             "rejected": [{"role": "assistant", "content": "no"}]}]  # fmt: skip
    row = tokenize_pairs(datasets.Dataset.from_list(chat), tokenizer, max_length=64)[0]
    prompt = tokenizer.apply_chat_template(chat[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert (
        tokenizer.decode(row["prompt_ids"]) == tokenizer.bos_token + prompt
        and tokenizer.decode(row["chosen_ids"]) == "ok</s>"
    )
    with pytest.raises(DataError, match=r"row 1: prompt \d+ \+ response \d+ tokens exceed max_length=12"):
        tokenize_pairs(datasets.Dataset.from_list(rows), tokenizer, max_length=12, too_long="reject")


def test_tokenize_pairs_skip_drops_the_long_pairs_and_says_so():
    import datasets

    from modelops.tasks.preference import tokenize_pairs

    tokenizer = _tokenizer()
    rows = [{"prompt": "a" * 30, "chosen": "yes", "rejected": "no"}, {"prompt": "hi", "chosen": "ok", "rejected": "k"}]
    with pytest.warns(UserWarning, match=r"1 of 2 pairs are longer than max_length=12: skipped"):
        tokenized = tokenize_pairs(datasets.Dataset.from_list(rows), tokenizer, max_length=12, too_long="skip")
    assert len(tokenized) == 1 and tokenized[0]["prompt_ids"] == tokenizer("hi")["input_ids"]
    with pytest.raises(DataError, match=r"no pair left after tokenisation: all 1 pairs .*trainer.too_long='skip'"):
        tokenize_pairs(datasets.Dataset.from_list(rows[:1]), tokenizer, max_length=12, too_long="skip")
    with pytest.raises(DataError, match=r"^train.jsonl:7: prompt \d+ \+ response"):
        tokenize_pairs(
            datasets.Dataset.from_list(rows), tokenizer, 12, "reject", lambda idx: [f"train.jsonl:{i + 7}" for i in idx]
        )


def test_objective_options_are_checked_with_their_key():
    for options, message in [
        ({"objective": "kto"}, r"trainer.objective: must be one of \['sft', 'dpo', 'ipo', 'simpo', 'orpo', 'grpo'\]"),
        ({"beta": 0.0}, r"trainer.beta: must be > 0"),
        ({"label_smoothing": 0.5}, r"trainer.label_smoothing: must be in \[0, 0.5\)"),
        ({"simpo_gamma": -1.0}, r"trainer.simpo_gamma: must be >= 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(**options)


def test_reference_is_the_initial_model_for_full_and_lora_fine_tuning():
    import torch
    from peft import LoraConfig, get_peft_model

    from modelops.models.loading import load_model
    from modelops.models.spec import ModelSpec
    from modelops.tasks.preference import PairCollator, Reference, response_logps

    base = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=64), seed=0)
    initial = copy.deepcopy(base).eval()
    batch = PairCollator(0)([{"prompt_ids": [1, 70, 71], "chosen_ids": [72, 2], "rejected_ids": [73, 74, 2]}])
    expected = response_logps(initial, batch)

    full = Reference(base, peft=False)
    with torch.no_grad():
        for param in base.parameters():  # the policy trains on; the frozen copy does not move
            param.add_(0.1)
    assert not any(p.requires_grad for p in full.frozen.parameters())
    assert torch.equal(full.logps(base, batch).chosen, expected.chosen)
    assert not torch.allclose(response_logps(base.eval(), batch).chosen, expected.chosen)

    lora = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    policy = get_peft_model(copy.deepcopy(initial), lora)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:  # an adapter that has learned something
                param.add_(0.5)
    reference = Reference(policy, peft=True)
    assert reference.frozen is None  # no second copy under LoRA
    policy.train()
    assert torch.allclose(reference.logps(policy, batch).rejected, expected.rejected, atol=1e-6)
    assert policy.training  # the policy's mode is restored
    assert not torch.allclose(response_logps(policy.eval(), batch).rejected, expected.rejected)


class _Pairs:
    """A stand-in with the Dataset surface check_task reads (the format decides)."""

    def __init__(self, fmt: str):
        self.format, self.split_names = fmt, ["train"]

    def __contains__(self, split):
        return split == "train"

    def __getitem__(self, split):
        return [None]


def test_preference_objectives_refuse_classifiers_other_data_and_packing():
    from modelops.models.spec import ModelSpec
    from modelops.train.data import check_task

    lm = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=64)
    cls = ModelSpec(name_or_path="minilm", task="seq_cls", max_length=64)
    with pytest.raises(ConfigError, match=r"trainer.objective=dpo: preference tuning is for causal LMs"):
        check_task(cls, _Pairs("preference"), TrainConfig(objective="dpo"))
    with pytest.raises(ConfigError, match=r"trainer.objective=orpo trains on preference pairs .* not 'chat' data"):
        check_task(lm, _Pairs("chat"), TrainConfig(objective="orpo"))
    with pytest.raises(ConfigError, match=r"trainer.batching=packing: not with trainer.objective=simpo"):
        check_task(lm, _Pairs("preference"), TrainConfig(objective="simpo", batching="packing"))
    with pytest.raises(ConfigError, match=r"trainer.truncation_side='right': not with trainer.objective=dpo"):
        check_task(lm, _Pairs("preference"), TrainConfig(objective="dpo", truncation_side="right"))
    check_task(lm, _Pairs("preference"), TrainConfig(objective="dpo"))  # fine
    check_task(lm, _Pairs("preference"), TrainConfig(objective="sft"))  # SFT on the chosen side


def test_a_step_split_into_micro_batches_gives_the_same_gradients():
    """Pair losses are summed per micro-batch and divided by the step's pairs: 1x4 and 2x2 agree (padding too)."""
    import torch

    from modelops.models.loading import load_model
    from modelops.models.spec import ModelSpec
    from modelops.tasks.preference import PairCollator, preference_step

    model = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=64), seed=0).eval()
    pairs = [{"prompt_ids": [1, *range(70, 70 + n)], "chosen_ids": [80 + n, 2], "rejected_ids": [90] * n + [2]}
             for n in (1, 7, 3, 12)]  # fmt: skip
    collate = PairCollator(0)

    def gradients(windows):
        step = preference_step(model, False, "dpo", 0.1, 0.0, 0.5)
        with torch.no_grad():
            for param in step.reference.frozen.parameters():  # a reference apart from the policy
                param.mul_(0.9)
        model.zero_grad()
        for window in windows:
            (step(model, collate(window)) / len(pairs)).backward()
        return [p.grad.clone() for p in model.parameters()]

    whole, split = gradients([pairs]), gradients([pairs[:2], pairs[2:]])
    assert max(float((a - b).abs().max()) for a, b in zip(whole, split, strict=True)) < 1e-6
    assert max(float(g.abs().max()) for g in whole) > 1e-4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+recipe=lora_small", "trainer.objective=dpo"], "trainer.objective=dpo: preference tuning is for causal LMs"),
        (["+recipe=sft_tiny", "trainer.objective=ipo"], "trainer.objective=ipo trains on preference pairs"),
        (["+recipe=dpo_tiny", "trainer.objective=kto"], "trainer.objective: must be one of"),
    ],
)
def test_the_cli_names_trainer_objective_and_exits_2(tmp_path, overrides, message):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    env.pop("MODELOPS_DEBUG", None)
    command = [sys.executable, "-m", "modelops", *overrides, "stages=[train]"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_sft_on_preference_data_trains_on_the_chosen_answers_and_dpo_on_pairs(tmp_path):
    from modelops.data.dataset import Dataset
    from modelops.models.spec import ModelSpec
    from modelops.train.data import setup_data

    rows = [{"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "7"}]
    dataset = Dataset.from_records(rows, format="preference")
    tokenizer, spec = _tokenizer(), ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=64)
    sft = setup_data(dataset, tokenizer, spec, TrainConfig(cache_dir=str(tmp_path), preview_examples=0))
    batch = next(iter(sft.loader))
    trained = [t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "5</s>"
    assert tokenizer.decode(batch["input_ids"][0].tolist()) == "<s>What is 2 + 3?5</s>"
    pairs = setup_data(dataset, tokenizer, spec, TrainConfig(objective="dpo", cache_dir=str(tmp_path)))
    batch = next(iter(pairs.loader))
    assert batch["input_ids"].shape[0] == 2 and batch["num_targets"] == 1  # both sides, one pair
    assert "[[chosen: 5</s>]]" in pairs.preview and "[[rejected: 7</s>]]" in pairs.preview


@pytest.mark.parametrize("objective", ["ipo", "simpo", "orpo"])
def test_every_objective_trains_chat_pairs_and_widens_the_margin(tmp_path, objective):
    import json

    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import preference_demo
    from modelops.models.spec import ModelSpec
    from modelops.train.loop import train

    pairs = preference_demo(n=32, seed=1, validation=0, test=0, chat=True)["train"]
    dataset = Dataset({"train": pairs}, format="preference")
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=128)
    config = TrainConfig(objective=objective, beta=2.0 if objective == "simpo" else 0.1, max_steps=12, batch_size=8,
                         learning_rate=2e-3, warmup_ratio=0.0, log_every=4, checkpoint_every=None,
                         cache_dir=str(tmp_path / "cache"), preview_examples=0)  # fmt: skip
    train(spec, dataset, config, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
    if objective == "orpo":  # its NLL term makes the chosen answers more likely
        assert rows[-1]["logps/chosen"] > rows[0]["logps/chosen"]
    info = json.loads((tmp_path / "run" / "model" / "modelops.json").read_text())
    assert info["objective"] == objective


def test_dpo_validation_during_training_keeps_the_best_reward_accuracy(tmp_path):
    import json

    from modelops.data.demo_formats import preference_demo
    from modelops.models.spec import ModelSpec
    from modelops.train.loop import train

    dataset = preference_demo(n=60, seed=4, validation=0.2, test=0)
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=64)
    config = TrainConfig(objective="dpo", max_steps=9, batch_size=8, learning_rate=2e-3, warmup_ratio=0.0,
                         log_every=3, eval_every=3, eval_metric="reward_accuracy", keep_best=True,
                         checkpoint_every=None, cache_dir=str(tmp_path / "cache"), preview_examples=0)  # fmt: skip
    result = train(spec, dataset, config, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_reward_accuracy" in r]
    assert [r["step"] for r in evals] == [3, 6, 9]
    accuracies = [r["eval_reward_accuracy"] for r in evals]
    best = accuracies.index(max(accuracies))
    assert result.best_metric == max(accuracies) and result.best_step == evals[best]["step"]
    # 12 validation pairs: each accuracy is a count of pairs out of 12, the margin their mean
    assert all(abs(a * 12 - round(a * 12)) < 1e-9 for a in accuracies)
    assert all("eval_loss" in r and "eval_reward_margin" in r for r in evals)
    message = r"trainer.eval_metric: 'perplexity' is not tracked for causal_lm with trainer.objective=dpo"
    with pytest.raises(ConfigError, match=message):
        train(spec, dataset, TrainConfig(objective="dpo", eval_every=3, eval_metric="perplexity"), tmp_path / "x")
