"""Data as users bring it: a one-split Dataset as rows, saving, splitting too little, headerless CSV,
usual column names, and rows skipped on load kept where the user looks (console and the run's data/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelops.data.dataset import Dataset
from modelops.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"text": f"review number {i}", "label": "pos" if i % 2 else "neg"} for i in range(6)]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MODELOPS_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "modelops", "stages=[sanitize]", "dataset=files", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


# -- a one-split Dataset is a sequence of rows ------------------------------------------------


def test_one_split_dataset_iterates_indexes_and_lists_its_rows():
    dataset = Dataset.from_records(ROWS)
    assert list(dataset) == ROWS
    assert dataset[0] == ROWS[0] and dataset[-1] == ROWS[-1]
    assert dataset[1:4] == ROWS[1:4] and dataset[::-2] == ROWS[::-2]
    assert dataset.to_list() == ROWS and len(dataset) == 6
    assert dataset["train"][0] == ROWS[0]  # a split by name still works
    with pytest.raises(IndexError, match="row 6 is out of range: the 'train' split has 6 rows"):
        dataset[6]


def test_several_splits_ask_for_one():
    dataset = Dataset.from_records(ROWS).split(test=2, seed=0)
    for use in (lambda: dataset[0], lambda: list(dataset), dataset.to_list):
        with pytest.raises(DataError) as info:
            use()
        assert "this Dataset has 2 splits ['train', 'test']; pick one first, e.g. ds['train']" in str(info.value)
    assert len(list(dataset["test"])) == 2


# -- save -------------------------------------------------------------------------------------


def test_save_refuses_several_splits_without_split_and_writes_nothing(tmp_path):
    dataset = Dataset.from_records(ROWS).split(test=2, seed=0)
    target = tmp_path / "clean_data.jsonl"
    with pytest.raises(DataError) as info:
        dataset.save(target)
    assert "has 2 splits ['train', 'test']" in str(info.value) and "split='train'" in str(info.value)
    assert "save_to_disk" in str(info.value) and not target.exists()
    dataset.save(target, split="test")
    assert Dataset.from_jsonl(target).to_list() == dataset["test"].to_list()


def test_save_of_one_split_needs_no_name(tmp_path):
    path = Dataset.from_records(ROWS, split="validation").save(tmp_path / "v.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == ROWS


# -- splitting too few rows -------------------------------------------------------------------


def test_split_that_would_leave_a_split_empty_fails_naming_rows_and_fractions(tmp_path):
    path = _jsonl(tmp_path / "one.jsonl", ROWS[:1])
    with pytest.raises(DataError) as info:
        Dataset.from_files(train=path, split={"validation": 0.1, "test": 0.1})
    message = str(info.value)
    assert "validation=0.1, test=0.1" in message and f"1 row(s) of 'train' (from {path})" in message
    assert "['validation', 'test'] with no rows" in message
    # 20 rows: 0.1 gives 2 rows each, fine; 0.01 gives none.
    many = Dataset.from_records([{"text": f"t{i}", "label": "a"} for i in range(20)])
    assert [len(many.split(validation=0.1, test=0.1)[s]) for s in ("train", "validation", "test")] == [16, 2, 2]
    with pytest.raises(DataError, match=r"leaves \['test'\] with no rows"):
        many.split(validation=0.1, test=0.01)


def test_cli_split_of_one_row_exits_non_zero_with_the_message(tmp_path):
    path = _jsonl(tmp_path / "one.jsonl", ROWS[:1])
    proc = _cli([f"dataset.train={path}", "dataset.split={validation: 0.1, test: 0.1}"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "with no rows" in proc.stderr and str(path) in proc.stderr and "Traceback" not in proc.stderr


# -- headerless CSV/TSV -----------------------------------------------------------------------

AG_NEWS = [
    ("Wall St. Bears Claw Back Into the Black (Reuters) Short-sellers are seeing green again.", "Business"),
    ("Carlyle Looks Toward Commercial Aerospace (Reuters) Private investment firm Carlyle Group", "Business"),
    ("Phelps wins again, taking his sixth gold medal of the Games in the pool", "Sports"),
]


def _ag_news(path: Path) -> Path:
    path.write_text("".join(f"{text}\t{label}\n" for text, label in AG_NEWS))
    return path


def test_headerless_tsv_loads_with_columns_by_position(tmp_path):
    path = _ag_news(tmp_path / "ag.tsv")
    dataset = Dataset.from_csv(path, header=False, columns={"text": 0, "label": 1})
    assert dataset.format == "classification"
    assert [(r["text"], r["label"]) for r in dataset] == AG_NEWS  # the first row is data, not lost
    assert dataset.labels == ["Business", "Sports"]
    files = Dataset.from_files(train=path, header=False, columns={"label": 1, "text": 0})
    assert files.to_list() == dataset.to_list()


def test_cli_headerless_tsv_with_columns_by_position(tmp_path):
    path = _ag_news(tmp_path / "ag.tsv")
    args = [f"dataset.train={path}", "dataset.header=false", "dataset.columns={text: 0, label: 1}", "sanitizer=none"]
    proc = _cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = list((tmp_path / "outputs").glob("????-??-??/*"))
    lineage = json.loads((run_dir / "data" / "lineage.json").read_text())
    assert lineage["loaded"]["train"]["rows"] == len(AG_NEWS)
    assert lineage["loaded"]["train"]["fingerprint"] == Dataset.from_records(
        [{"text": text, "label": label} for text, label in AG_NEWS]
    ).fingerprint("train")  # the same rows as written, the first one included


def test_headerless_slow_path_names_the_line(tmp_path):
    path = tmp_path / "ag.tsv"
    path.write_text("first text\tBusiness\nno label here\nthird text\tSports\n")
    with pytest.raises(DataError, match=rf"^{path}:2: expected 2 fields, as the first row has, got 1"):
        Dataset.from_csv(path, header=False, columns={"text": 0, "label": 1})
    skipped = Dataset.from_csv(path, header=False, columns={"text": 0, "label": 1}, on_error="skip")
    assert [r["text"] for r in skipped] == ["first text", "third text"]


def test_file_whose_first_row_is_data_suggests_header_false(tmp_path):
    path = _ag_news(tmp_path / "ag.tsv")
    with pytest.raises(DataError) as info:
        Dataset.from_csv(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot detect the format")
    assert "first row looks like data" in message and "header: false" in message and "{text: 0, label: 1}" in message


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"header": False}, "give each field's position"),
        ({"header": False, "columns": {"text": "sentence", "label": 1}}, "got {'text': 'sentence'}"),
        ({"columns": {"text": 0, "label": 1}}, "positions need header: false"),
    ],
)
def test_header_and_column_positions_must_agree(tmp_path, kwargs, words):
    path = _ag_news(tmp_path / "ag.tsv")
    with pytest.raises(DataError) as info:
        Dataset.from_csv(path, **kwargs)
    assert str(info.value).startswith(f"{path}:") and words in str(info.value)


def test_header_false_is_for_csv_only(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(DataError, match="header: false applies to CSV/TSV files only"):
        Dataset.from_files(train=path, header=False, columns={"text": 0})


# -- usual column names -----------------------------------------------------------------------


def test_sst2_tsv_and_gsm8k_jsonl_load_without_columns(tmp_path, capsys):
    sst2 = tmp_path / "dev.tsv"
    sst2.write_text("sentence\tlabel\nit 's a charming and often affecting journey . \t1\nunflinchingly bleak\t0\n")
    dataset = Dataset.from_files(train=sst2, test=sst2)
    assert dataset.format == "classification" and dataset["train"]["text"][1] == "unflinchingly bleak"
    assert dataset["train"]["label"] == [1, 0] and dataset.labels == ["0", "1"]
    out = capsys.readouterr().out
    assert out.count("columns: sentence → text, label → label") == 1  # once, not per split
    gsm8k = _jsonl(tmp_path / "gsm8k.jsonl", [{"question": "2 pens at $3 each?", "answer": "2 * 3 = 6\n#### 6"}])
    loaded = Dataset.from_jsonl(gsm8k)
    assert loaded.format == "completion" and loaded.to_list() == [{"prompt": "2 pens at $3 each?",
                                                                    "completion": "2 * 3 = 6\n#### 6"}]  # fmt: skip
    assert "columns: question → prompt, answer → completion" in capsys.readouterr().out
    assert loaded.load_report["train"]["columns"] == {"question": "prompt", "answer": "completion"}


@pytest.mark.parametrize(
    ("row", "fmt", "expected"),
    [
        ({"review": "fine", "sentiment": "pos"}, "classification", {"text": "fine", "label": "pos"}),
        ({"content": "a page of text"}, "text", {"text": "a page of text"}),
        ({"document": "doc", "category": "news"}, "classification", {"text": "doc", "label": "news"}),
        ({"text": "t", "labels": 2}, "classification", {"text": "t", "label": 2}),
        ({"input": "2+2", "output": "4"}, "completion", {"prompt": "2+2", "completion": "4"}),
        ({"instruction": "add", "input": "2+2", "output": "4"}, "instruction",
         {"instruction": "add", "output": "4", "input": "2+2"}),  # an instruction keeps input/output as they are
        ({"text": "t", "sentence": "s", "label": "x"}, "classification", {"text": "t", "label": "x", "sentence": "s"}),
    ],
)  # fmt: skip
def test_usual_names_fill_missing_fields_only(tmp_path, row, fmt, expected):
    for path in (_jsonl(tmp_path / "d.jsonl", [row]), _jsonl(tmp_path / "slow.jsonl", [row, "not json"])):
        dataset = Dataset.from_jsonl(path, on_error="skip")  # the second file takes the line-by-line path
        assert dataset.format == fmt and dataset.to_list() == [expected]


def test_two_candidates_for_one_field_ask_which(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"sentence": "a", "review": "b", "label": "x"}])
    with pytest.raises(DataError) as info:
        Dataset.from_jsonl(path)
    assert str(info.value) == (
        f"{path}: columns ['sentence', 'review'] could each be the 'text' field; "
        "say which with columns: {text: sentence}"
    )
    assert Dataset.from_jsonl(path, columns={"text": "review"}).to_list() == [
        {"text": "b", "label": "x", "sentence": "a"}
    ]


# -- rows skipped on load ---------------------------------------------------------------------


def test_skipped_rows_keep_file_line_reason_and_raw_text(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [ROWS[0], "{not json", {"text": "no label"}, ROWS[1]])
    dataset = Dataset.from_jsonl(path, on_error="skip")
    assert dataset.to_list() == ROWS[:2]
    assert list(dataset.skipped_rows()) == [
        {"split": "train", "file": str(path), "line": 2, "row": None, "reason": "not_json",
         "message": f"{path}:2: not valid JSON (Expecting property name enclosed in double quotes, column 2)",
         "raw": "{not json"},
        {"split": "train", "file": str(path), "line": 3, "row": None, "reason": "missing_field",
         "message": f"{path}:3: missing required field 'label' for format classification",
         "raw": '{"text": "no label"}'},
    ]  # fmt: skip
    assert dataset.skip_summary() == [f"skipped 2 row(s) of train ({path}): not_json=1, missing_field=1"]


def test_cli_skip_prints_the_counts_and_saves_every_skipped_line(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [*ROWS, "{broken", {"text": 3, "label": "pos"}])
    test = _jsonl(tmp_path / "test.jsonl", [ROWS[0], {"text": "unseen label", "label": "maybe"}])
    proc = _cli([f"dataset.train={train}", f"dataset.test={test}", "dataset.on_error=skip", "sanitizer=none"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"skipped 2 row(s) of train ({train}): not_json=1, wrong_type=1" in proc.stdout
    assert f"skipped 1 row(s) of test ({test}): unknown_label=1" in proc.stdout
    (run_dir,) = list((tmp_path / "outputs").glob("????-??-??/*"))
    assert f"{run_dir / 'data' / 'skipped.jsonl'}" in proc.stdout
    skipped = [json.loads(line) for line in (run_dir / "data" / "skipped.jsonl").read_text().splitlines()]
    assert [(r["split"], Path(r["file"]).name, r["line"], r["row"], r["reason"], r["raw"]) for r in skipped] == [
        ("train", "train.jsonl", 7, None, "not_json", "{broken"),
        ("train", "train.jsonl", 8, None, "wrong_type", '{"text": 3, "label": "pos"}'),
        ("test", "test.jsonl", None, 2, "unknown_label", '{"text": "unseen label", "label": "maybe"}'),
    ]
    lineage = json.loads((run_dir / "data" / "lineage.json").read_text())
    assert lineage["load_report"]["train"]["skipped"] == {"not_json": 1, "wrong_type": 1}
    assert lineage["load_report"]["test"]["skipped"] == {"unknown_label": 1}
    assert lineage["loaded"]["train"]["rows"] == 6 and lineage["sanitized"]["test"]["rows"] == 1
