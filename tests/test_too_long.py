"""Rows longer than model.max_length: truncate keeps the answer, skip drops and counts, reject names the line.

The data is generated here: GSM8K-like question/answer rows (long word problems, short answers)
for the tiny Llama (byte tokenizer: one token per ASCII character, plus BOS and EOS), and short
and long sentences for the MiniLM classifier. Each file has a blank line and an exact duplicate
that the sanitizer removes, so a row's position after sanitizing is not its line in the file.
"""

from __future__ import annotations

import json
import random

import pytest

from modelops.config.build import compose
from modelops.errors import DataError
from modelops.run import run

MAX = 256  # conf/model/tiny_llama.yaml


def _problem(rng: random.Random, words: int) -> str:
    names = ["Natalia", "Weng", "Betty", "Julie", "James", "Albert"]
    things = ["clips", "apples", "pages", "marbles", "stickers"]
    parts = [f"{rng.choice(names)} sold {rng.randint(2, 90)} {rng.choice(things)} on day {i}." for i in range(words)]
    return " ".join(parts) + " How many were sold in total?"


def _write_jsonl(path, rows: list[dict], blank_after: int, duplicate_of: int) -> dict[int, int]:
    """Write rows with one blank line and one exact duplicate; return row index -> its line (1-based)."""
    lines, where = [], {}
    for i, row in enumerate(rows):
        where[i] = len(lines) + 1
        lines.append(json.dumps(row))
        if i == blank_after:
            lines.append("")
        if i == duplicate_of:
            lines.append(json.dumps(row))  # the sanitizer's exact dedup drops this copy
    path.write_text("\n".join(lines) + "\n")
    return where


@pytest.fixture(scope="module")
def gsm8k_like(tmp_path_factory):
    rng = random.Random(0)
    rows = []
    for i in range(16):
        question = _problem(rng, 12 if i % 2 else 2)  # odd rows: ~450 characters, past max_length
        rows.append({"prompt": f"Question: {question}\nAnswer: ", "completion": f"#### {rng.randint(10, 999)}"})
    path = tmp_path_factory.mktemp("gsm") / "train.jsonl"
    lines = _write_jsonl(path, rows, blank_after=0, duplicate_of=2)
    return path, rows, lines


def _causal(path, tmp_path, *extra: str):
    return compose([
        "dataset=files", f"dataset.train={path}", "model=tiny_llama", "stages=[sanitize,train]",
        "trainer.max_steps=2", "trainer.batch_size=4", "trainer.batching=pad", "trainer.checkpoint_every=null",
        f"trainer.cache_dir={tmp_path / 'cache'}", *extra,
    ])  # fmt: skip


def _tokens(row: dict) -> int:
    return 1 + len(row["prompt"]) + len(row["completion"]) + 1  # BOS, bytes, EOS


def test_truncate_cuts_the_prompt_keeps_the_answer_and_reports_the_lines(gsm8k_like, tmp_path, capsys):
    path, rows, lines = gsm8k_like
    run_dir = tmp_path / "run"
    run(_causal(path, tmp_path), run_dir)
    report = json.loads((run_dir / "data" / "tokenize_report.json").read_text())["train"]
    long_rows = [i for i, row in enumerate(rows) if _tokens(row) > MAX]
    assert len(long_rows) == 8 and all(len(rows[i]["completion"]) + 2 < MAX for i in long_rows)
    assert report["rows_in"] == report["rows_out"] == len(rows)
    assert (report["prompt_cut"], report["end_cut"], report["skipped"]) == (len(long_rows), 0, 0)
    assert report["truncation_side"] == "left" and report["max_length"] == MAX
    expected = [f"{path}:{lines[i]} (split 'train')" for i in long_rows[:5]]
    assert report["examples"]["prompt_cut"] == expected
    err = capsys.readouterr().err
    assert f"{len(long_rows)} of {len(rows)} rows are longer than model.max_length={MAX}" in err
    assert "truncated (prompt cut from the left)" in err and expected[0] in err


def test_truncated_rows_train_on_the_whole_answer_with_the_end_of_the_question(gsm8k_like):
    from modelops.data.dataset import Dataset
    from modelops.models.loading import load_tokenizer
    from modelops.tasks.sft import tokenize_causal_lm

    path, rows, _ = gsm8k_like
    tokenizer = load_tokenizer("tiny-llama")
    out = tokenize_causal_lm(Dataset.from_jsonl(path)["train"], "completion", tokenizer, MAX)
    row = next(i for i, r in enumerate(rows) if _tokens(r) > MAX)
    text = tokenizer.decode(out[row]["input_ids"], skip_special_tokens=False)
    room = MAX - 2 - len(rows[row]["completion"])
    assert text == "<s>" + rows[row]["prompt"][-room:] + rows[row]["completion"] + "</s>"


def test_skip_drops_and_counts_the_long_rows(gsm8k_like, tmp_path):
    path, rows, lines = gsm8k_like
    run_dir = tmp_path / "run"
    run(_causal(path, tmp_path, "trainer.too_long=skip"), run_dir)
    report = json.loads((run_dir / "data" / "tokenize_report.json").read_text())["train"]
    long_rows = [i for i, row in enumerate(rows) if _tokens(row) > MAX]
    assert report["skipped"] == len(long_rows) and report["rows_out"] == len(rows) - len(long_rows)
    assert report["examples"]["skipped"] == [f"{path}:{lines[i]} (split 'train')" for i in long_rows[:5]]


def test_reject_names_the_file_line_and_split(gsm8k_like, tmp_path):
    path, rows, lines = gsm8k_like
    first = next(i for i, row in enumerate(rows) if _tokens(row) > MAX)
    message = rf"^{path}:{lines[first]} \(split 'train'\): \d+ tokens exceed model.max_length={MAX}"
    with pytest.raises(DataError, match=message):
        run(_causal(path, tmp_path, "trainer.too_long=reject"), tmp_path / "run")
    assert lines[first] != first + 1  # the premise: the line is not the row's position


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    rng = random.Random(1)
    words = ["the", "film", "is", "a", "quiet", "warm", "and", "often", "funny", "look", "at", "love", "loss", ","]
    rows = [
        {"text": " ".join(rng.choice(words) for _ in range(rng.choice([3, 5, 30, 40]))), "label": rng.choice("01")}
        for _ in range(24)
    ]
    path = tmp_path_factory.mktemp("cls") / "train.jsonl"
    lines = _write_jsonl(path, rows, blank_after=1, duplicate_of=0)
    return path, rows, lines


def _classifier(path, tmp_path, *extra: str):
    return compose([
        "dataset=files", f"dataset.train={path}", "model.max_length=16", "stages=[sanitize,train]",
        "trainer.max_steps=1", "trainer.batch_size=8", "trainer.checkpoint_every=null",
        f"trainer.cache_dir={tmp_path / 'cache'}", *extra,
    ])  # fmt: skip


def _long_sentences(rows) -> list[int]:
    from modelops.models.loading import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    return [i for i, row in enumerate(rows) if len(tokenizer(row["text"])["input_ids"]) > 16]


def test_classifier_truncations_are_counted_with_their_lines(sentences, tmp_path, capsys):
    path, rows, lines = sentences
    run_dir = tmp_path / "run"
    run(_classifier(path, tmp_path), run_dir)
    report = json.loads((run_dir / "data" / "tokenize_report.json").read_text())["train"]
    long_rows = _long_sentences(rows)
    assert 0 < len(long_rows) < len(rows)
    assert (report["end_cut"], report["prompt_cut"], report["skipped"]) == (len(long_rows), 0, 0)
    assert report["examples"]["end_cut"] == [f"{path}:{lines[i]} (split 'train')" for i in long_rows[:5]]
    assert "truncated at the end" in capsys.readouterr().err


def test_classifier_reject_and_skip_are_honoured(sentences, tmp_path):
    path, rows, lines = sentences
    long_rows = _long_sentences(rows)
    with pytest.raises(DataError, match=rf"^{path}:{lines[long_rows[0]]} \(split 'train'\): \d+ tokens exceed"):
        run(_classifier(path, tmp_path, "trainer.too_long=reject"), tmp_path / "rejected")
    run_dir = tmp_path / "skipped"
    run(_classifier(path, tmp_path, "trainer.too_long=skip"), run_dir)
    report = json.loads((run_dir / "data" / "tokenize_report.json").read_text())["train"]
    assert report["skipped"] == len(long_rows) and report["rows_out"] == len(rows) - len(long_rows)


def test_truncation_side_is_refused_for_a_classifier_naming_the_key(sentences, tmp_path):
    from modelops.errors import ConfigError

    path, _, _ = sentences
    with pytest.raises(ConfigError, match=r"^trainer.truncation_side='right': only causal LMs use it"):
        run(_classifier(path, tmp_path, "trainer.truncation_side=right"), tmp_path / "run")
