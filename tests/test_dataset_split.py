"""`Dataset.split`: disjoint, complete, sized as asked, stratified by label, the same for the same seed."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from modelops.data.dataset import Dataset
from modelops.errors import DataError


def _rows(n: int = 1000) -> list[dict]:
    # labels 60% a, 30% b, 10% c: stratification has something to keep
    return [{"text": f"row {i}", "label": "a" if i % 10 < 6 else ("b" if i % 10 < 9 else "c")} for i in range(n)]


def _texts(dataset: Dataset, split: str) -> list[str]:
    return dataset[split]["text"]


def test_split_is_disjoint_complete_and_sized_as_asked():
    dataset = Dataset.from_records(_rows()).split(validation=0.1, test=0.2, seed=0)
    assert [len(dataset[s]) for s in ("train", "validation", "test")] == [700, 100, 200]
    parts = [set(_texts(dataset, s)) for s in ("train", "validation", "test")]
    assert parts[0] | parts[1] | parts[2] == {row["text"] for row in _rows()}
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_counts_as_well_as_fractions():
    dataset = Dataset.from_records(_rows()).split(validation=50, test=0.25, seed=1)
    assert (len(dataset["train"]), len(dataset["validation"]), len(dataset["test"])) == (700, 50, 250)


def test_same_seed_same_split_other_seed_other_split():
    base = Dataset.from_records(_rows())
    first, again, other = (base.split(validation=0.1, test=0.1, seed=s) for s in (3, 3, 4))
    assert _texts(first, "test") == _texts(again, "test")
    assert first.lineage() == again.lineage()
    assert set(_texts(first, "test")) != set(_texts(other, "test"))


def test_stratified_split_keeps_label_proportions():
    dataset = Dataset.from_records(_rows()).split(validation=0.15, test=0.15, seed=0, stratify=True)
    whole = Counter(row["label"] for row in _rows())
    for split in ("train", "validation", "test"):
        counts = Counter(dataset[split]["label"])
        size = len(dataset[split])
        for label, total in whole.items():
            # hand computation: each label gets its share of the split, give or take one row
            assert abs(counts[label] - size * total / 1000) <= 1, (split, label, counts)


def test_unstratified_split_is_a_plain_shuffle():
    rows = [{"text": f"t{i}", "label": "a" if i < 500 else "b"} for i in range(1000)]
    dataset = Dataset.from_records(rows).split(test=0.5, seed=0, stratify=False)
    assert len(dataset["test"]) == 500
    assert set(Counter(dataset["test"]["label"])) == {"a", "b"}


def test_labels_are_those_of_the_whole_source():
    dataset = Dataset.from_records(_rows(20)).split(test=0.5, seed=0)
    assert dataset.labels == ["a", "b", "c"]


def test_split_keeps_rows_in_their_original_order():
    dataset = Dataset.from_records(_rows()).split(test=0.3, seed=0)
    order = [int(text.split()[1]) for text in _texts(dataset, "train")]
    assert order == sorted(order)


def test_split_of_a_non_classification_format():
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(100)]
    dataset = Dataset.from_records(rows).split(validation=0.2, seed=0)
    assert (len(dataset["train"]), len(dataset["validation"])) == (80, 20)


def test_split_errors():
    dataset = Dataset.from_records(_rows(10))
    with pytest.raises(DataError, match="leaves none for 'train'"):
        dataset.split(validation=0.5, test=0.5)
    with pytest.raises(DataError, match="a fraction must be below 1"):
        dataset.split(validation=1.5)
    with pytest.raises(DataError, match="already exist"):
        dataset.split(test=0.2).split(test=0.2)


def test_from_files_can_split_one_file(tmp_path):
    path = tmp_path / "all.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in _rows()))
    spec = {"validation": 0.1, "test": 0.1, "seed": 0, "stratify": True}
    dataset = Dataset.from_files(train=path, split=spec)
    direct = Dataset.from_jsonl(path).split(validation=0.1, test=0.1, seed=0, stratify=True)
    assert dataset.split_names == ["train", "validation", "test"]
    assert dataset.lineage() == direct.lineage()
