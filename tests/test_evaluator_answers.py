"""The Evaluator's answer extraction, answer-only LM scores, few-shot prompts and base -> tuned deltas, on the tiny
causal LM, against hand-written references."""

from __future__ import annotations

import json
import math

import pytest
import torch

from modelops.data.dataset import Dataset
from modelops.errors import ConfigError
from modelops.evaluate import Evaluator
from modelops.evaluate.compare import paired_deltas
from modelops.evaluate.results import EvalResults, comparison_table

GSM8K_ROWS = [
    {"prompt": "Natalia sold 48 clips in April and half as many in May. How many altogether?\n",
     "completion": "In May she sold 48/2 = 24.\nAltogether 48+24 = 72.\n#### 72"},
    {"prompt": "A shop sells 1000 pens a day. How many in 1 day?\n", "completion": "It sells 1,000.\n#### 1,000"},
    {"prompt": "Half of 7?\n", "completion": "7/2 = 3.50\n#### 3.50"},
    {"prompt": "What colour is the sky?\n", "completion": "Blue."},  # no #### marker: nothing to extract
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    return load_model(ModelSpec("tiny-llama", task="causal_lm")).eval(), load_tokenizer("tiny-llama")


def _gsm8k(split: str = "test") -> Dataset:
    return Dataset.from_records(GSM8K_ROWS, split=split, format="completion")


def test_gsm8k_answers_are_extracted_by_default_and_unextractable_references_listed(tmp_path):
    evaluator = Evaluator()  # filters: auto
    references = [row["completion"] for row in GSM8K_ROWS]
    outputs = ["Half of 48 is 24, so 72 in all. #### 72", "72", "#### 3.5", "#### 1"]
    with pytest.warns(UserWarning, match=r"1 reference\(s\) gave no answer .*rows \[3\]"):
        values, rows = evaluator._score_generations(
            [_exact_match()], ["p"] * 4, outputs, references
        )  # fmt: skip
    # Row 0 matches; row 1 has no #### in the generation (0); row 2 3.5 == 3.50; row 3 is not scored.
    assert values["exact_match"] == pytest.approx(2 / 3)
    assert [r["extracted_reference"] for r in rows] == ["72", "1000", "3.5", None]
    assert [r["extracted_prediction"] for r in rows] == ["72", None, "3.5", "1"]
    assert [r["exact_match"] for r in rows] == [True, False, True, None]
    assert values["extraction"]["unextractable_rows"] == [3]
    results = EvalResults({"exact_match": values["exact_match"]}, "m", "test", 4, rows)
    results.save(tmp_path)
    saved = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert saved[0]["prediction"] == outputs[0] and saved[0]["extracted_prediction"] == "72"


def test_filters_from_config_last_number():
    evaluator = Evaluator(filters=["last_number", "numeric"])
    values, rows = evaluator._score_generations([_exact_match()], ["p"], ["so it is 1,000 pens"], ["1000"])
    assert values["exact_match"] == 1.0 and rows[0]["extracted_prediction"] == "1000"


def _exact_match():
    return Evaluator(metrics=["exact_match"]).metrics[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluator.filters=[{regex: '(unclosed'}]", r"evaluator\.filters\.0\.regex: pattern '\(unclosed' does not"),
        ("evaluator.filters=[{regex: 'answer: [0-9]+'}]", r"evaluator\.filters\.0\.regex: .* has no group"),
        ("evaluator.match=maths", r"evaluator\.match: 'maths' is not one of"),
    ],
)
def test_bad_filter_config_is_a_config_error_naming_the_key(override, message):
    from modelops.config.build import compose, instantiate

    cfg = compose(["evaluator=generative", override])
    with pytest.raises(ConfigError, match=message):
        instantiate(cfg.evaluator, "evaluator")


def test_loss_is_scored_on_the_answer_tokens_by_default(tiny):
    model, tokenizer = tiny
    rows = [{"prompt": "old stone bridge over the", "completion": " river north"},
            {"prompt": "a small green", "completion": " city of the south"}]  # fmt: skip
    data = Dataset.from_records(rows, split="test", format="completion")
    answer = Evaluator(metrics=["loss", "perplexity", "bits_per_byte"]).evaluate(tiny, data)
    whole = Evaluator(metrics=["loss"], score_on="all").evaluate(tiny, data)
    # By hand, as training tokenises: BOS, prompt and completion+EOS each tokenised apart; NLL of the latter.
    total, count, scored_bytes = 0.0, 0, 0
    for row in rows:
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        target = tokenizer(row["completion"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids = [tokenizer.bos_token_id, *prompt, *target]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        for k, token in enumerate(target):
            total -= float(logprobs[len(ids) - len(target) + k - 1, token])
        count += len(target)
        scored_bytes += len(tokenizer.decode(target).encode())
    assert answer.loss == pytest.approx(total / count, rel=1e-4)
    assert answer.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)
    assert answer.bits_per_byte == pytest.approx(total / math.log(2) / scored_bytes, rel=1e-4)
    assert answer.details["scored_on"] == "answer" and whole.details["scored_on"] == "all"
    assert whole.loss != pytest.approx(answer.loss, rel=1e-3)
    assert "scored on: answer tokens" in comparison_table({"base": answer, "fine_tuned": answer})


def test_fewshot_prompts_come_from_train_seeded_and_never_the_row(tiny):
    from modelops.evaluate.prompts import generative_prompts
    from modelops.models.templates import prompt_and_reference

    _, tokenizer = tiny
    rows = [{"prompt": f"Q{i}: {i}+1?\n", "completion": f"#### {i + 1}"} for i in range(8)]
    data = Dataset.from_records(rows, split="train", format="completion")
    table = data["train"]
    first, refs = generative_prompts(table, data, "train", tokenizer, 3, seed=0)
    again, _ = generative_prompts(table, data, "train", tokenizer, 3, seed=0)
    other, _ = generative_prompts(table, data, "train", tokenizer, 3, seed=1)
    assert first == again and first != other
    assert refs == [row["completion"] for row in rows]
    for row, prompt in zip(rows, first, strict=True):
        own = prompt_and_reference(row, "completion", tokenizer)[0]
        assert prompt.endswith(own) and prompt.count("Q") == 4  # three shots and the row
        assert own not in prompt[: -len(own)]  # the row is never its own shot
        shots = prompt[: -len(own)].split("\n\n")[:-1]
        assert all(shot.split(":")[0] in {f"Q{i}" for i in range(8)} for shot in shots)


def test_fewshot_with_a_chat_template_is_multiturn(tiny):
    from modelops.evaluate.prompts import generative_prompts

    _, tokenizer = tiny
    if not tokenizer.chat_template:
        pytest.skip("the tiny tokenizer has no chat template")
    rows = [{"instruction": f"say {i}", "output": str(i)} for i in range(4)]
    data = Dataset.from_records(rows, split="train", format="instruction")
    prompts, _ = generative_prompts(data["train"], data, "train", tokenizer, 2, seed=0)
    assert prompts[0].count("say") == 3


def test_paired_deltas_of_accuracy_and_exact_match():
    def result(correct):
        rows = [{"text": "t", "label": "a", "prediction": "a" if ok else "b"} for ok in correct]
        return EvalResults({"accuracy": sum(correct) / len(correct)}, "m", "test", len(correct), rows)

    base, tuned = result([0] * 40 + [1] * 10), result([1] * 30 + [0] * 10 + [1] * 10)
    deltas = paired_deltas(base, tuned, resamples=2000, seed=0)
    assert set(deltas) == {"accuracy"}
    assert deltas["accuracy"]["delta"] == pytest.approx(0.6) and not deltas["accuracy"]["includes_zero"]
    table = comparison_table({"base": base, "fine_tuned": tuned}, deltas)
    # Header, rule, then the rows (one rich table helper since this test was written).
    assert "p=" in table and "[+" in table and " ~" not in table.splitlines()[2]
    noise = paired_deltas(base, result([1] + [0] * 39 + [1] * 10), resamples=2000, seed=0)
    assert noise["accuracy"]["includes_zero"]
    assert comparison_table({"base": base, "fine_tuned": base}, noise).splitlines()[2].endswith("~")


def test_preview_shows_the_exact_evaluation_prompt():
    rows = [{"prompt": f"Q{i}?\n", "completion": f"#### {i}"} for i in range(4)]
    data = Dataset.from_records(rows, split="train", format="completion")
    text = Evaluator(num_fewshot=2).preview("tiny-llama", data)
    assert "2-shot" in text and "Q0?\n\n--- reference:\n#### 0" in text and text.count("Q") == 3
    assert Evaluator(metrics=["loss"]).preview("tiny-llama", data) is None


def test_paired_deltas_of_reward_metrics_from_preference_rows():
    def result(shift):
        rows = [{"prompt": "p", "logp_chosen": -1.0 + shift * i, "logp_rejected": -2.0, "ref_logp_chosen": -1.5,
                 "ref_logp_rejected": -1.0} for i in range(6)]  # fmt: skip
        return EvalResults({"reward_accuracy": 0.0, "reward_margin": 0.0}, "m", "test", 6, rows)

    deltas = paired_deltas(result(0.0), result(1.0), resamples=500, seed=0)
    # Margins by hand: (c - ref_c) - (r - ref_r) = (-1 + i + 1.5) - (-2 + 1) = 1.5 + i; base i = 0 -> 1.5.
    assert deltas["reward_margin"]["base"] == pytest.approx(1.5)
    assert deltas["reward_margin"]["delta"] == pytest.approx(2.5) and "mcnemar_p" not in deltas["reward_margin"]
    assert deltas["reward_accuracy"]["delta"] == 0.0 and deltas["reward_accuracy"]["mcnemar_p"] == 1.0
