"""Formats detected or declared, column mappings, ShareGPT, and every loader giving the same rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from modelops.data.dataset import Dataset
from modelops.errors import DataError

ROWS = {
    "classification": [{"text": "great film", "label": "pos"}, {"text": "dull film", "label": "neg"}],
    "text": [{"text": "one two three"}, {"text": "four five"}],
    "completion": [{"prompt": "The capital of France is", "completion": " Paris."}],
    "instruction": [
        {"instruction": "Name the capital.", "input": "Japan", "output": "Tokyo"},
        {"instruction": "Add 2 and 3.", "input": None, "output": "5"},
    ],
    "chat": [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
            ]
        }
    ],
}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", list(ROWS))
def test_format_is_detected_from_the_columns(tmp_path, fmt):
    dataset = Dataset.from_jsonl(_jsonl(tmp_path / "d.jsonl", ROWS[fmt]))
    assert dataset.format == fmt
    assert dataset["train"].to_list() == ROWS[fmt]


@pytest.mark.parametrize("fmt", list(ROWS))
def test_records_give_the_same_rows_as_the_file(tmp_path, fmt):
    from_file = Dataset.from_jsonl(_jsonl(tmp_path / "d.jsonl", ROWS[fmt]))
    from_records = Dataset.from_records(ROWS[fmt])
    assert from_records.format == fmt
    assert from_records["train"].to_list() == from_file["train"].to_list()
    assert from_records.fingerprint("train") == from_file.fingerprint("train")


def test_declared_format_wins_over_detection(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ROWS["classification"])
    dataset = Dataset.from_jsonl(path, format="text")
    assert dataset.format == "text" and dataset.labels is None
    assert dataset["train"].column_names == ["text", "label"]  # label kept as an extra column


def test_column_mapping_renames_source_to_canonical(tmp_path):
    rows = [{"sentence": "nice", "sentiment": "pos", "id": 7}, {"sentence": "awful", "sentiment": "neg", "id": 8}]
    path = _jsonl(tmp_path / "d.jsonl", rows)
    dataset = Dataset.from_jsonl(path, columns={"text": "sentence", "label": "sentiment"})
    assert dataset.format == "classification"
    expected = [{"text": r["sentence"], "label": r["sentiment"], "id": r["id"]} for r in rows]
    assert dataset["train"].to_list() == expected
    reverse = Dataset.from_jsonl(path, columns={"sentence": "text", "sentiment": "label"})
    assert reverse["train"].to_list() == expected


def test_column_mapping_on_the_slow_path_names_the_mapped_field(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"q": "a", "a": "b"}, {"q": "c"}])
    with pytest.raises(DataError, match="missing required field 'completion'"):
        Dataset.from_jsonl(path, columns={"prompt": "q", "completion": "a"})


def test_sharegpt_conversations_become_messages(tmp_path):
    turns = [
        {"from": "system", "value": "Be kind."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello!"},
    ]
    expected = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    path = _jsonl(tmp_path / "d.jsonl", [{"conversations": turns, "id": "a"}])
    for dataset in (Dataset.from_jsonl(path), Dataset.from_records([{"conversations": turns, "id": "a"}])):
        assert dataset.format == "chat"
        assert dataset["train"].to_list() == [{"messages": expected, "id": "a"}]


def test_messages_keep_only_role_and_content(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi", "name": "bob"}, {"role": "assistant", "content": "yo"}]}]
    dataset = Dataset.from_jsonl(_jsonl(tmp_path / "d.jsonl", rows))
    assert dataset["train"][0]["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]


def test_json_array_and_data_object(tmp_path):
    rows = ROWS["instruction"]
    array = tmp_path / "a.json"
    array.write_text(json.dumps(rows))
    wrapped = tmp_path / "b.json"
    wrapped.write_text(json.dumps({"data": rows, "version": 1}))
    for path in (array, wrapped):
        dataset = Dataset.from_json(path)
        assert dataset.format == "instruction" and dataset["train"].to_list() == rows


def test_csv_and_tsv_keep_text_as_strings_and_int_labels_as_ints(tmp_path):
    rows = [
        {"text": "007", "label": 1},
        {"text": 'say "hi", then\nleave', "label": 0},
        {"text": "日本語 ✓", "label": 1},
    ]
    for name, delimiter in (("d.csv", ","), ("d.tsv", "\t")):
        path = tmp_path / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["text", "label"], delimiter=delimiter)
            writer.writeheader()
            writer.writerows(rows)
        dataset = Dataset.from_csv(path)
        assert dataset["train"].to_list() == rows
        assert dataset.labels == ["0", "1"]


def test_csv_with_an_explicit_delimiter(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("text;label\nhello;pos\nbye;neg\n")
    dataset = Dataset.from_csv(path, delimiter=";")
    assert dataset["train"].to_list() == [{"text": "hello", "label": "pos"}, {"text": "bye", "label": "neg"}]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS["chat"]), path)
    dataset = Dataset.from_parquet(path)
    assert dataset.format == "chat" and dataset["train"].to_list() == ROWS["chat"]


def test_hf_directory_with_splits_and_single_dataset(tmp_path):
    import datasets

    train, test = ROWS["classification"], ROWS["classification"][:1]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)}
    ).save_to_disk(str(tmp_path / "dict"))
    dataset = Dataset.from_hf(tmp_path / "dict")
    assert dataset.split_names == ["train", "test"] and dataset["test"].to_list() == test
    assert Dataset.from_hf(tmp_path / "dict", splits=["test"]).split_names == ["test"]
    datasets.Dataset.from_list(train).save_to_disk(str(tmp_path / "single"))
    single = Dataset.from_hf(tmp_path / "single")
    assert single.split_names == ["train"] and single["train"].to_list() == train
    assert Dataset.from_files(train=tmp_path / "single")["train"].to_list() == train


def test_from_files_reads_each_split_by_extension(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    train = _jsonl(tmp_path / "train.jsonl", ROWS["classification"])
    validation = tmp_path / "validation.csv"
    validation.write_text("text,label\nok film,pos\n")
    test = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS["classification"][1:]), test)
    dataset = Dataset.from_files(train=train, validation=validation, test=test, other=None)
    assert dataset.split_names == ["train", "validation", "test"]
    assert dataset["validation"].to_list() == [{"text": "ok film", "label": "pos"}]
    assert dataset.labels == ["neg", "pos"] and dataset.label2id == {"neg": 0, "pos": 1}
    assert dataset.id2label == {0: "neg", 1: "pos"}


def test_from_files_checks_later_splits_against_the_train_format(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", ROWS["completion"])
    test = _jsonl(tmp_path / "test.jsonl", ROWS["text"])
    with pytest.raises(DataError, match=r"test.jsonl:1: missing required field 'prompt'"):
        Dataset.from_files(train=train, test=test)


def test_int_labels_name_ids_and_explicit_labels_keep_their_order(tmp_path):
    rows = [{"text": "a", "label": 2}, {"text": "b", "label": 0}]
    assert Dataset.from_records(rows).labels == ["0", "1", "2"]
    named = Dataset.from_records(ROWS["classification"], labels=["pos", "neg"])
    assert named.label2id == {"pos": 0, "neg": 1}


def test_legacy_api_still_works(tmp_path):
    import datasets

    from modelops.data import loaders

    path = _jsonl(tmp_path / "d.jsonl", ROWS["classification"])
    assert loaders.read_jsonl(path).to_list() == ROWS["classification"]
    dataset = Dataset({"train": datasets.Dataset.from_list(ROWS["classification"])})
    assert dataset.format == "classification" and "train" in dataset and len(dataset) == 2
    assert dataset.eval_split() == "train"
    replaced = dataset.replace(test=datasets.Dataset.from_list(ROWS["classification"][:1]))
    assert replaced.eval_split() == "test" and replaced.labels == dataset.labels
    assert Dataset.from_files("classification", train=str(path)).split_names == ["train"]
