"""Every conf/dataset option instantiates from its YAML; the demo sets are deterministic and well formed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from modelops.data import demo_formats
from modelops.data.dataset import Dataset

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
OPTIONS = sorted(path.stem for path in CONF.glob("*.yaml"))
DEMOS = {"chat_demo": "chat", "instruction_demo": "instruction", "completion_demo": "completion", "text_demo": "text"}


def _config(name: str, **overrides) -> object:
    config = OmegaConf.load(CONF / f"{name}.yaml")
    return OmegaConf.merge(config, overrides)


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_instantiates(tmp_path, name):
    overrides = {}
    if OmegaConf.is_missing(OmegaConf.load(CONF / f"{name}.yaml"), "train"):
        train = tmp_path / "train.jsonl"
        train.write_text("".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(20)))
        overrides = {"train": str(train)}
    dataset = instantiate(_config(name, **overrides))
    assert isinstance(dataset, Dataset) and len(dataset) > 0


@pytest.mark.parametrize("name, fmt", DEMOS.items())
def test_demo_options_have_their_format_and_three_splits(name, fmt):
    dataset = instantiate(_config(name))
    assert dataset.format == fmt
    assert dataset.split_names == ["train", "validation", "test"]
    assert 200 <= len(dataset) <= 1000


@pytest.mark.parametrize("name", DEMOS)
def test_demo_data_is_the_same_every_time_and_differs_by_seed(name):
    make = getattr(demo_formats, name)
    assert make(n=100, seed=1).lineage() == make(n=100, seed=1).lineage()
    assert make(n=100, seed=1).lineage() != make(n=100, seed=2).lineage()


def test_chat_demo_answers_are_right():
    for row in demo_formats.chat_demo(n=200)["train"]:
        question, answer = row["messages"][1]["content"], row["messages"][2]["content"]
        a, op, b = question.removeprefix("What is ").removesuffix("?").split()
        assert answer == f"{a} {op} {b} = {int(a) + int(b) if op == '+' else int(a) - int(b)}"


def test_instruction_demo_answers_are_right():
    for row in demo_formats.instruction_demo(n=200)["train"]:
        if row["input"] is None:
            a, b = row["instruction"].removeprefix("Add ").removesuffix(".").split(" and ")
            assert row["output"] == str(int(a) + int(b))
        else:
            assert row["output"] == demo_formats.CAPITALS[row["input"]]


def test_files_option_with_a_split_spec_and_mapping(tmp_path):
    train = tmp_path / "all.csv"
    train.write_text("sentence,sentiment\n" + "".join(f"s{i},{'pos' if i % 3 else 'neg'}\n" for i in range(60)))
    config = _config(
        "files",
        train=str(train),
        columns={"text": "sentence", "label": "sentiment"},
        split={"validation": 0.2, "seed": 0},
    )
    dataset = instantiate(config)
    assert dataset.split_names == ["train", "validation"]
    assert (len(dataset["train"]), len(dataset["validation"])) == (48, 12)
    assert dataset.labels == ["neg", "pos"]
