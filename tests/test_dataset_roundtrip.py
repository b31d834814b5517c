"""Saving and reloading keeps every row and value; fingerprints follow content, not files."""

from __future__ import annotations

import json

import pytest

from modelops.data.dataset import Dataset

CLASSIFICATION = [
    {"text": "plain", "label": 1},
    {"text": "0042", "label": 0},
    {"text": "ünïcødé — 日本語 🙂", "label": 1},
    {"text": 'quotes " and \\ backslash, comma', "label": 0},
    {"text": "new\nline\ttab \u0001 control", "label": 1},
    {"text": "", "label": 0},
]

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Réponds en français."},
            {"role": "user", "content": 'What is "2+2"?\n'},
            {"role": "assistant", "content": "4 🙂"},
        ],
        "id": 1,
        "score": 0.1,
        "tag": None,
    },
    {
        "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "{}"}],
        "id": 2,
        "score": 2.0,
        "tag": "t",
    },
]

STRING_LABELS = [{"text": "a", "label": "7"}, {"text": "b", "label": "pos"}]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv", ".tsv", ".json"])
def test_classification_round_trip(tmp_path, suffix):
    dataset = Dataset.from_records(CLASSIFICATION)
    path = dataset.save(tmp_path / f"out{suffix}")
    back = Dataset.from_files(train=path)
    assert back["train"].to_list() == CLASSIFICATION
    assert back.fingerprint("train") == dataset.fingerprint("train")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".json"])
def test_chat_round_trip_with_nested_messages_ints_floats_and_nulls(tmp_path, suffix):
    dataset = Dataset.from_records(CHAT)
    path = dataset.save(tmp_path / f"chat{suffix}")
    back = Dataset.from_files(train=path)
    assert back["train"].to_list() == CHAT
    assert back.fingerprint("train") == dataset.fingerprint("train")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_string_labels_that_look_like_ints_stay_strings(tmp_path, suffix):
    dataset = Dataset.from_records(STRING_LABELS)
    back = Dataset.from_files(train=dataset.save(tmp_path / f"s{suffix}"))
    assert back["train"].to_list() == STRING_LABELS


def test_jsonl_output_is_plain_json_per_line(tmp_path):
    path = Dataset.from_records(CHAT).save(tmp_path / "chat.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == CHAT
    assert "日本語" in Dataset.from_records(CLASSIFICATION).save(tmp_path / "c.jsonl").read_text(encoding="utf-8")


def test_instruction_round_trip_keeps_null_input(tmp_path):
    rows = [
        {"instruction": "Add.", "input": None, "output": "3"},
        {"instruction": "Cap?", "input": "Peru", "output": "Lima"},
    ]
    for suffix in (".jsonl", ".parquet"):
        back = Dataset.from_files(train=Dataset.from_records(rows).save(tmp_path / f"i{suffix}"))
        assert back["train"].to_list() == rows


def test_csv_refuses_nested_columns(tmp_path):
    from modelops.errors import DataError

    with pytest.raises(DataError, match="CSV cannot hold the nested column"):
        Dataset.from_records(CHAT).save(tmp_path / "chat.csv")
    assert not (tmp_path / "chat.csv").exists()


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    dataset = Dataset.from_records(CLASSIFICATION)
    target = tmp_path / "out.jsonl"
    target.write_text("old content\n")
    dataset.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert len(target.read_text(encoding="utf-8").splitlines()) == len(CLASSIFICATION)


def test_fingerprint_changes_with_one_character_and_not_with_a_reload(tmp_path):
    rows = [{"text": f"sentence number {i}", "label": i % 3} for i in range(2000)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    first = Dataset.from_jsonl(path).fingerprint("train")
    assert Dataset.from_jsonl(path).fingerprint("train") == first
    changed = [dict(row) for row in rows]
    changed[1234]["text"] = changed[1234]["text"].replace("number", "numbex")
    assert Dataset.from_records(changed).fingerprint("train") != first
    assert Dataset.from_records(rows).fingerprint("train") == first
    swapped = rows[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert Dataset.from_records(swapped).fingerprint("train") != first


def test_fingerprint_tells_int_from_string_and_null_from_empty():
    assert Dataset.from_records([{"text": "a", "label": 1}]).fingerprint("train") != Dataset.from_records(
        [{"text": "a", "label": "1"}]
    ).fingerprint("train")
    with_null = Dataset.from_records([{"instruction": "i", "input": None, "output": "o"}])
    with_empty = Dataset.from_records([{"instruction": "i", "input": "", "output": "o"}])
    assert with_null.fingerprint("train") != with_empty.fingerprint("train")


def test_fingerprint_does_not_depend_on_column_order_or_arrow_chunking():
    import datasets
    import pyarrow as pa

    rows = [{"text": f"t{i}", "label": i % 2} for i in range(100)]
    base = Dataset.from_records(rows).fingerprint("train")
    reordered = [{"label": r["label"], "text": r["text"]} for r in rows]
    assert Dataset.from_records(reordered).fingerprint("train") == base
    chunked = pa.concat_tables([pa.Table.from_pylist(rows[:37]), pa.Table.from_pylist(rows[37:])])
    assert Dataset({"train": datasets.Dataset(chunked)}).fingerprint("train") == base


def test_save_to_disk_keeps_labels_format_and_report(tmp_path):
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}, "broken"]
    source = tmp_path / "d.jsonl"
    source.write_text("".join((json.dumps(r) if isinstance(r, dict) else r) + "\n" for r in rows))
    dataset = Dataset.from_jsonl(source, on_error="skip", labels=["pos", "neg"]).split(test=1, seed=0)
    dataset.save_to_disk(tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / "dataset.json").read_text())
    assert meta["label2id"] == {"pos": 0, "neg": 1}
    back = Dataset.load_from_disk(tmp_path / "saved")
    assert back.labels == ["pos", "neg"] and back.label2id == {"pos": 0, "neg": 1} and back.format == "classification"
    assert back.split_names == dataset.split_names
    assert back.lineage() == dataset.lineage()
    assert back.skipped["train"] == {"not_json": 1}
