"""The steps added for the sanitizer: chat structure, length in tokens, mojibake, dedup against references."""

from __future__ import annotations

import random
import unicodedata

import pytest

from modelops.sanitize import DatasetSanitizer
from modelops.sanitize.chat import ChatStructure
from modelops.sanitize.step import REASON, StepContext


def _msgs(*turns: str) -> list[dict]:
    roles = {"s": "system", "u": "user", "a": "assistant", "t": "tool"}
    out = []
    for turn in turns:
        role, _, content = turn.partition(":")
        out.append({"role": roles.get(role, role), "content": content})
    return out


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        (_msgs("s:be nice", "u:hi", "a:hello"), ""),
        (_msgs("u:hi", "a:calling", "t:42", "a:it is 42", "u:thanks", "a:welcome"), ""),
        (_msgs("u:hi", "a:hello", "u:and?"), "chat:ends_with=user"),  # the last question is never answered
        (_msgs("u:hi", "a:calling", "t:42"), "chat:ends_with=tool"),  # a tool result with no answer after it
        (_msgs("s:be nice", "u:hi"), "chat:no_assistant"),
        (_msgs("u:hi", "bot:hello"), "chat:bad_role=bot"),
        (_msgs("u:hi", "a:  "), "chat:no_assistant"),
        (_msgs("u:hi", "u:again", "a:hello"), "chat:not_alternating"),
        (_msgs("a:hello", "u:hi", "a:yes"), "chat:not_alternating"),  # must open with the user
        (_msgs("u:hi", "s:late system", "a:hello"), "chat:not_alternating"),
    ],
)
def test_chat_structure_rules(messages, reason):
    import datasets

    table = datasets.Dataset.from_list([{"messages": messages}])
    assert ChatStructure()(table, StepContext(format="chat"))[REASON] == [reason]


def test_chat_structure_rules_can_be_switched_off():
    step = ChatStructure(
        require_assistant=False, require_assistant_last=False, require_alternation=False, roles=["user", "assistant"]
    )
    assert step.reason(_msgs("u:a", "u:b")) == ""
    assert step.reason(_msgs("s:x", "u:a")) == "chat:bad_role=system"


def test_length_in_chars_and_words():
    from tests.test_sanitizer import make_dataset

    texts = ["one two three", "one", "one two three four five six", "abcdefghijklmnopqrstuvwxyz"]
    words = DatasetSanitizer(steps=[{"name": "length", "unit": "words", "min_length": 2, "max_length": 5}])
    assert words.sanitize(make_dataset("text", texts))["train"]["text"] == ["one two three"]
    assert words.report.splits["train"]["steps"][0]["reasons"] == {"too_short": 2, "too_long": 1}
    chars = DatasetSanitizer(steps=[{"name": "length", "unit": "chars", "max_length": 13}])
    assert chars.sanitize(make_dataset("text", texts))["train"]["text"] == ["one two three", "one"]


def test_length_in_tokens_with_a_tokenizer_loaded_by_path():
    from transformers import AutoTokenizer

    from modelops.models.resolve import packaged_path
    from tests.test_sanitizer import make_dataset

    path = str(packaged_path("minilm"))
    texts = ["short", "a somewhat longer sentence with unbelievably tokenizable words", "tokenization", "hi there"]
    reference = AutoTokenizer.from_pretrained(path)
    counts = [len(reference(t, add_special_tokens=False)["input_ids"]) for t in texts]
    limit = sorted(counts)[2]
    sanitizer = DatasetSanitizer(steps=[{"name": "length", "unit": "tokens", "max_length": limit}], tokenizer=path)
    clean = sanitizer.sanitize(make_dataset("text", texts))
    assert clean["train"]["text"] == [t for t, n in zip(texts, counts, strict=True) if n <= limit]
    assert len(clean["train"]) == 3


def test_mojibake_repair_is_an_option():
    from tests.test_sanitizer import make_dataset

    texts = ["cafÃ© crÃ¨me", "naÃ¯ve", "fine", "plain"]
    fixed = DatasetSanitizer(steps=[{"name": "normalize", "fix_mojibake": True}]).sanitize(make_dataset("text", texts))
    assert fixed["train"]["text"] == ["café crème", "naïve", "fine", "plain"]
    as_is = DatasetSanitizer(steps=["normalize"]).sanitize(make_dataset("text", texts))
    assert as_is["train"]["text"] == [unicodedata.normalize("NFKC", t) for t in texts]  # NFKC only, no repair


def _random_classification(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = ["good", "bad", "Movie", "plot", "  acting", "fine"]
    return [
        {"text": " ".join(rng.choice(words) for _ in range(rng.randint(1, 3))), "label": rng.choice(["pos", "neg"])}
        for _ in range(n)
    ]


@pytest.mark.parametrize("on_conflict", ["keep", "report", "drop"])
def test_exact_dedup_matches_a_pandas_reference(on_conflict):
    import datasets
    import pandas as pd

    from modelops.data.dataset import Dataset

    rows = _random_classification(400, seed=on_conflict.__len__())
    df = pd.DataFrame(rows)
    df["key"] = df["text"].str.lower().str.split().str.join(" ")
    kept = df[~df.duplicated(["key", "label"])]
    labels_per_key = kept.groupby("key")["label"].nunique()
    conflicting = kept[kept["key"].map(labels_per_key) > 1]
    expected = kept.drop(conflicting.index) if on_conflict == "drop" else kept

    dataset = Dataset({"train": datasets.Dataset.from_list(rows)}, format="classification")
    sanitizer = DatasetSanitizer(steps=[{"name": "exact_dedup", "on_conflict": on_conflict}])
    clean = sanitizer.sanitize(dataset)
    assert clean["train"].to_list() == expected[["text", "label"]].to_dict("records")
    entry = sanitizer.report.splits["train"]["steps"][0]
    if on_conflict != "keep":
        assert entry["conflicting_rows"] == len(conflicting)


def test_near_dedup_keeps_a_text_with_two_labels_for_exact_dedup_to_judge():
    import datasets

    from modelops.data.dataset import Dataset

    text = "the film was long but the ending made up for every slow minute of it"
    rows = [{"text": text, "label": "pos"}, {"text": text + "!", "label": "neg"}, {"text": text, "label": "pos"}]
    dataset = Dataset({"train": datasets.Dataset.from_list(rows)}, format="classification")
    by_label = DatasetSanitizer(steps=["near_dedup"]).sanitize(dataset)
    assert by_label["train"].to_list() == rows[:2]
    ignoring = DatasetSanitizer(steps=[{"name": "near_dedup", "same_label": False}]).sanitize(dataset)
    assert ignoring["train"].to_list() == rows[:1]


def test_near_dedup_agrees_with_datasketch():
    """Rows dropped by our step vs a datasketch MinHashLSH pass over the same shingles (first seen kept)."""
    import datasets
    from datasketch import MinHash, MinHashLSH

    from modelops.sanitize.near_dedup import NearDedup, word_tokens

    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(300)]
    base = [[rng.choice(vocab) for _ in range(120)] for _ in range(150)]
    texts, edited_copies = [], 0
    for words in base:
        texts.append(" ".join(words))
        if rng.random() < 0.5:
            edited_copies += 1
            edited = list(words)
            edited[rng.randrange(120)] = "changed"  # Jaccard of 5-grams >= 111/121
            texts.append(" ".join(edited))
    lsh, theirs = MinHashLSH(threshold=0.7, num_perm=128), 0
    for i, text in enumerate(texts):
        words = word_tokens(text)
        m = MinHash(num_perm=128)
        m.update_batch([b" ".join(words[j : j + 5]) for j in range(len(words) - 4)])
        if lsh.query(m):
            theirs += 1
        else:
            lsh.insert(str(i), m)
    out = NearDedup(threshold=0.7)(datasets.Dataset.from_dict({"text": texts}), StepContext(format="text"))
    ours = sum(1 for r in out[REASON] if r)
    # At Jaccard >= 0.917 both catch a copy with probability > 0.9999 (14 bands of 9 rows): all of them.
    assert ours == theirs == edited_copies


def test_decontaminate_min_words_skips_short_rows():
    import datasets

    from modelops.data.dataset import Dataset

    short = "great phone would buy again"
    splits = {
        "train": datasets.Dataset.from_dict({"text": [short, "another row"]}),
        "test": datasets.Dataset.from_dict({"text": [short]}),
    }
    dataset = Dataset(splits, format="text")
    strict = DatasetSanitizer(steps=[{"name": "decontaminate", "ngram": 13}]).sanitize(dataset)
    assert strict["train"]["text"] == ["another row"]  # a short text is matched on its whole word sequence
    lenient = DatasetSanitizer(steps=[{"name": "decontaminate", "ngram": 13, "min_words": 13}]).sanitize(dataset)
    assert lenient["train"]["text"] == [short, "another row"]


def test_lsh_from_band_keys_gives_the_pairs_of_full_signatures():
    """The step keeps per-row band keys, not signatures; the pairs must be those of `lsh_pairs` on the signatures."""
    import numpy as np

    from modelops.sanitize.near_dedup import (
        _permutations,
        band_keys,
        lsh_pairs,
        lsh_pairs_from_keys,
        minhash_signatures,
    )

    rng = random.Random(11)
    base = [" ".join(f"t{rng.randrange(80)}" for _ in range(25)) for _ in range(60)]
    texts = base + [t.replace("t1 ", "t2 ", 1) for t in base[:30]] + base[:5]
    a, b = _permutations(64, 1)
    sig = minhash_signatures(texts, 3, a, b)
    for threshold in (None, 0.6):
        expected = lsh_pairs(sig, 8, 8, threshold)
        got = lsh_pairs_from_keys(band_keys(sig, 8, 8), lambda rows: sig[rows], threshold)
        assert np.array_equal(got, expected)
