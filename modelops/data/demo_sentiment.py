"""A sentiment-style classification set the project generates deterministically (no download).

Reviews are built from templates, opinion phrases (some negated: "not great" is negative) and
product nouns; the test split uses its own draws. Some rows are made messy on purpose so the
sanitizer has real work: duplicated rows, runs of spaces and tabs, non-breaking spaces,
full-width letters, zero-width and control characters, and blank rows.
"""

from __future__ import annotations

import random

from modelops.data.dataset import Dataset

_PRODUCTS = [
    "phone", "laptop", "blender", "jacket", "novel", "headset", "camera", "kettle", "backpack", "monitor",
    "sofa", "printer", "movie", "album", "restaurant", "hotel room", "game", "watch", "bike", "lamp",
]  # fmt: skip
_POSITIVE = [
    "great", "excellent", "wonderful", "fantastic", "reliable", "comfortable", "delightful", "superb",
    "impressive", "sturdy", "lovely", "brilliant", "helpful", "pleasant", "amazing",
]  # fmt: skip
_NEGATIVE = [
    "terrible", "awful", "disappointing", "flimsy", "useless", "broken", "horrible", "poor", "annoying",
    "dreadful", "unreliable", "cheap-feeling", "frustrating", "noisy", "mediocre",
]  # fmt: skip
_TEMPLATES = [
    "The {p} is {a}.",
    "This {p} was {a}, honestly.",
    "I found the {p} {a} from day one.",
    "Overall the {p} felt {a}.",
    "My new {p} is {a} and I would say so again.",
    "What a {a} {p}.",
    "Bought the {p} last week: {a}.",
    "Five days in, the {p} is {a}.",
]
_POS_TAILS = ["Highly recommended!", "Would buy again.", "Worth every penny.", "", ""]
_NEG_TAILS = ["Returning it.", "Avoid.", "Waste of money.", "", ""]

# Messy variants: each takes a clean review and returns one the sanitizer should clean back.
_FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _messy(text: str, rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return "  " + text.replace(" ", "   ", 2) + "\t "
    if kind == 1:
        return text.replace(" ", "\u00a0", 2)
    if kind == 2:
        words = text.split(" ")
        i = rng.randrange(len(words))
        words[i] = "".join(_FULLWIDTH.get(c, c) for c in words[i])
        return " ".join(words)
    if kind == 3:
        return text.replace(" ", " \u200b", 1) + "\u0007"
    return text + "\n\n"


def _review(rng: random.Random) -> tuple[str, str]:
    positive = rng.random() < 0.5
    negated = rng.random() < 0.25
    # A negated opinion flips the sentiment: "not terrible" reads as positive here.
    pool = _NEGATIVE if positive == negated else _POSITIVE
    adjective = rng.choice(pool)
    opinion = f"not {adjective}" if negated else adjective
    text = rng.choice(_TEMPLATES).format(p=rng.choice(_PRODUCTS), a=opinion)
    text = f"{text} {rng.choice(_POS_TAILS if positive else _NEG_TAILS)}".strip()
    return text[0].upper() + text[1:], "positive" if positive else "negative"


def _split_rows(n: int, rng: random.Random, messy_fraction: float, duplicate_fraction: float) -> list[dict]:
    rows = []
    for _ in range(n):
        text, label = _review(rng)
        if rng.random() < messy_fraction:
            text = _messy(text, rng)
        rows.append({"text": text, "label": label})
    for _ in range(int(n * duplicate_fraction)):
        rows.append(dict(rng.choice(rows)))
    for _ in range(max(1, n // 200)):
        rows.append({"text": rng.choice(["", "   ", "\t\n"]), "label": rng.choice(["positive", "negative"])})
    rng.shuffle(rows)
    return rows


def sentiment(
    n_train: int = 2000,
    n_validation: int = 200,
    n_test: int = 500,
    seed: int = 0,
    messy_fraction: float = 0.15,
    duplicate_fraction: float = 0.05,
):
    """Generate the demo sentiment dataset: train/validation/test splits, labels positive/negative.

    Args:
        n_train: clean-draw rows in train (duplicates and blank rows come on top).
        n_validation: rows in validation.
        n_test: rows in test.
        seed: the same seed always gives the same rows.
        messy_fraction: share of rows given whitespace/unicode noise.
        duplicate_fraction: share of extra rows that repeat an earlier row exactly.

    Returns:
        A `modelops.Dataset` in the classification format.
    """
    import datasets

    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    splits = {}
    for offset, (name, n) in enumerate(sizes.items()):
        if n <= 0:
            continue
        rng = random.Random(f"{seed}-{offset}")
        rows = _split_rows(n, rng, messy_fraction, duplicate_fraction)
        splits[name] = datasets.Dataset.from_list(rows)
    return Dataset(splits, format="classification", labels=["negative", "positive"])
