"""Bad sanitizer config: one ConfigError naming the key, raised before any row is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from modelops.config.targets import trusting
from modelops.errors import ConfigError
from modelops.sanitize import DatasetSanitizer
from modelops.sanitize.registry import STEPS
from modelops.sanitize.step import SanitizeStep, mark
from tests.test_sanitizer import make_dataset


def _error(steps, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        DatasetSanitizer(steps=steps, **kwargs)
    return str(info.value)


def test_unknown_step_name_lists_the_known_ones():
    message = _error(["normalize", {"name": "near_dedupe"}])
    assert message.startswith("sanitizer.steps.1.name:")
    assert "'near_dedup'" in message  # did you mean
    assert all(name in message for name in STEPS)


def test_unknown_target_is_named():
    message = _error([{"_target_": "modelops.sanitize.filters.NoSuchFilter"}])
    assert message.startswith("sanitizer.steps.0._target_:") and "does not exist" in message
    message = _error([{"_target_": "no_such_package.Step"}])
    assert message.startswith("sanitizer.steps.0._target_:") and "outside the allowed prefixes" in message
    with trusting(["no_such_package"]):
        message = _error([{"_target_": "no_such_package.Step"}])
    assert message.startswith("sanitizer.steps.0._target_:") and "cannot import" in message


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"name": "near_dedup", "threshold": 1.5}, "sanitizer.steps.2.threshold"),
        ({"name": "length", "min_length": -1}, "sanitizer.steps.2.min_length"),
        ({"name": "length", "unit": "lines"}, "sanitizer.steps.2.unit"),
        ({"name": "exact_dedup", "on_conflict": "merge"}, "sanitizer.steps.2.on_conflict"),
        ({"name": "pii", "types": ["PASSPORT"]}, "sanitizer.steps.2.types"),
        ({"name": "quality", "min_alpha_ratio": 2}, "sanitizer.steps.2.min_alpha_ratio"),
        ({"name": "decontaminate", "min_words": -3}, "sanitizer.steps.2.min_words"),
        ({"name": "chat_structure", "roles": ["robot"]}, "sanitizer.steps.2.roles"),
        ({"name": "near_dedup", "threshhold": 0.5}, "sanitizer.steps.2.threshhold"),  # unknown key
        ({"name": "near_dedup", "threshold": "high"}, "sanitizer.steps.2.threshold"),  # wrong type
        ({"_target_": "modelops.sanitize.near_dedup.NearDedup", "threshold": 1.5}, "sanitizer.steps.2.threshold"),
        ({"name": "chat_structure", "only_for": ["tweets"]}, "sanitizer.steps.2.only_for"),
    ],
)
def test_bad_parameter_names_its_key(entry, key):
    message = _error(["normalize", "drop_empty", entry])
    assert message.startswith(f"{key}:"), message


def test_unknown_key_suggests_the_right_one():
    assert "did you mean 'threshold'" in _error([{"name": "near_dedup", "threshhold": 0.5}])


@dataclass
class _Probe(SanitizeStep):
    """A step that records whether it ever saw a row."""

    calls: int = 0
    name: ClassVar[str] = "probe"

    def __call__(self, table, ctx):
        self.calls += 1
        return mark(table, [""] * len(table))


@pytest.mark.parametrize(
    ("fmt", "entry", "key", "words"),
    [
        ("classification", "chat_structure", "sanitizer.steps.1", "['chat']"),
        ("text", {"name": "length", "unit": "tokens", "max_length": 8}, "sanitizer.steps.1.unit", "tokenizer"),
    ],
)
def test_step_that_cannot_run_on_the_data_fails_before_any_row_is_read(fmt, entry, key, words):
    probe = _Probe()
    sanitizer = DatasetSanitizer(steps=[probe, entry])
    with pytest.raises(ConfigError) as info:
        sanitizer.sanitize(make_dataset(fmt))
    assert str(info.value).startswith(f"{key}:") and words in str(info.value)
    assert probe.calls == 0


def test_exact_dedup_conflicts_on_text_data_are_fine():
    clean = DatasetSanitizer(steps=[{"name": "exact_dedup", "on_conflict": "drop"}]).sanitize(make_dataset("text"))
    assert len(clean["train"]) == 4  # no answer column: no conflicts, and the rows all differ as written


def test_only_for_skips_the_step_on_other_formats():
    sanitizer = DatasetSanitizer(steps=["drop_empty", {"name": "chat_structure", "only_for": ["chat"]}])
    sanitizer.sanitize(make_dataset("classification"))
    assert [s["step"] for s in sanitizer.report.splits["train"]["steps"]] == ["drop_empty"]
    sanitizer.sanitize(make_dataset("chat"))
    assert [s["step"] for s in sanitizer.report.splits["train"]["steps"]] == ["drop_empty", "chat_structure"]


def test_hydra_config_error_names_the_full_key():
    from modelops.config.build import compose, instantiate

    cfg = compose(["sanitizer=default", "sanitizer.steps.4.threshold=1.5"])
    assert cfg.sanitizer.steps[4].name == "near_dedup"
    with pytest.raises(ConfigError) as info:
        instantiate(cfg.sanitizer, "sanitizer")
    assert str(info.value).startswith("sanitizer.steps.4.threshold:")


def test_unloadable_tokenizer_is_a_config_error(tmp_path):
    message = _error([], tokenizer=str(tmp_path / "missing"))
    assert message.startswith("sanitizer.tokenizer:")
