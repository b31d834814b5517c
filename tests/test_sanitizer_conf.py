"""conf/sanitizer options from the real YAML: they validate, instantiate and run."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from modelops.config.build import compose, instantiate
from modelops.config.validate import DEFAULT_ALLOWED, check_node
from tests.test_sanitizer import FORMATS, make_dataset


def _sanitizer(option: str, *overrides: str):
    cfg = compose([f"sanitizer={option}", *overrides])
    check_node("sanitizer", OmegaConf.to_container(cfg.sanitizer, resolve=True), DEFAULT_ALLOWED)
    return instantiate(cfg.sanitizer, "sanitizer")


@pytest.mark.parametrize("option", ["default", "strict", "none"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_option_runs_on_every_format(option, fmt):
    sanitizer = _sanitizer(option)
    clean = sanitizer.sanitize(make_dataset(fmt, with_test=True))
    ran = [s["step"] for s in sanitizer.report.splits["train"]["steps"]]
    assert ("chat_structure" in ran) == (option != "none" and fmt == "chat")
    assert len(clean["train"]) <= 4


def test_default_keeps_the_demo_data_to_empty_rows_and_duplicates():
    from modelops.data.demo_sentiment import sentiment

    dataset = sentiment(n_train=320, n_validation=32, n_test=128, seed=0)
    sanitizer = _sanitizer("default")
    sanitizer.sanitize(dataset)
    assert {row["step"] for row in sanitizer.report.rejected} == {"drop_empty", "exact_dedup"}
    steps = [s["step"] for s in sanitizer.report.splits["train"]["steps"]]
    assert steps == ["normalize", "drop_empty", "exact_dedup", "near_dedup", "pii", "decontaminate"]


def test_strict_drops_what_default_keeps():
    import datasets

    from modelops.data.dataset import Dataset

    rows = [
        {"text": "a perfectly ordinary review of a decent phone", "label": "pos"},
        {"text": "call me on +44 20 7946 0958 about the phone", "label": "pos"},  # PII: masked vs dropped
        {"text": "12 34 56 78 90 11 12 13", "label": "neg"},  # numbers only: fails the quality rules
        {"text": "ok", "label": "neg"},  # one word: under strict's 3-word minimum
    ]
    dataset = Dataset({"train": datasets.Dataset.from_list(rows)}, format="classification")
    assert len(_sanitizer("default").sanitize(dataset)["train"]) == 4
    strict = _sanitizer("strict")
    assert strict.sanitize(dataset)["train"]["text"] == [rows[0]["text"]]
    reasons = {s["step"]: s["reasons"] for s in strict.report.splits["train"]["steps"]}
    assert reasons["length"] == {"too_short": 1} and reasons["pii"] == {"pii": 1}
    assert reasons["quality"] == {"quality": 1}
