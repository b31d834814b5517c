"""evaluator=lm_eval: lm-evaluation-harness on the shipped local task, offline, against our own Evaluator on the same
prompts and filters; the harness's GSM8K filter and exact_match against ours on crafted answers."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("lm_eval")

from modelops.data.answers import GSM8K_FILTERS, build_filters, extract_and_match
from modelops.data.dataset import Dataset
from modelops.evaluate import Evaluator
from modelops.evaluate.harness import ARITHMETIC_TASK, HarnessEvaluator, mlflow_safe, write_arithmetic_task

CRAFTED = [
    ("so 3 + 4 = 7\n#### 7", "3 + 4 = 7\n#### 7"),
    ("#### 1,000", "x\n#### 1000"),
    ("#### $12.", "#### 12"),  # strict-match wants a digit right after "#### "
    ("#### 12.", "#### 12"),
    ("The answer is 7", "#### 7"),
    ("#### 8 and #### 7", "#### 7"),
    ("#### -3", "#### -3"),
    ("#### 5", "#### 6"),
]


def test_our_gsm8k_filter_scores_like_the_harness_strict_match():
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    filtered = RegexFilter(r"#### (\-?[0-9\.\,]+)").apply([[resp] for resp, _ in CRAFTED], None)
    theirs = [
        exact_match_hf_evaluate([f[0]], [target], regexes_to_ignore=[",", "\\$", "(?s).*#### ", "\\.$"],
                                ignore_case=True)["exact_match"]
        for f, (_, target) in zip(filtered, CRAFTED, strict=True)
    ]  # fmt: skip
    filters = build_filters(GSM8K_FILTERS)
    ours = [float(extract_and_match(filters, resp, target).match) for resp, target in CRAFTED]
    assert ours == theirs == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]


def test_mlflow_safe_names():
    assert mlflow_safe("gsm8k.exact_match.strict-match") == "gsm8k.exact_match.strict-match"
    assert mlflow_safe("mmlu.acc,none[0]") == "mmlu.acc_none_0_"


@pytest.mark.slow
def test_harness_on_the_shipped_task_equals_our_evaluator(tmp_path):
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1"  # nothing may be fetched
    limit = 6
    harness = HarnessEvaluator([ARITHMETIC_TASK], limit=limit, batch_size=4, task_dir=str(tmp_path / "tasks"))
    theirs = harness.evaluate("tiny-llama")
    # The same rows through our Evaluator: the task's prompt, its GSM8K filter (auto), its stop strings.
    import json

    rows = [json.loads(line) for line in (tmp_path / "tasks" / f"{ARITHMETIC_TASK}_test.jsonl").open()][:limit]
    data = Dataset.from_records(
        [{"prompt": f"Question: {r['question']}\nAnswer:", "completion": r["answer"]} for r in rows],
        split="test", format="completion",
    )  # fmt: skip
    ours = Evaluator(max_new_tokens=32, stop=["Question:", "\n\n"], batch_size=4).evaluate("tiny-llama", data)
    assert [r["prompt"] for r in theirs.predictions] == [r["prompt"] for r in ours.predictions]
    assert [r["prediction"] for r in theirs.predictions] == [r["prediction"] for r in ours.predictions]
    assert [None if r["extracted_prediction"] == "[invalid]" else r["extracted_prediction"]
            for r in theirs.predictions] == [r["extracted_prediction"] for r in ours.predictions]  # fmt: skip
    assert theirs.metrics == {f"{ARITHMETIC_TASK}.exact_match.strict-match": ours.exact_match}
    # Paired intervals come from the per-sample scores.
    deltas = harness.compare(theirs, theirs)
    assert deltas[f"{ARITHMETIC_TASK}.exact_match.strict-match"]["delta"] == 0.0


def test_write_arithmetic_task_answers_are_right(tmp_path):
    import json

    write_arithmetic_task(tmp_path, test_rows=20, train_rows=5)
    for line in (tmp_path / f"{ARITHMETIC_TASK}_test.jsonl").open():
        row = json.loads(line)
        a, op, b = row["question"].removeprefix("What is ").rstrip("?").split()
        assert row["answer"].endswith(f"#### {int(a) + int(b) if op == '+' else int(a) - int(b)}")


@pytest.mark.slow
def test_harness_evaluates_a_trained_adapter_without_merging(tmp_path):
    import json

    import peft
    import torch
    from accelerate import Accelerator

    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec
    from modelops.train.output import save_model

    spec = ModelSpec("tiny-llama", task="causal_lm")
    torch.manual_seed(0)
    lora = peft.LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    net = peft.get_peft_model(load_model(spec), lora)
    tasks = write_arithmetic_task(tmp_path / "tasks")  # as evaluate() writes it
    rows = [json.loads(line) for line in (tasks / f"{ARITHMETIC_TASK}_test.jsonl").open()][:3]
    data = Dataset.from_records(
        [{"prompt": f"Question: {r['question']}\nAnswer:", "completion": r["answer"]} for r in rows],
        split="test", format="completion",
    )  # fmt: skip
    model_dir = save_model(Accelerator(cpu=True), net, load_tokenizer("tiny-llama"), spec, data, tmp_path, {})
    harness = HarnessEvaluator([ARITHMETIC_TASK], batch_size=3, limit=3, task_dir=str(tasks))
    lm = harness._hflm(model_dir)
    assert isinstance(lm.model, peft.PeftModel)  # the adapter over its base, not merged into it
    assert all(not layer.merged for layer in lm.model.modules() if isinstance(layer, peft.tuners.lora.LoraLayer))
    theirs = harness.evaluate(tmp_path)  # the run directory works too
    ours = Evaluator(max_new_tokens=32, stop=["Question:", "\n\n"]).evaluate(model_dir, data)
    assert [r["prediction"] for r in theirs.predictions] == [r["prediction"] for r in ours.predictions]
