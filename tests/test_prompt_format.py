"""The `prompt` format (GRPO's data): prompts as text or chat messages, other columns kept for the rewards.

Loaded from JSONL, CSV, Parquet and saved HF datasets; detected when only a prompt is there; checked with errors
naming file and line; split, saved and loaded back; sanitized with the extra columns intact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelops.data.arithmetic import arithmetic_demo, arithmetic_rows
from modelops.data.dataset import Dataset
from modelops.errors import ConfigError, DataError
from modelops.sanitize import DatasetSanitizer

LONG = "Consider the following long word problem. " * 400  # ~17k characters: nothing truncates rows

ROWS = [
    {"prompt": "Question: What is 3 + 4?\nAnswer:", "answer": "7", "source": "gen", "difficulty": 1},
    {"prompt": "Natalia sold clips to 48 of her friends in April... How many clips?", "answer": "72",
     "source": "gsm8k", "difficulty": 3},
    {"prompt": LONG + "What is 10 - 15?", "answer": "-5", "source": "gen", "difficulty": 2},
    {"prompt": "Résumé : combien font 2 × 3 ?", "answer": "6", "source": "fr", "difficulty": 1},
]  # fmt: skip


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


CHAT_ROWS = [
    {"prompt": [{"role": "system", "content": "Answer with a number."}, _user("What is 3 + 4?")], "answer": "7"},
    {"prompt": [_user("What is 2 + 2?"), {"role": "assistant", "content": "4"}, _user("And times 3?")],
     "answer": "12"},
]  # fmt: skip


def _jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def _raises(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    return str(info.value)


# -- loading and detection ----------------------------------------------------------------------


def test_jsonl_with_only_a_prompt_and_other_columns_is_prompt_format(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{k: v for k, v in row.items() if k != "answer"} for row in ROWS])
    dataset = Dataset.from_jsonl(path)
    assert dataset.format == "prompt"
    assert dataset["train"].to_list()[2]["prompt"] == LONG + "What is 10 - 15?"
    assert dataset["train"].column_names == ["prompt", "source", "difficulty"]
    questions = _jsonl(tmp_path / "q.jsonl", [{"question": "What is 1 + 1?", "id": 3}])  # a usual name of prompt
    assert Dataset.from_jsonl(questions)["train"].to_list() == [{"prompt": "What is 1 + 1?", "id": 3}]


def test_prompt_with_answer_is_completion_unless_format_prompt_is_given(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", ROWS)
    assert Dataset.from_jsonl(path).format == "completion"  # `answer` is a usual name of `completion`
    dataset = Dataset.from_jsonl(path, format="prompt")
    assert dataset.format == "prompt"
    assert dataset["train"].to_list() == ROWS


def test_chat_prompts_load_with_their_messages(tmp_path):
    path = _jsonl(tmp_path / "chat.jsonl", CHAT_ROWS)
    dataset = Dataset.from_jsonl(path, format="prompt")
    assert dataset["train"].to_list() == CHAT_ROWS
    only_prompts = _jsonl(tmp_path / "only.jsonl", [{"prompt": row["prompt"], "id": i} for i, row in
                                                    enumerate(CHAT_ROWS)])  # fmt: skip
    assert Dataset.from_jsonl(only_prompts).format == "prompt"


def test_csv_with_odd_column_names_mapped(tmp_path):
    import csv

    path = tmp_path / "problems.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["Problem Statement", "Final Answer", "topic"])
        writer.writeheader()
        for row in ROWS:
            writer.writerow({"Problem Statement": row["prompt"], "Final Answer": row["answer"], "topic": row["source"]})
    dataset = Dataset.from_csv(path, format="prompt", columns={"prompt": "Problem Statement"})
    rows = dataset["train"].to_list()
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in ROWS]
    assert [str(r["Final Answer"]) for r in rows] == [r["answer"] for r in ROWS]  # kept (CSV may read ints)
    assert [r["topic"] for r in rows] == [r["source"] for r in ROWS]


def test_parquet_and_saved_hf_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_list(CHAT_ROWS).to_parquet(str(tmp_path / "chat.parquet"))
    assert Dataset.from_parquet(tmp_path / "chat.parquet", format="prompt")["train"].to_list() == CHAT_ROWS
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:2])}
    ).save_to_disk(str(tmp_path / "hf"))
    dataset = Dataset.from_hf(tmp_path / "hf", format="prompt")
    assert dataset.split_names == ["train", "test"] and dataset["test"].to_list() == ROWS[:2]


def test_several_split_files_split_save_and_load_back(tmp_path):
    rows = arithmetic_rows(60, seed=1)
    train = _jsonl(tmp_path / "train.jsonl", rows[:50])
    test = _jsonl(tmp_path / "test.jsonl", rows[50:])
    dataset = Dataset.from_files(format="prompt", train=train, test=test, split={"validation": 0.2, "seed": 0})
    assert dataset.format == "prompt"
    assert {name: len(dataset[name]) for name in dataset.split_names} == {"train": 40, "test": 10, "validation": 10}
    saved = dataset.save_to_disk(tmp_path / "saved")
    again = Dataset.load_from_disk(saved)
    assert again.format == "prompt"
    for name in dataset.split_names:
        assert again[name].to_list() == dataset[name].to_list()
    assert set(again["validation"].column_names) == {"prompt", "answer"}


# -- bad input: file and line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"answer": "7"}, "missing required field 'prompt' for format prompt"),
        ({"prompt": None, "answer": "7"}, "missing required field 'prompt'"),
        ({"prompt": "  \n", "answer": "7"}, "field 'prompt' is empty"),
        ({"prompt": 42, "answer": "7"}, "field 'prompt': expected a string or a list of messages, got integer"),
        ({"prompt": {"role": "user"}, "answer": "7"}, "expected a string or a list of messages, got object"),
    ],
)
def test_bad_text_prompt_names_file_and_line(tmp_path, bad, words):
    path = _jsonl(tmp_path / "p.jsonl", [ROWS[0], ROWS[1], bad, ROWS[3]])
    message = _raises(words, Dataset.from_jsonl, path, format="prompt")
    assert message.startswith(f"{path}:3:")
    skipped = Dataset.from_jsonl(path, format="prompt", on_error="skip")
    assert len(skipped["train"]) == 3


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ([], "field 'prompt': the list is empty"),
        ([{"role": "bot", "content": "hi"}], r"field 'prompt\[0\]'.role: 'bot' is not one of"),
        ([_user("hi"), {"role": "user", "content": 3}], r"field 'prompt\[1\]'.content: expected a string"),
        (["hi"], r"field 'prompt\[0\]': expected an object with role and content"),
        ([_user("2 + 2?"), {"role": "assistant", "content": "4"}], "the last turn is the assistant's"),
        ("What is 3 + 4?", "a text prompt here, but chat prompts in earlier rows"),
    ],
)
def test_bad_chat_prompt_names_file_and_line(tmp_path, bad, words):
    path = _jsonl(tmp_path / "chat.jsonl", [*CHAT_ROWS, {"prompt": bad, "answer": "1"}])
    message = _raises(words, Dataset.from_jsonl, path, format="prompt")
    assert message.startswith(f"{path}:3:")


def test_bad_csv_row_names_its_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt,answer\n"What is 1 + 1?",2\n"",3\n"What is 2 + 2?",4\n', encoding="utf-8")
    message = _raises("field 'prompt'", Dataset.from_csv, path, format="prompt")
    assert message.startswith(f"{path}:3:")


def test_chat_prompt_ending_on_the_assistant_is_refused_from_parquet(tmp_path):
    import datasets

    rows = [*CHAT_ROWS, {"prompt": [_user("2 + 2?"), {"role": "assistant", "content": "4"}], "answer": "4"}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "bad.parquet"))
    message = _raises("the last turn is the assistant's", Dataset.from_parquet, tmp_path / "bad.parquet",
                      format="prompt")  # fmt: skip
    assert str(tmp_path / "bad.parquet") in message and "3" in message


# -- sanitizing ---------------------------------------------------------------------------------


def _sanitize(rows: list[dict], steps) -> tuple[list[dict], dict]:
    sanitizer = DatasetSanitizer(steps=steps)
    clean = sanitizer.sanitize(Dataset.from_records(rows, format="prompt"))
    entries = {entry["step"]: entry for entry in sanitizer.report.splits["train"]["steps"]}
    return clean["train"].to_list(), entries


def test_normalize_and_pii_rewrite_the_prompt_and_keep_the_answer():
    rows = [{"prompt": " What\u00a0is  2 + 2?  Mail ann@example.com ", "answer": " 4 ", "source": "x"}]
    out, entries = _sanitize(rows, ["normalize", {"name": "pii", "action": "replace"}])
    assert out == [{"prompt": "What is 2 + 2? Mail <EMAIL>", "answer": " 4 ", "source": "x"}]
    assert entries["normalize"]["modified"] == 1 and entries["pii"]["modified"] == 1
    chat = [{"prompt": [_user("Call 415-555-0134,\u200b what is 3 + 3?")], "answer": "6"}]
    out, _ = _sanitize(chat, ["normalize", {"name": "pii", "action": "replace"}])
    assert out == [{"prompt": [_user("Call <PHONE>, what is 3 + 3?")], "answer": "6"}]


def test_exact_dedup_drops_repeated_prompts_and_reports_conflicting_answers():
    rows = [
        {"prompt": "What is 2 + 2?", "answer": "4"},
        {"prompt": "what is  2 + 2?", "answer": "4"},  # the same after case/whitespace: a duplicate
        {"prompt": "What is 5 + 5?", "answer": "10"},
        {"prompt": "What is 5 + 5?", "answer": "11"},  # same prompt, another answer: a conflict
    ]
    out, entries = _sanitize(rows, [{"name": "exact_dedup", "on_conflict": "report"}])
    assert [r["answer"] for r in out] == ["4", "10", "11"]
    assert entries["exact_dedup"]["reasons"] == {"duplicate": 1}
    assert entries["exact_dedup"]["conflicting_rows"] == 2 and entries["exact_dedup"]["rows"] == [2, 3]
    out, _ = _sanitize(rows, [{"name": "exact_dedup", "on_conflict": "drop"}])
    assert [r["answer"] for r in out] == ["4"]


def test_default_sanitizer_runs_on_prompt_data_and_keeps_every_column():
    dataset = arithmetic_demo(n=200, seed=0)
    clean = DatasetSanitizer().sanitize(dataset)
    assert clean.format == "prompt"
    for name in dataset.split_names:
        assert clean[name].column_names == ["prompt", "answer"]
        assert set(map(json.dumps, clean[name].to_list())) <= set(map(json.dumps, dataset[name].to_list()))
    assert len(clean["train"]) > 100


def test_drop_empty_refuses_prompts_emptied_by_normalisation():
    rows = [{"prompt": "\u200b\u200b", "answer": "1"}, {"prompt": "What is 1 + 1?", "answer": "2"}]
    out, entries = _sanitize(rows, ["normalize", "drop_empty"])
    assert out == [rows[1]] and entries["drop_empty"]["reasons"] == {"empty": 1}


# -- the arithmetic generator -------------------------------------------------------------------


def test_arithmetic_rows_reuse_the_lm_eval_task_rows_and_agree_across_styles():
    from modelops.evaluate.harness import arithmetic_rows as harness_rows

    assert arithmetic_rows(30, seed=4, style="gsm8k") == harness_rows(30, 4)
    prompts = arithmetic_rows(30, seed=4)
    warmup = arithmetic_rows(30, seed=4, style="completion")
    for prompt, sft, gsm in zip(prompts, warmup, harness_rows(30, 4), strict=True):
        assert prompt["prompt"] == sft["prompt"] == f"Question: {gsm['question']}\nAnswer:"
        assert sft["completion"].endswith(f"#### {prompt['answer']}")
        assert gsm["answer"].endswith(f"#### {prompt['answer']}")
        assert int(prompt["answer"]) == eval(gsm["question"][len("What is ") : -1])  # our own sums
    with pytest.raises(ConfigError, match="style"):
        arithmetic_rows(3, style="chat")


# -- from config ----------------------------------------------------------------------------------


def test_dataset_format_prompt_from_config_keeps_the_answer(tmp_path):
    from omegaconf import OmegaConf

    from modelops.config.construct import construct
    from modelops.config.validate import check_node

    conf = Path(__file__).resolve().parents[1] / "conf" / "dataset"
    train = _jsonl(tmp_path / "train.jsonl", ROWS)
    node = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(conf / "files.yaml"),
                                                  {"train": str(train), "format": "prompt"}))  # fmt: skip
    check_node("dataset", node)
    dataset = construct(node, "dataset")
    assert dataset.format == "prompt" and dataset["train"].to_list() == ROWS

    for style in ("prompt", "completion"):
        node = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(conf / "arithmetic.yaml"), {"style": style}))
        check_node("dataset", node)
        dataset = construct(node, "dataset")
        assert dataset.format == style and dataset.split_names == ["train", "validation", "test"]
