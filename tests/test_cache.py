"""The tokenised-data cache: a hit gives the same data; any change to what shapes the data misses."""

from __future__ import annotations

import os

import datasets
import pytest

from modelops.data.dataset import Dataset
from modelops.models.tiny import byte_tokenizer
from modelops.tasks.packing import pack
from modelops.tasks.sft import tokenize_causal_lm
from modelops.train.cache import cached_dataset, tokenization_key

# The second row is 42 byte tokens with BOS and EOS: a max_length of 40 truncates it.
ROWS = [{"prompt": "2+2=", "completion": "4"}, {"prompt": "Capital of France? ", "completion": "Paris, city of lights"}]


class Builds:
    """Tokenise (and maybe pack) the split for real, counting how often it happens."""

    def __init__(self):
        self.count = 0

    def __call__(self, table, tokenizer, max_length, loss_on, packing):
        def build():
            self.count += 1
            out = tokenize_causal_lm(table, "completion", tokenizer, max_length, loss_on=loss_on)
            return pack(out, max_length) if packing else out

        return build


@pytest.fixture
def data():
    return Dataset.from_records(ROWS, format="completion")


def _run(data, builds, cache_dir, tokenizer=None, max_length=64, loss_on="answer", packing=False, records=None):
    tokenizer = tokenizer or byte_tokenizer()
    if records is not None:
        data = Dataset.from_records(records, format="completion")
    key = tokenization_key(data.fingerprint("train"), tokenizer, "completion", max_length, loss_on, packing)
    return cached_dataset(key, builds(data["train"], tokenizer, max_length, loss_on, packing), cache_dir)


def test_same_inputs_hit_and_give_identical_data(data, tmp_path):
    builds = Builds()
    first, hit1 = _run(data, builds, tmp_path)
    second, hit2 = _run(data, builds, tmp_path)
    assert (hit1, hit2) == (False, True) and builds.count == 1
    direct = tokenize_causal_lm(data["train"], "completion", byte_tokenizer(), 64)
    assert first.to_dict() == second.to_dict() == direct.to_dict()


def _no_template():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = None
    return tokenizer


@pytest.mark.parametrize(
    "change",
    [
        {"records": [{"prompt": "2+2=", "completion": "5"}, ROWS[1]]},
        {"tokenizer": _no_template()},
        {"max_length": 40},
        {"loss_on": "all"},
        {"packing": True},
    ],
    ids=["data", "chat-template", "max_length", "loss_on", "packing"],
)
@pytest.mark.filterwarnings("ignore:1 of 2 rows are longer")
def test_any_change_misses_and_rebuilds(data, tmp_path, change):
    builds = Builds()
    base, hit = _run(data, builds, tmp_path)
    changed, hit_changed = _run(data, builds, tmp_path, **change)
    assert (hit, hit_changed) == (False, False) and builds.count == 2
    assert len(os.listdir(tmp_path)) == 2
    _, hit_again = _run(data, builds, tmp_path, **change)
    assert hit_again and builds.count == 2
    if "tokenizer" not in change:  # a chat template does not change how completion rows render
        assert changed.to_dict() != base.to_dict()


def test_a_failed_build_leaves_no_entry(data, tmp_path):
    key = tokenization_key(data.fingerprint("train"), byte_tokenizer(), "completion", 64, "answer", False)

    def broken():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cached_dataset(key, broken, tmp_path)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".tmp-")]
    builds = Builds()
    _, hit = cached_dataset(key, builds(data["train"], byte_tokenizer(), 64, "answer", False), tmp_path)
    assert not hit and builds.count == 1


def test_default_dir_is_under_modelops_cache(data, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_CACHE", str(tmp_path))
    key = {"anything": 1}
    ds, hit = cached_dataset(key, lambda: datasets.Dataset.from_dict({"x": [1, 2]}), None)
    assert not hit and ds["x"] == [1, 2]
    assert len(list((tmp_path / "tokenized").iterdir())) == 1
