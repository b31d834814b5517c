"""DatasetSanitizer end to end on every format: what it keeps, that the input is untouched, the report."""

from __future__ import annotations

import json

import pytest

from modelops.sanitize import DatasetSanitizer

FORMATS = ["classification", "text", "completion", "instruction", "chat"]

# Row 0 is messy, 1 is empty, 2 repeats 0 up to case and spacing, 3 holds an e-mail address.
_TEXTS = ["Hello\u00a0  world\u200b", "  ", "hello world", "mail ann@example.com please now"]
# What the default steps make of them, worked out by hand: NFKC folds the NBSP, the zero-width
# space goes, spaces collapse; the blank row and the duplicate go; the address is masked.
_KEPT = ["Hello world", "mail <EMAIL> please now"]


def _row(fmt: str, text: str, i: int) -> dict:
    blank = not text.strip()
    answer = "" if blank else "ok"
    if fmt == "classification":
        return {"text": text, "label": "pos" if i % 2 == 0 else "neg"}
    if fmt == "text":
        return {"text": text}
    if fmt == "completion":
        return {"prompt": text, "completion": answer}
    if fmt == "instruction":
        return {"instruction": text, "input": "", "output": answer}
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]}


def _first_text(fmt: str, row: dict) -> str:
    if fmt == "chat":
        return row["messages"][0]["content"]
    return row[{"completion": "prompt", "instruction": "instruction"}.get(fmt, "text")]


def make_dataset(fmt: str, texts: list[str] = _TEXTS, with_test: bool = False):
    import datasets

    from modelops.data.dataset import Dataset

    def split(rows: list[str]):
        records = [_row(fmt, t, i) for i, t in enumerate(rows)]
        if fmt == "classification":  # row 2 must repeat row 0 with its label to be a plain duplicate
            records[2 % len(records)]["label"] = records[0]["label"]
        return datasets.Dataset.from_list(records)

    splits = {"train": split(texts)}
    if with_test:
        splits["test"] = split(["an unrelated test question about rivers", "x", "y", "z"])
    return Dataset(splits, format=fmt)


DEFAULT_STEPS = [
    "normalize",
    "drop_empty",
    {"name": "exact_dedup", "on_conflict": "report"},
    {"name": "near_dedup", "threshold": 0.8},
    {"name": "pii", "action": "replace"},
    {"name": "decontaminate", "ngram": 13},
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_default_steps_on_every_format_keep_the_expected_rows(fmt):
    dataset = make_dataset(fmt)
    clean = DatasetSanitizer(steps=DEFAULT_STEPS).sanitize(dataset)
    assert clean.format == fmt
    assert [_first_text(fmt, row) for row in clean["train"]] == _KEPT


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_input_dataset_is_never_changed(fmt):
    dataset = make_dataset(fmt, with_test=True)
    before = {name: dataset[name].to_list() for name in dataset.split_names}
    fingerprints = {name: dataset.fingerprint(name) for name in dataset.split_names}
    steps = [*DEFAULT_STEPS, {"name": "length", "min_length": 1}, "quality"]
    if fmt == "chat":
        steps.append("chat_structure")
    DatasetSanitizer(steps=steps).sanitize(dataset)
    assert {name: dataset[name].to_list() for name in dataset.split_names} == before
    assert {name: dataset.fingerprint(name) for name in dataset.split_names} == fingerprints
    assert all(not c.startswith("__") for name in dataset.split_names for c in dataset[name].column_names)


@pytest.mark.parametrize("fmt", ["completion", "chat"])
def test_every_text_field_and_every_message_is_normalised(fmt):
    import datasets

    from modelops.data.dataset import Dataset

    if fmt == "completion":
        rows = [{"prompt": " a\u00a0 b ", "completion": "ｃ  d"}]
        expected = [{"prompt": "a b", "completion": "c d"}]
    else:
        rows = [{"messages": [{"role": "system", "content": " s\t s"}, {"role": "user", "content": "ｕ"},
                              {"role": "assistant", "content": "a \u200b"}]}]  # fmt: skip
        expected = [{"messages": [{"role": "system", "content": "s s"}, {"role": "user", "content": "u"},
                                  {"role": "assistant", "content": "a"}]}]  # fmt: skip
    clean = DatasetSanitizer(steps=["normalize"]).sanitize(Dataset({"train": datasets.Dataset.from_list(rows)}, fmt))
    assert clean["train"].to_list() == expected


def test_report_counts_reasons_examples_and_rejected_rows(tmp_path):
    dataset = make_dataset("classification")
    sanitizer = DatasetSanitizer(steps=DEFAULT_STEPS)
    sanitizer.sanitize(dataset)
    report = sanitizer.report
    train = report.to_dict()["splits"]["train"]
    assert (train["rows_in"], train["rows_out"]) == (4, 2)
    steps = {s["step"]: s for s in train["steps"]}
    assert list(steps) == ["normalize", "drop_empty", "exact_dedup", "near_dedup", "pii", "decontaminate"]
    assert steps["normalize"]["modified"] == 2  # row 0 (NBSP, zero-width space) and row 1 (spaces stripped)
    assert steps["drop_empty"]["reasons"] == {"empty": 1}
    assert steps["exact_dedup"]["reasons"] == {"duplicate": 1}
    assert steps["pii"]["modified"] == 1 and steps["pii"]["rows_out"] == 2
    for s in train["steps"]:
        assert s["rows_in"] - s["rows_out"] == sum(s["reasons"].values())
        for example in s["examples"]:
            assert not any(key.startswith("__") for key in example["row"])
    assert steps["exact_dedup"]["examples"] == [
        {"reason": "duplicate:of_row=0", "row": {"text": "hello world", "label": "pos"}}
    ]
    assert "exact_dedup" in report.table() and "duplicate=1" in report.table()

    report.save(tmp_path)
    saved = json.loads((tmp_path / "sanitize_report.json").read_text())
    assert saved["splits"] == json.loads(json.dumps(report.splits)) and saved["rejected_rows"] == 2
    rejected = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert rejected == [
        {"split": "train", "step": "drop_empty", "reason": "empty:text", "row": {"text": "", "label": "neg"}},
        {"split": "train", "step": "exact_dedup", "reason": "duplicate:of_row=0",
         "row": {"text": "hello world", "label": "pos"}},
    ]  # fmt: skip
    assert list(report.rejected) == rejected and report.rejected[-1] == rejected[-1]


def test_decontamination_uses_the_evaluation_splits_only():
    import datasets

    from modelops.data.dataset import Dataset

    leaked = "the quick brown fox jumps over the lazy dog near the river bank today"
    train = datasets.Dataset.from_dict({"text": [leaked + " again", "something else entirely here"]})
    test = datasets.Dataset.from_dict({"text": [leaked]})
    sanitizer = DatasetSanitizer(steps=[{"name": "decontaminate", "ngram": 13}])
    clean = sanitizer.sanitize(Dataset({"train": train, "test": test}, format="text"))
    assert clean["train"]["text"] == ["something else entirely here"]
    assert clean["test"]["text"] == [leaked]  # an evaluation split is not compared with itself


def test_splits_option_leaves_other_splits_alone():
    dataset = make_dataset("text", with_test=True)
    sanitizer = DatasetSanitizer(steps=["normalize", "drop_empty"], splits=["train"])
    clean = sanitizer.sanitize(dataset)
    assert list(sanitizer.report.splits) == ["train"]
    assert clean["test"].to_list() == dataset["test"].to_list()


def test_num_proc_two_gives_the_same_result_as_one():
    import random

    texts = []
    rng = random.Random(3)
    for _ in range(2400):
        words = [rng.choice(["alpha", "beta", "gamma", "delta", "Eps", "zeta"]) for _ in range(rng.randint(0, 8))]
        texts.append(("  " if rng.random() < 0.2 else "") + " ".join(words))
    dataset = make_dataset("text", texts)
    steps = ["normalize", "drop_empty", "exact_dedup", {"name": "near_dedup", "threshold": 0.8}, "pii"]
    one = DatasetSanitizer(steps=steps, num_proc=1, batch_size=300)
    two = DatasetSanitizer(steps=steps, num_proc=2, batch_size=300)
    assert one.sanitize(dataset)["train"].to_list() == two.sanitize(dataset)["train"].to_list()
    assert _without_timings(one.report.to_dict()) == _without_timings(two.report.to_dict())


def _without_timings(report: dict) -> dict:
    for split in report["splits"].values():
        for step in split["steps"]:
            step.pop("seconds")
    return report
