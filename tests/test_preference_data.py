"""The preference format: detection, conversions to TRL's canonical pairs, mapping, errors, and the demo."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.json as pj
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from modelops.data import demo_formats, formats
from modelops.data.dataset import Dataset
from modelops.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "dataset"
TEXT = [
    {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Capital of Peru?", "chosen": "Lima", "rejected": "Quito"},
]


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _bot(text: str) -> dict:
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "Be brief."}
CHAT = [
    {"prompt": [SYSTEM, _user("2 + 2?")], "chosen": [_bot("4")], "rejected": [_bot("5")]},
    {
        "prompt": [_user("Hi"), _bot("Hello"), _user("Capital of Peru?")],
        "chosen": [_bot("Lima")],
        "rejected": [_bot("Quito")],
    },
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _one(row: dict) -> dict:
    return Dataset.from_records([row]).to_list()[0]


# -- detection and the canonical forms -----------------------------------------------------------


@pytest.mark.parametrize("rows", [TEXT, CHAT], ids=["text", "chat"])
def test_pairs_are_detected_and_kept_as_they_are(tmp_path, rows):
    dataset = Dataset.from_jsonl(_jsonl(tmp_path / "d.jsonl", rows))
    assert dataset.format == "preference"
    assert dataset["train"].to_list() == rows
    assert Dataset.from_records(rows)["train"].to_list() == rows


def test_chosen_and_rejected_beside_messages_is_preference_not_chat(tmp_path):
    rows = [{**row, "messages": [*row["prompt"], *row["chosen"]]} for row in CHAT]
    dataset = Dataset.from_jsonl(_jsonl(tmp_path / "d.jsonl", rows))
    assert dataset.format == "preference"
    assert dataset["train"].column_names == ["prompt", "chosen", "rejected", "messages"]


@pytest.mark.parametrize("rows", [TEXT, CHAT], ids=["text", "chat"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_saved_pairs_load_back_the_same(tmp_path, rows, suffix):
    dataset = Dataset.from_records(rows)
    path = dataset.save(tmp_path / f"pairs{suffix}")
    again = Dataset.from_files(train=path)
    assert again.format == "preference" and again.to_list() == rows
    assert again.fingerprint("train") == dataset.fingerprint("train")


def test_csv_answers_that_are_digits_stay_strings(tmp_path):
    path = tmp_path / "d.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "chosen", "rejected"])
        writer.writeheader()
        writer.writerows(TEXT)
    assert Dataset.from_csv(path)["train"].to_list() == TEXT


def test_sharegpt_rows_become_chat_pairs():
    row = {
        "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2 + 2?"}],
        "chosen": {"from": "gpt", "value": "4"},
        "rejected": [{"from": "gpt", "value": "5"}],
    }
    assert _one(row) == CHAT[0]


def test_implicit_prompt_is_the_longest_common_message_prefix():
    prompt = CHAT[1]["prompt"]
    row = {"chosen": [*prompt, _bot("Lima")], "rejected": [*prompt, _bot("Quito")]}
    assert _one(row) == CHAT[1]


def test_string_prompt_beside_whole_conversations_is_taken_from_them():
    # UltraFeedback's layout: the prompt as a string, and each side the whole conversation repeating it.
    row = {"prompt": "2 + 2?", "chosen": [_user("2 + 2?"), _bot("4")], "rejected": [_user("2 + 2?"), _bot("5")]}
    assert _one(row) == {"prompt": [_user("2 + 2?")], "chosen": [_bot("4")], "rejected": [_bot("5")]}


def test_mixed_string_and_message_fields_become_chat():
    assert _one({"prompt": "2 + 2?", "chosen": [_bot("4")], "rejected": "5"}) == {
        "prompt": [_user("2 + 2?")], "chosen": [_bot("4")], "rejected": [_bot("5")],
    }  # fmt: skip
    assert _one({"prompt": [_user("2 + 2?")], "chosen": "4", "rejected": "5"})["chosen"] == [_bot("4")]


def test_anthropic_hh_text_becomes_chat_pairs():
    shared = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Capital of Peru?\n\nAssistant:"
    row = {"chosen": shared + " Lima", "rejected": shared + " Quito"}
    assert _one(row) == CHAT[1]


def test_text_without_a_prompt_splits_at_the_last_shared_space():
    row = {"chosen": "The capital of Peru is Lima", "rejected": "The capital of Peru is Lisbon"}
    assert _one(row) == {"prompt": "The capital of Peru is", "chosen": " Lima", "rejected": " Lisbon"}


def test_column_mapping_and_usual_names():
    rows = [{"q": row["prompt"], "good": row["chosen"], "bad": row["rejected"], "id": i} for i, row in enumerate(TEXT)]
    mapped = Dataset.from_records(rows, columns={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert mapped.format == "preference"
    assert mapped.to_list() == [{**row, "id": i} for i, row in enumerate(TEXT)]
    question = [{"question": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]} for row in TEXT]
    assert Dataset.from_records(question).to_list() == TEXT


def test_alpaca_style_instruction_and_input_are_the_prompt():
    rows = [
        {"instruction": "Add the numbers.", "input": "2 and 2", "chosen": "4", "rejected": "5"},
        {"instruction": "Name the capital of Peru.", "input": "", "chosen": "Lima", "rejected": "Quito"},
    ]
    assert Dataset.from_records(rows).to_list() == [
        {"prompt": "Add the numbers.\n2 and 2", "chosen": "4", "rejected": "5"},
        {"prompt": "Name the capital of Peru.", "chosen": "Lima", "rejected": "Quito"},
    ]


def test_declared_format_checks_the_rows(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "no pair here"}])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:1: missing required field 'chosen'"):
        Dataset.from_jsonl(path, format="preference")


# -- errors name the file and line ----------------------------------------------------------------

BAD = {
    "missing side": ({"prompt": "Q?", "chosen": "a"}, "missing required field 'rejected'"),
    "null side": ({"prompt": "Q?", "chosen": None, "rejected": "b"}, "missing required field 'chosen'"),
    "empty side": ({"prompt": "Q?", "chosen": "a", "rejected": "  "}, "field 'rejected' is empty"),
    "empty chat side": ({"prompt": [_user("Q?")], "chosen": [_bot("a")], "rejected": []}, "field 'rejected' is empty"),
    "identical": ({"prompt": "Q?", "chosen": "a", "rejected": "a"}, "'chosen' and 'rejected' are identical"),
    "identical once wrapped": ({"prompt": [_user("Q?")], "chosen": [_bot("a")], "rejected": "a"}, "are identical"),
    "identical conversations": ({"chosen": [_user("Q"), _bot("a")], "rejected": [_user("Q"), _bot("a")]}, "identical"),
    "last turn from the user": (
        {"prompt": [_user("Q?")], "chosen": [_bot("a"), _user("more?")], "rejected": [_bot("b")]},
        "field 'chosen': the last turn is from the user, not the assistant",
    ),
    "a side that is only the prompt": (
        {"chosen": [_user("Q?")], "rejected": [_user("Q?"), _bot("b")]},
        "field 'chosen' is empty",
    ),
    "bad role": ({"prompt": [{"role": "bot", "content": "Q?"}], "chosen": "a", "rejected": "b"}, "'bot' is not one of"),
    "bad speaker": ({"conversations": [{"from": "robot", "value": "Q?"}], "chosen": "a", "rejected": "b"}, "'robot'"),
    "number side": ({"prompt": "Q?", "chosen": 4, "rejected": "5"}, "field 'chosen': expected a string, a message"),
    "no prompt to find": ({"chosen": "Lima", "rejected": "Quito"}, "share no leading words"),
    "no shared turn": ({"chosen": [_bot("a")], "rejected": [_bot("b")]}, "share no leading message"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_pair_names_file_and_line(tmp_path, case):
    row, message = BAD[case]
    path = _jsonl(tmp_path / "d.jsonl", [TEXT[0], row])
    with pytest.raises(DataError, match=re.escape(message)) as info:
        Dataset.from_jsonl(path, format="preference")
    assert str(info.value).startswith(f"{path}:2: ")


CHAT_BAD = {
    "empty side": ({**CHAT[1], "rejected": []}, "field 'rejected' is empty"),
    "blank side": ({**CHAT[1], "chosen": [_bot(" ")]}, "field 'chosen' is empty"),
    "ends on the user": ({**CHAT[1], "chosen": [_bot("a"), _user("b")]}, "the last turn is from the user"),
    "identical": ({**CHAT[1], "rejected": CHAT[1]["chosen"]}, "are identical"),
    "identical over two turns": (
        {**CHAT[1], "chosen": [_bot("a"), _bot("b")], "rejected": [_bot("a"), _bot("b")]},
        "are identical",
    ),
    "empty prompt": ({**CHAT[1], "prompt": []}, "field 'prompt': the message list is empty"),
    "bad role": ({**CHAT[1], "prompt": [{"role": "bot", "content": "Q?"}]}, "'bot' is not one of"),
}


@pytest.mark.parametrize("case", list(CHAT_BAD))
def test_bad_chat_pair_in_a_chat_file_names_its_line(tmp_path, case):
    # Every row is chat-form, so pyarrow reads the file whole: the vectorised check must see the bad row.
    row, message = CHAT_BAD[case]
    path = _jsonl(tmp_path / "d.jsonl", [*CHAT, row, CHAT[0]])
    assert formats.table_problem(pj.read_json(path), "preference") is not None
    with pytest.raises(DataError, match=re.escape(message)) as info:
        Dataset.from_jsonl(path)
    assert str(info.value).startswith(f"{path}:3: ")


def test_canonical_chat_pairs_pass_the_vectorised_check_as_they_pass_the_row_check(tmp_path):
    # rows of different lengths, sides of two turns differing in the second, messages with an extra key
    rows = [*CHAT, {**CHAT[0], "chosen": [_bot("a"), _bot("b")], "rejected": [_bot("a"), _bot("c")]}]
    extra = [{**row, "chosen": [{**m, "name": "x"} for m in row["chosen"]]} for row in rows]
    path = _jsonl(tmp_path / "d.jsonl", extra)
    assert formats.table_problem(pj.read_json(path), "preference") is None
    assert Dataset.from_jsonl(path).to_list() == Dataset.from_records(extra).to_list() == rows


def test_detected_file_with_a_tie_names_its_line(tmp_path):
    # A well-formed text file goes the fast path; a tie sends it row by row, to the line.
    path = _jsonl(tmp_path / "d.jsonl", [*TEXT, {"prompt": "Q?", "chosen": "same", "rejected": "same"}])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: fields 'chosen' and 'rejected' are identical"):
        Dataset.from_jsonl(path)


def test_text_and_chat_pairs_in_one_file_name_the_first_that_differs(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [*TEXT, CHAT[0]])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: a chat-form pair here, but text-form"):
        Dataset.from_jsonl(path)


def test_skip_counts_bad_pairs_by_reason(tmp_path):
    rows = [TEXT[0], BAD["identical"][0], BAD["empty side"][0], BAD["last turn from the user"][0], TEXT[1]]
    dataset = Dataset.from_jsonl(_jsonl(tmp_path / "d.jsonl", rows), on_error="skip")
    assert dataset.to_list() == TEXT
    assert dataset.skipped == {"train": {"identical": 1, "empty_field": 1, "not_assistant": 1}}


def test_cli_names_the_bad_pair_and_exits_non_zero(tmp_path):
    path = _jsonl(tmp_path / "pairs.jsonl", [*TEXT, {"prompt": "Q?", "chosen": "  ", "rejected": "b"}])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MODELOPS_DEBUG", None)
    run = subprocess.run(
        [sys.executable, "-m", "modelops", "dataset=files", f"dataset.train={path}", "stages=[sanitize]"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0
    assert f"{path}:3: field 'chosen' is empty" in run.stderr
    assert "Traceback" not in run.stderr


# -- the demo -------------------------------------------------------------------------------------


def _right(prompt: str) -> str:
    """The right answer, worked out here, not read from the generator."""
    if match := re.fullmatch(r"What is (\d) \+ (\d)\?", prompt):
        return str(int(match[1]) + int(match[2]))
    country = re.fullmatch(r"Capital of (.+)\?", prompt)[1]
    return demo_formats.CAPITALS[country]


def test_demo_option_chooses_the_right_answer_over_a_wrong_one():
    dataset = instantiate(OmegaConf.load(CONF / "preference_demo.yaml"))
    assert dataset.format == "preference" and dataset.split_names == ["train", "validation", "test"]
    rows = [row for name in dataset.split_names for row in dataset[name]]
    assert len(rows) == 400
    for row in rows:
        assert row["chosen"] == _right(row["prompt"]) != row["rejected"]
        assert len(row["prompt"]) + len(row["chosen"]) + len(row["rejected"]) < 60  # byte-level tokens
    wrong_sums = [row for row in rows if row["prompt"].startswith("What")]
    assert min(abs(int(r["rejected"]) - int(r["chosen"])) for r in wrong_sums) > 0
    assert max(abs(int(r["rejected"]) - int(r["chosen"])) for r in wrong_sums) <= 3
    # held-out prompts were seen in train (with other wrong answers): the preference can carry over
    train_prompts = {row["prompt"] for row in dataset["train"]}
    test_prompts = [row["prompt"] for row in dataset["test"]]
    assert sum(p in train_prompts for p in test_prompts) / len(test_prompts) > 0.8


def test_demo_is_deterministic_and_its_chat_form_holds_the_same_pairs():
    make = demo_formats.preference_demo
    assert make(n=100, seed=1).lineage() == make(n=100, seed=1).lineage()
    assert make(n=100, seed=1).lineage() != make(n=100, seed=2).lineage()
    chat, text = make(n=50, seed=3, chat=True), make(n=50, seed=3)
    for a, b in zip(chat["train"], text["train"], strict=True):
        assert a["prompt"][-1] == _user(b["prompt"])
        assert (a["chosen"], a["rejected"]) == ([_bot(b["chosen"])], [_bot(b["rejected"])])
