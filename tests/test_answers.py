"""Answer filters: lm-eval's GSM8K strict-match regex, last number, choice letter, numeric canonical form."""

import re

import pytest

from modelops.data.answers import (
    GSM8K_FILTERS,
    Extraction,
    apply_filters,
    build_filters,
    extract_and_match,
    resolve_filters,
)
from modelops.errors import ConfigError

GSM8K_REFERENCE = "Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips altogether.\n#### 1,072"


def test_gsm8k_filter_extracts_like_lm_eval_strict_match():
    # lm-eval's gsm8k.yaml strict-match: regex "#### (\-?[0-9\.\,]+)", group 1 of the first match.
    reference = re.search(r"#### (\-?[0-9\.\,]+)", GSM8K_REFERENCE).group(1)
    assert reference == "1,072"
    filters = build_filters(GSM8K_FILTERS)
    assert apply_filters(filters, GSM8K_REFERENCE) == "1072"  # then the numeric canonical form
    assert extract_and_match(filters, "so #### 1072", GSM8K_REFERENCE).match is True
    # A bare "1072" has no marker: strict-match extracts nothing and scores 0.
    assert extract_and_match(filters, "1072", GSM8K_REFERENCE) == Extraction(None, "1072", False)


def test_auto_picks_the_gsm8k_filter_only_for_marked_references():
    assert resolve_filters("auto", ["a", "b #### 3"]) == GSM8K_FILTERS
    assert resolve_filters("auto", ["a", "b"]) == []
    assert resolve_filters([], ["#### 3"]) == []


@pytest.mark.parametrize(
    ("spec", "text", "expected"),
    [
        (["last_number"], "3 apples and 1,000.50 pears", "1,000.50"),
        (["last_number", "numeric"], "3 apples and 1,000.50 pears", "1000.5"),
        (["last_number", "numeric"], "costs $7.", "7"),
        (["last_number", "numeric"], "-0.0", "0"),
        (["last_number"], "no digits", None),
        (["first_choice"], "I think (B). Not A.", "B"),
        ([{"first_choice": "ABCD"}], "Answer: E or C", "C"),
        ([{"normalize": ["case", "punctuation", "whitespace"]}], "  The  ANSWER, is: Paris! ", "the answer is paris"),
        ([{"regex": {"pattern": r"(\d+)", "take": "last"}}], "1 then 2 then 3", "3"),
        ([{"regex": r"answer: (\w+)"}, {"normalize": "case"}], "answer: Yes", "yes"),
        (["numeric"], "not a number", "not a number"),
    ],
)
def test_filters(spec, text, expected):
    assert apply_filters(build_filters(spec), text) == expected


def test_numeric_equivalence_through_the_filters():
    filters = build_filters(["last_number", "numeric"])
    assert extract_and_match(filters, "It is 1000", "1,000").match
    assert extract_and_match(filters, "3.50", "3.5").match
    assert not extract_and_match(filters, "3.51", "3.5").match


def test_unextractable_reference_is_not_scored():
    result = extract_and_match(build_filters(GSM8K_FILTERS), "#### 4", "no marker here")
    assert result.reference is None and result.match is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([{"regex": "(unclosed"}], r"filters\.0\.regex: pattern '\(unclosed' does not compile"),
        (["numeric", {"regex": "#### [0-9]+"}], r"filters\.1\.regex: pattern .* has no group to select"),
        (["last_numbr"], r"filters\.0: unknown filter 'last_numbr' \(did you mean 'last_number'\?\)"),
        ([{"normalize": ["casing"]}], r"filters\.0\.normalize: unknown option"),
        ("last_number", r"filters: expected a list"),
        ([{"regex": {"pattern": "(a)", "group": 2}}], r"filters\.0\.regex\.group"),
    ],
)
def test_bad_filters_are_config_errors_naming_the_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_filters(spec)
