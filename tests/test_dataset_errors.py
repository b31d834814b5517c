"""Every bad input gets one DataError naming the file and line (or row) and the field; skip mode counts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelops.data.dataset import Dataset
from modelops.errors import ConfigError, DataError

GOOD = [{"text": "good movie", "label": "pos"}, {"text": "bad movie", "label": "neg"}]


def _jsonl(path: Path, lines: list) -> Path:
    """Write lines verbatim: str lines as they are, other values as JSON."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def _raises(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_line_that_is_not_json(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [*GOOD, '{"text": "x", "label": ', GOOD[0]])
    message = _raises("not valid JSON", Dataset.from_jsonl, path)
    assert f"{path}:3:" in message


def test_json_value_that_is_not_an_object(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [GOOD[0], ["good movie", "pos"], GOOD[1]])
    message = _raises("expected a JSON object, got list", Dataset.from_jsonl, path)
    assert f"{path}:2:" in message


def test_missing_required_field(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [*GOOD, {"text": "no label here"}])
    message = _raises("missing required field 'label'", Dataset.from_jsonl, path, format="classification")
    assert f"{path}:3:" in message


def test_label_that_is_a_list(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [*GOOD, {"text": "x", "label": ["pos", "neg"]}])
    message = _raises(r"field 'label': expected a string or an integer, got list", Dataset.from_jsonl, path)
    assert f"{path}:3:" in message


def test_label_that_is_a_dict(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "x", "label": {"name": "pos"}}, *GOOD])
    message = _raises(r"field 'label': expected a string or an integer, got object", Dataset.from_jsonl, path)
    assert f"{path}:1:" in message


def test_labels_mixing_int_and_str(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "pos"}])
    message = _raises("field 'label': string here, but integer in earlier rows", Dataset.from_jsonl, path)
    assert f"{path}:2:" in message


def test_text_that_is_not_a_string(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [*GOOD, {"text": 42, "label": "pos"}])
    message = _raises("field 'text': expected a string, got integer", Dataset.from_jsonl, path)
    assert f"{path}:3:" in message


def test_messages_that_are_not_a_list(tmp_path):
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    path = _jsonl(tmp_path / "d.jsonl", [chat, {"messages": "hi there"}])
    message = _raises("field 'messages': expected a list of messages, got string", Dataset.from_jsonl, path)
    assert f"{path}:2:" in message


def test_empty_message_list(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}, {"messages": []}])
    message = _raises("field 'messages': the list is empty", Dataset.from_jsonl, path)
    assert f"{path}:2:" in message


def test_role_outside_the_allowed_ones(tmp_path):
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}
    path = _jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}, bad])
    message = _raises(r"messages\[1\]'.role: 'robot' is not one of", Dataset.from_jsonl, path)
    assert f"{path}:2:" in message


def test_sharegpt_speaker_outside_the_allowed_ones(tmp_path):
    turns = [{"from": "human", "value": "hi"}, {"from": "alien", "value": "zz"}]
    path = _jsonl(tmp_path / "d.jsonl", [{"conversations": turns}])
    message = _raises(r"conversations\[1\]'.from: 'alien'", Dataset.from_jsonl, path)
    assert f"{path}:1:" in message


def test_empty_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"")
    _raises("the file is empty", Dataset.from_jsonl, path)


def test_file_of_blank_lines_holds_no_rows(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n\n  \n")
    _raises("holds no rows", Dataset.from_jsonl, path)


def test_missing_file(tmp_path):
    _raises("file not found", Dataset.from_jsonl, tmp_path / "nope.jsonl")
    _raises("file not found", Dataset.from_files, train=tmp_path / "nope.csv")


def test_undecodable_bytes(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "fine", "label": "pos"}\n{"text": "caf\xe9", "label": "pos"}\n')
    message = _raises("not UTF-8", Dataset.from_jsonl, path)
    assert f"{path}:2:" in message


def test_undecodable_bytes_in_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nfine,pos\ncaf\xe9,neg\n")
    message = _raises("not UTF-8", Dataset.from_csv, path)
    assert f"{path}:3:" in message


def test_utf8_bom_is_accepted(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(row) + "\n" for row in GOOD).encode())
    csv = tmp_path / "d.csv"
    csv.write_bytes(b"\xef\xbb\xbftext,label\ngood movie,pos\nbad movie,neg\n")
    for dataset in (Dataset.from_jsonl(jsonl), Dataset.from_csv(csv)):
        assert dataset["train"].to_list() == GOOD


def test_bom_then_a_bad_line_still_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a", "label": "pos"}\nnot json\n')
    assert f"{path}:2:" in _raises("not valid JSON", Dataset.from_jsonl, path)


def test_format_that_cannot_be_detected(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"query": "q", "reply": "a"}])
    message = _raises("cannot detect the format", Dataset.from_jsonl, path)
    assert "['query', 'reply']" in message
    for tried in ("chat (messages)", "instruction (instruction, output", "completion (prompt, completion)"):
        assert tried in message
    assert "classification (text, label)" in message and "text (text)" in message


def test_unknown_format_name(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", GOOD)
    _raises("unknown format 'tabular'", Dataset.from_jsonl, path, format="tabular")


def test_unknown_label_in_test_split(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", GOOD)
    test = _jsonl(tmp_path / "test.jsonl", [GOOD[0], {"text": "meh", "label": "neutral"}])
    message = _raises("'neutral' is not one of the train labels", Dataset.from_files, train=train, test=test)
    assert str(test) in message and "row 2" in message and "field 'label'" in message


def test_unknown_int_label_in_validation_split(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1}])
    validation = _jsonl(tmp_path / "validation.jsonl", [{"text": "c", "label": 2}])
    message = _raises("2 is not one of the train labels", Dataset.from_files, train=train, validation=validation)
    assert "row 1" in message


def test_csv_row_with_the_wrong_number_of_fields(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\nbad,neg,extra\n")
    message = _raises(r"expected 2 fields \['text', 'label'\], got 3", Dataset.from_csv, path)
    assert f"{path}:3:" in message


def test_csv_missing_label_cell(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\nbad,\n")
    message = _raises("missing required field 'label'", Dataset.from_csv, path)
    assert f"{path}:3:" in message


def test_json_array_that_is_not_valid_json(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"text": "a", "label": "pos"},\n  {"text": "b" "label": "neg"}\n]\n')
    message = _raises("not valid JSON", Dataset.from_json, path)
    assert f"{path}:3:" in message


def test_json_document_that_is_not_rows(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"rows": []}')
    _raises("expected a JSON array of rows, or an object with a 'data' array", Dataset.from_json, path)


def test_json_array_row_with_a_wrong_type(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": [*GOOD, {"text": "c", "label": [1]}]}))
    message = _raises("field 'label'", Dataset.from_json, path)
    assert f"{path}: row 3" in message


def test_records_name_the_row():
    message = _raises(
        "missing required field 'text'", Dataset.from_records, [*GOOD, {"label": "pos"}], format="classification"
    )
    assert "row 3" in message


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet")
    _raises("not a readable Parquet file", Dataset.from_parquet, path)


def test_column_mapping_to_a_column_that_is_not_there(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", GOOD)
    _raises("there is no column 'sentence'", Dataset.from_jsonl, path, columns={"text": "sentence"})


def test_bad_line_far_into_a_file_is_named_exactly(tmp_path):
    rows = [{"text": f"row {i}", "label": "pos" if i % 2 else "neg"} for i in range(25_000)]
    lines = [json.dumps(row) for row in rows]
    lines.insert(23_456, '{"text": "broken"')
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert f"{path}:23457:" in _raises("not valid JSON", Dataset.from_jsonl, path)


def test_on_error_must_be_raise_or_skip(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", GOOD)
    with pytest.raises(ConfigError, match="on_error"):
        Dataset.from_jsonl(path, on_error="ignore")


def test_skip_counts_each_reason_and_keeps_examples(tmp_path):
    lines = [
        GOOD[0],
        "not json",
        [1, 2],
        {"text": "no label"},
        {"text": "x", "label": ["a"]},
        GOOD[1],
        "",
        "also { not json",
    ]
    path = _jsonl(tmp_path / "d.jsonl", lines)
    dataset = Dataset.from_jsonl(path, on_error="skip", format="classification")
    assert dataset["train"].to_list() == GOOD
    assert dataset.skipped == {"train": {"not_json": 2, "not_object": 1, "missing_field": 1, "wrong_type": 1}}
    report = dataset.load_report["train"]
    assert report["rows"] == 2 and report["source"] == str(path)
    assert report["examples"][0].startswith(f"{path}:2:")
    assert len(report["examples"]) == 5


def test_skip_drops_eval_rows_with_unknown_labels(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", GOOD)
    test = _jsonl(tmp_path / "test.jsonl", [GOOD[0], {"text": "meh", "label": "neutral"}, GOOD[1]])
    dataset = Dataset.from_files(train=train, test=test, on_error="skip")
    assert dataset["test"].to_list() == [GOOD[0], GOOD[1]]
    assert dataset.skipped["test"] == {"unknown_label": 1}


def test_skip_with_every_row_bad(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ["nope", "still nope"])
    _raises("every row was skipped", Dataset.from_jsonl, path, on_error="skip")
