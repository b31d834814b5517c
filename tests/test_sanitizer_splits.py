"""Which splits a step removes rows from: evaluation splits are cleaned and reported, not cut (by default).

Also: `DatasetSanitizer()` is `sanitizer=default`, and chat_structure flags chats with nothing to train on.
"""

from __future__ import annotations

import json

import pytest

from modelops.config.build import compose, instantiate
from modelops.errors import ConfigError
from modelops.sanitize import DatasetSanitizer
from tests.test_sanitizer import make_dataset

_LONG = "the weather in the mountain village was cold and bright all through the long winter of that year we remember"
TRAIN = [
    {"text": "a great movie", "label": "pos"},
    {"text": "hello world", "label": "neg"},
    {"text": "an entirely different review of a phone", "label": "pos"},
    {"text": "the food was cold and the service slow", "label": "neg"},
]
TEST = [
    {"text": _LONG, "label": "pos"},  # 0
    {"text": _LONG.replace("remember", "recall"), "label": "pos"},  # 1: a near duplicate of 0 (one word differs)
    {"text": "a great movie", "label": "pos"},  # 2: an exact copy of train row 0
    {"text": "Hello  world", "label": "neg"},  # 3: a copy of train row 1 up to case and spacing
    {"text": "   ", "label": "neg"},  # 4: blank
    {"text": _LONG, "label": "pos"},  # 5: an exact duplicate of 0 inside test
]


def _dataset():
    import datasets

    from modelops.data.dataset import Dataset

    splits = {"train": datasets.Dataset.from_list(TRAIN), "test": datasets.Dataset.from_list(TEST)}
    return Dataset(splits, format="classification")


def _default(*overrides: str) -> DatasetSanitizer:
    return instantiate(compose(["sanitizer=default", *overrides]).sanitizer, "sanitizer")


def _steps(sanitizer: DatasetSanitizer, split: str) -> dict[str, dict]:
    return {s["step"]: s for s in sanitizer.report.splits[split]["steps"]}


def test_default_keeps_every_test_row_and_reports_duplicates_and_copies_of_train(tmp_path):
    sanitizer = _default()
    clean = sanitizer.sanitize(_dataset())
    # Every test row stays, normalised ("Hello  world" -> "Hello world"; the blank row -> "").
    assert clean["test"]["text"] == [_LONG, TEST[1]["text"], "a great movie", "Hello world", "", _LONG]
    assert clean["train"].to_list() == TRAIN  # nothing to clean there; the copies in test do not cut train
    steps = _steps(sanitizer, "test")
    assert all(s["reasons"] == {} and s["rows_in"] == s["rows_out"] == 6 for s in steps.values())
    assert steps["drop_empty"]["flagged"] == {"empty": 1}
    assert steps["exact_dedup"]["flagged"] == {"copy_of_train": 2, "duplicate": 1}
    assert steps["exact_dedup"]["copies_of_train"] == 2
    copies = [e for e in steps["exact_dedup"]["examples"] if e["reason"].startswith("copy_of_train")]
    assert [(e["reason"], e["row"]["text"]) for e in copies] == [
        ("copy_of_train:row=0", "a great movie"),
        ("copy_of_train:row=1", "Hello world"),
    ]
    assert steps["near_dedup"]["flagged"] == {"near_duplicate": 2}  # rows 1 and 5 (5 is kept by exact_dedup too)
    assert "flagged, kept: copy_of_train=2, duplicate=1" in sanitizer.report.table()

    sanitizer.report.save(tmp_path)
    flagged = [json.loads(line) for line in (tmp_path / "flagged.jsonl").read_text().splitlines()]
    assert {(r["split"], r["step"]) for r in flagged} == {("test", "drop_empty"), ("test", "exact_dedup"),
                                                          ("test", "near_dedup")}  # fmt: skip
    assert len(flagged) == 1 + 3 + 2
    assert (tmp_path / "rejected.jsonl").read_text() == ""
    assert json.loads((tmp_path / "sanitize_report.json").read_text())["flagged_rows"] == 6


def test_a_step_splits_option_removes_from_the_splits_it_names():
    sanitizer = _default("+sanitizer.steps.4.splits=[train,validation,test]")
    assert sanitizer.steps[4].name == "near_dedup"
    clean = sanitizer.sanitize(_dataset())
    assert clean["test"]["text"] == [_LONG, "a great movie", "Hello world", ""]  # rows 1 and 5 removed
    steps = _steps(sanitizer, "test")
    assert steps["near_dedup"]["reasons"] == {"near_duplicate": 2} and steps["near_dedup"]["flagged"] == {}
    assert steps["exact_dedup"]["flagged"] == {"copy_of_train": 2, "duplicate": 1}  # still reported only


def test_removing_from_train_only_leaves_the_flagged_rows_out_of_train():
    rows = [*TRAIN, {"text": "  ", "label": "pos"}, dict(TRAIN[0])]
    dataset = _dataset().replace(train=_dataset()["train"].from_list(rows))
    sanitizer = _default()
    assert sanitizer.sanitize(dataset)["train"].to_list() == TRAIN
    steps = _steps(sanitizer, "train")
    assert steps["drop_empty"]["reasons"] == {"empty": 1} and steps["exact_dedup"]["reasons"] == {"duplicate": 1}
    assert steps["exact_dedup"]["flagged"] == {}


@pytest.mark.parametrize("fmt", ["classification", "chat"])
def test_python_default_is_the_default_option(fmt):
    dataset = make_dataset(fmt, with_test=True)
    api, cli = DatasetSanitizer(), _default()
    assert api.steps == cli.steps and (api.num_proc, api.batch_size) == (cli.num_proc, cli.batch_size)
    assert api.sanitize(dataset).lineage() == cli.sanitize(dataset).lineage()
    assert _without_timings(api.report.to_dict()) == _without_timings(cli.report.to_dict())
    assert [s["step"] for s in api.report.splits["train"]["steps"]][:3] == (
        ["normalize", "drop_empty", "chat_structure"] if fmt == "chat" else ["normalize", "drop_empty", "exact_dedup"]
    )


def _without_timings(report: dict) -> dict:
    for split in report["splits"].values():
        for step in split["steps"]:
            step.pop("seconds")
    return report


def _chat(*turns: str) -> dict:
    roles = {"u": "user", "a": "assistant", "s": "system"}
    return {"messages": [{"role": roles[t[0]], "content": t[2:]} for t in turns]}


def test_default_flags_chats_without_an_answer_or_ending_on_the_user():
    import datasets

    from modelops.data.dataset import Dataset

    good = _chat("u:what is 2+2", "a:4")
    rows = [good, _chat("u:what is 2+3", "a:5", "u:and 2+4?"), _chat("s:be brief", "u:what is 3+3")]
    dataset = Dataset({name: datasets.Dataset.from_list(rows) for name in ("train", "test")}, format="chat")
    sanitizer = DatasetSanitizer()
    clean = sanitizer.sanitize(dataset)
    assert clean["train"].to_list() == [good]
    assert len(clean["test"]) == 3  # test is reported, not cut
    expected = {"chat": 2}
    assert _steps(sanitizer, "train")["chat_structure"]["reasons"] == expected
    assert _steps(sanitizer, "test")["chat_structure"]["flagged"] == expected
    reasons = [e["reason"] for e in _steps(sanitizer, "train")["chat_structure"]["examples"]]
    assert reasons == ["chat:ends_with=user", "chat:no_assistant"]


def test_splits_option_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"^sanitizer\.steps\.0\.splits: \[\] must be a non-empty list"):
        DatasetSanitizer(steps=[{"name": "drop_empty", "splits": []}])
    sanitizer = DatasetSanitizer(steps=["normalize", {"name": "drop_empty", "splits": ["train", "tset"]}])
    with pytest.raises(ConfigError) as info:
        sanitizer.sanitize(_dataset())
    assert str(info.value) == "sanitizer.steps.1.splits: ['tset'] not among this dataset's splits ['train', 'test']"


def test_a_step_object_must_be_a_sanitize_step():
    with pytest.raises(ConfigError, match=r"^sanitizer\.steps\.0: expected .*SanitizeStep.*got function"):
        DatasetSanitizer(steps=[lambda table, ctx: table])
