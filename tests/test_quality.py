"""Gopher-style quality heuristics: each rule fires on crafted text (values computed by hand), not on prose."""

from __future__ import annotations

import re

import pytest

from modelops.errors import ConfigError
from modelops.sanitize.quality import QualityFilter
from modelops.sanitize.step import MODIFIED, REASON, StepContext

PROSE = (
    "The river town woke slowly that morning. Fishermen pushed their boats into the grey water while the baker "
    "opened his shutters and set out bread that still steamed in the cold air. Children ran along the harbour "
    "wall, shouting at gulls, and an old woman swept the steps of the chapel as she had done for forty years.\n"
    "By noon the fog had lifted. Visitors arrived on the early train, carrying cameras and maps, asking where "
    "the best view of the cliffs could be found. Nobody in the town agreed on the answer, which was part of "
    "its charm, and most visitors left happy with whichever path they had been sent along."
)

SHORT_EXAMPLES = ["Great movie!", "Loved it!!! 10/10", "Worst. Film. Ever.", "5 stars"]


def _value(reason: str, heuristic: str) -> float:
    match = re.fullmatch(rf"quality:{heuristic}=([0-9.]+)[<>]([0-9.]+)", reason)
    assert match, reason
    return float(match.group(1))


def test_normal_prose_and_short_examples_pass() -> None:
    q = QualityFilter()
    assert q.reason(PROSE) == ""
    for text in SHORT_EXAMPLES:
        assert q.reason(text) == "", text


def test_alpha_ratio() -> None:
    text = "100 200 300 400 500 600 700 800 apple banana"  # 2 of 10 words hold a letter
    reason = QualityFilter().reason(text)
    assert reason.startswith("quality:alpha_ratio=") and reason.endswith("<0.8")
    assert _value(reason, "alpha_ratio") == pytest.approx(2 / 10)
    assert QualityFilter(min_alpha_ratio=0.2).reason(text) == ""  # threshold is inclusive
    assert QualityFilter(min_alpha_ratio=0.21).reason(text) != ""


def test_symbol_ratio() -> None:
    text = "Well... I guess... maybe... we could... try... again #later today friends"  # 5 ellipses + 1 hash, 11 words
    reason = QualityFilter().reason(text)
    assert reason.startswith("quality:symbol_ratio=") and reason.endswith(">0.1")
    assert _value(reason, "symbol_ratio") == pytest.approx(6 / 11, abs=1e-3)
    assert QualityFilter(max_symbol_ratio=0.55).reason(text) == ""
    assert (
        QualityFilter().reason("Prices rose… then fell sharply across every market again today") == ""
    )  # 1 in 10: at the limit


def test_mean_word_length() -> None:
    short = "ab cd ef gh ij kl"  # mean 2
    reason = QualityFilter().reason(short)
    assert reason == "quality:mean_word_length=2<3"
    assert QualityFilter(min_mean_word_length=2).reason(short) == ""
    long = "internationalization telecommunications, responsibilities; "  # lengths 20 18 16 (punctuation stripped)
    long += "extraordinarily uncharacteristically"  # 15 and 20
    assert _value(QualityFilter().reason(long), "mean_word_length") == pytest.approx((20 + 18 + 16 + 15 + 20) / 5)
    assert QualityFilter(max_mean_word_length=18).reason(long) == ""


def test_duplicate_lines() -> None:
    unique = [
        f"Line number {word} tells a different part of the story today."
        for word in ["one", "two", "three", "four", "five", "six"]
    ]
    text = "\n".join(unique + ["Subscribe to our newsletter for daily updates."] * 5)  # 11 lines, 4 repeats
    assert len(text.split()) >= 50
    reason = QualityFilter().reason(text)
    assert reason.startswith("quality:duplicate_line_fraction=")
    assert _value(reason, "duplicate_line_fraction") == pytest.approx(4 / 11, abs=1e-3)
    lenient = QualityFilter(max_duplicate_line_fraction=0.4, max_top_ngram_fraction={2: 1, 3: 1, 4: 1})
    assert lenient.reason(text) == ""


def _spam() -> str:
    fillers = [f"filler{chr(97 + i)}x" for i in range(10)]  # 10 distinct 8-character words
    return "click here now " * 20 + " ".join(fillers)  # 60 + 10 words on one line


@pytest.mark.parametrize(
    ("n", "chars"),
    # "click here" x20, "click here now" x20, "click here now click" x19 overlapping: they cover 58 of the 60 spam words
    [(2, 9 * 20), (3, 12 * 20), (4, 12 * 19 + 5)],
)
def test_top_ngram_fraction(n: int, chars: int) -> None:
    total = 20 * (5 + 4 + 3) + 10 * 8
    limits = {2: 1.0, 3: 1.0, 4: 1.0} | {n: 0.2}
    reason = QualityFilter(max_top_ngram_fraction=limits).reason(_spam())
    assert reason.startswith(f"quality:top_{n}gram_fraction=") and reason.endswith(">0.2")
    assert _value(reason, f"top_{n}gram_fraction") == pytest.approx(chars / total, abs=1e-3)
    assert QualityFilter(max_top_ngram_fraction={2: 1.0, 3: 1.0, 4: 1.0}).reason(_spam()) == ""


def test_default_ngram_thresholds_are_gophers() -> None:
    assert QualityFilter().max_top_ngram_fraction == {2: 0.2, 3: 0.18, 4: 0.16}
    assert QualityFilter().reason(_spam()).startswith("quality:top_2gram_fraction=")


def test_word_gates() -> None:
    numbers = "1 2 3 4"
    assert QualityFilter().reason(numbers) == ""  # under min_words
    assert QualityFilter(min_words=4).reason(numbers).startswith("quality:alpha_ratio=")
    repeated = "good film good film good film"  # 6 words: repetition rules wait for 50
    assert QualityFilter().reason(repeated) == ""
    assert QualityFilter(min_words_repetition=6).reason(repeated).startswith("quality:top_2gram_fraction=")


def _table(rows):
    import datasets

    return datasets.Dataset.from_list(rows)


def test_step_classification_and_chat() -> None:
    rows = [
        {"text": PROSE, "label": 1},
        {"text": "1 2 3 4 5 6 7 8 apple banana", "label": 0},
        {"text": "ok", "label": 1},
    ]
    table = _table(rows)
    out = QualityFilter()(table, StepContext(format="classification"))
    assert out[REASON] == ["", "quality:alpha_ratio=0.2<0.8", ""]
    assert out[MODIFIED] == [False] * 3
    assert out["text"] == [r["text"] for r in rows] and table.to_list() == rows

    chat = [
        {"messages": [{"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": PROSE}]},
        {"messages": [{"role": "user", "content": "## ## ##"}, {"role": "assistant", "content": "# # # ok"}]},
    ]
    out = QualityFilter()(_table(chat), StepContext(format="chat"))
    assert out[REASON][0] == "" and out[REASON][1].startswith("quality:alpha_ratio=")
    empty = QualityFilter()(_table([{"text": "x"}]).select([]), StepContext())
    assert REASON in empty.column_names and len(empty) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_alpha_ratio": 1.5}, "quality.min_alpha_ratio"),
        ({"max_symbol_ratio": -0.1}, "quality.max_symbol_ratio"),
        ({"max_duplicate_line_fraction": 2}, "quality.max_duplicate_line_fraction"),
        ({"max_top_ngram_fraction": {2: 1.2}}, "quality.max_top_ngram_fraction.2"),
        ({"max_top_ngram_fraction": {0: 0.2}}, "quality.max_top_ngram_fraction"),
        ({"min_mean_word_length": -1}, "quality.min_mean_word_length"),
        ({"max_mean_word_length": 2}, "quality.max_mean_word_length"),
        ({"min_words": -5}, "quality.min_words"),
        ({"min_words_repetition": -1}, "quality.min_words_repetition"),
    ],
)
def test_bad_parameters(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        QualityFilter(**kwargs)


def test_string_ngram_keys_from_config() -> None:
    assert QualityFilter(max_top_ngram_fraction={"3": 0.5}).max_top_ngram_fraction == {3: 0.5}
