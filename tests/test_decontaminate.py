"""Decontaminate: training rows sharing a word n-gram with the eval texts are dropped."""

from __future__ import annotations

import numpy as np
import pytest

from modelops.errors import ConfigError
from modelops.sanitize.decontaminate import Decontaminate
from modelops.sanitize.step import MODIFIED, REASON, StepContext

datasets = pytest.importorskip("datasets")

RNG = np.random.default_rng(7)
EVAL_WORDS = [f"e{k}" for k in RNG.permutation(1000)[:40]]
EVAL_TEXT = " ".join(EVAL_WORDS)


def filler(k: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(k))


def span(start: int, length: int) -> str:
    return " ".join(EVAL_WORDS[start : start + length])


def run(texts: list[str], eval_texts: list[str], fmt: str = "text", **kwargs):
    table = datasets.Dataset.from_dict({"text": texts})
    return Decontaminate(**kwargs)(table, StepContext(format=fmt, eval_texts=eval_texts))


def test_thirteen_shared_words_drop_twelve_keep():
    texts = [
        f"{filler(20, 'a')} {span(5, 13)} {filler(20, 'b')}",  # 13 consecutive eval words
        f"{filler(20, 'c')} {span(5, 12)} {filler(20, 'd')}",  # only 12
        f"{span(0, 6)} {filler(3, 'x')} {span(10, 7)}",  # 13 eval words, but not consecutive
        filler(50, "z"),
    ]
    out = run(texts, [EVAL_TEXT])
    assert out[REASON][1:] == ["", "", ""]
    assert out[REASON][0] == f"contaminated:{span(5, 13)}"
    assert out[MODIFIED] == [False] * 4
    assert out["text"] == texts


def test_case_and_punctuation_do_not_hide_a_match():
    shared = span(2, 13).split()
    noisy = " ".join(w.upper() + ("," if i % 3 == 0 else "") for i, w in enumerate(shared))
    out = run([f"Intro: {noisy}!", "nothing here"], [EVAL_TEXT])
    assert out[REASON] == [f"contaminated:{span(2, 13)}", ""]


def test_unicode_punctuation_is_stripped_and_ascii_agrees():
    eval_texts = ["Ça “marche” très bien — naïve café, déjà vu!", "FOObar baz — é"]
    out = run(["ÇA marche, TRÈS bien", "foo_bar; baz", "the naive cafe"], eval_texts, ngram=2)
    assert out[REASON] == ["contaminated:ça marche", "contaminated:foobar baz", ""]


def test_n_is_configurable():
    twelve = f"{filler(5, 'a')} {span(20, 12)} {filler(5, 'b')}"
    assert run([twelve], [EVAL_TEXT])[REASON] == [""]
    assert run([twelve], [EVAL_TEXT], ngram=12)[REASON][0].startswith("contaminated:")
    assert run([f"{span(3, 8)} tail"], [EVAL_TEXT], ngram=8)[REASON] == [f"contaminated:{span(3, 8)}"]


def test_first_shared_ngram_is_reported_and_truncated():
    long_words = [w * 12 for w in EVAL_WORDS[:20]]
    out = run([f"lead {' '.join(long_words[4:18])}"], [" ".join(long_words)])
    first_shared = " ".join(long_words[4:17])  # 13 words from the row's first word shared with eval
    assert len(first_shared) > 80
    assert out[REASON] == ["contaminated:" + first_shared[:79] + "…"]


def test_short_texts_compare_whole_word_sequences():
    out = run(
        ["What is the capital of France?", "what is the capital of france", "What is the capital?", "Paris"],
        ["What is the capital of France?", f"{EVAL_TEXT} paris"],
    )
    # Same words as a short eval text: dropped. A shorter or longer sequence is not matched.
    assert [r.startswith("contaminated:") for r in out[REASON]] == [True, True, False, False]


def test_no_eval_texts_keeps_everything():
    out = run(["anything at all", ""], [])
    assert out[REASON] == ["", ""]


def test_all_text_fields_are_checked_with_workers():
    rows = 60
    instructions = [f"question {i} {filler(5, 'q')}" for i in range(rows)]
    outputs = [f"answer {i} {span(i % 20, 13) if i % 3 == 0 else filler(15, 'o')}" for i in range(rows)]
    table = datasets.Dataset.from_dict({"instruction": instructions, "input": [""] * rows, "output": outputs})
    ctx = StepContext(format="instruction", eval_texts=[EVAL_TEXT], num_proc=2, batch_size=10)
    out = Decontaminate()(table, ctx)
    assert [bool(r) for r in out[REASON]] == [i % 3 == 0 for i in range(rows)]
    assert out["output"] == outputs


@pytest.mark.parametrize("ngram", [0, -3])
def test_bad_ngram_names_the_field(ngram):
    with pytest.raises(ConfigError, match=r"decontaminate\.ngram"):
        Decontaminate(ngram=ngram)
