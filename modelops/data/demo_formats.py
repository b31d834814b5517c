"""Small demo datasets, one per generative format, made deterministically at load time.

Each has a few hundred rows of a pattern a tiny causal LM can learn quickly (arithmetic,
capital cities, counting; for preference pairs, the right answer over a wrong one), so recipes
and tests run without downloading anything. The same
`n` and `seed` always give the same rows and the same splits.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from modelops.data.dataset import Dataset

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
    "China": "Beijing",
    "India": "New Delhi",
    "Canada": "Ottawa",
    "Mexico": "Mexico City",
    "Brazil": "Brasilia",
    "Argentina": "Buenos Aires",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Nigeria": "Abuja",
    "Russia": "Moscow",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Poland": "Warsaw",
    "Greece": "Athens",
    "Turkey": "Ankara",
    "Ireland": "Dublin",
    "Austria": "Vienna",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Australia": "Canberra",
    "Thailand": "Bangkok",
    "Vietnam": "Hanoi",
    "Cuba": "Havana",
}

_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def chat_demo(n: int = 300, seed: int = 0, validation: float = 0.1, test: float = 0.1) -> Any:
    """Chat rows: a user asks a sum or difference of small numbers, the assistant answers it.

    Args:
        n: rows before splitting.
        seed: seed of the generator and of the split.
        validation, test: fractions split off train.
    """

    def row(rng: random.Random) -> dict:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        op, value = rng.choice([("+", a + b), ("-", a - b)])
        return {
            "messages": [
                {"role": "system", "content": "You are a calculator."},
                {"role": "user", "content": f"What is {a} {op} {b}?"},
                {"role": "assistant", "content": f"{a} {op} {b} = {value}"},
            ]
        }

    return _demo(row, n, seed, validation, test)


def instruction_demo(n: int = 300, seed: int = 0, validation: float = 0.1, test: float = 0.1) -> Any:
    """Instruction rows: name a country's capital (with the country as input), or add two numbers (no input)."""

    def row(rng: random.Random) -> dict:
        if rng.random() < 0.5:
            country = rng.choice(sorted(CAPITALS))
            return {
                "instruction": "Name the capital city of the country.",
                "input": country,
                "output": CAPITALS[country],
            }
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        return {"instruction": f"Add {a} and {b}.", "input": None, "output": str(a + b)}

    return _demo(row, n, seed, validation, test)


def completion_demo(n: int = 300, seed: int = 0, validation: float = 0.1, test: float = 0.1) -> Any:
    """Completion rows: ``The capital of X is`` -> `` Y.``, or a count continued by two numbers."""

    def row(rng: random.Random) -> dict:
        if rng.random() < 0.5:
            country = rng.choice(sorted(CAPITALS))
            return {"prompt": f"The capital of {country} is", "completion": f" {CAPITALS[country]}."}
        start = rng.randint(0, 90)
        return {"prompt": " ".join(str(start + i) for i in range(4)), "completion": f" {start + 4} {start + 5}"}

    return _demo(row, n, seed, validation, test)


def text_demo(n: int = 300, seed: int = 0, validation: float = 0.1, test: float = 0.1) -> Any:
    """Plain text rows: counting in words, or a sentence stating a capital city."""

    def row(rng: random.Random) -> dict:
        if rng.random() < 0.5:
            start = rng.randint(0, len(_NUMBER_WORDS) - 5)
            return {"text": " ".join(_NUMBER_WORDS[start : start + 5]) + "."}
        country = rng.choice(sorted(CAPITALS))
        return {"text": f"The capital of {country} is {CAPITALS[country]}."}

    return _demo(row, n, seed, validation, test)


def preference_demo(n: int = 400, seed: int = 0, validation: float = 0.1, test: float = 0.1, chat: bool = False) -> Any:
    """Preference pairs: a sum of two digits or a capital city; chosen is right, rejected is wrong.

    The wrong answer is near the right one (the sum off by 1 to 3, another country's capital), so a
    model learns the preference only by knowing the answer; prompts repeat across splits with
    other wrong answers, which a tiny causal LM picks up in a few hundred steps.

    Args:
        n: pairs before splitting.
        seed: seed of the generator and of the split.
        validation, test: fractions split off train.
        chat: chat form (prompt ``[system, user]``, each side ``[assistant]``) instead of strings.
    """

    def row(rng: random.Random) -> dict:
        if rng.random() < 0.5:
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            wrong = a + b + rng.choice([d for d in (-3, -2, -1, 1, 2, 3) if a + b + d >= 0])
            prompt, chosen, rejected = f"What is {a} + {b}?", str(a + b), str(wrong)
        else:
            country = rng.choice(sorted(CAPITALS))
            other = rng.choice(sorted(set(CAPITALS) - {country}))
            prompt, chosen, rejected = f"Capital of {country}?", CAPITALS[country], CAPITALS[other]
        if not chat:
            return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        return {
            "prompt": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }

    return _demo(row, n, seed, validation, test)


def _demo(row: Callable[[random.Random], dict], n: int, seed: int, validation: float, test: float) -> Any:
    rng = random.Random(seed)
    dataset = Dataset.from_records([row(rng) for _ in range(n)])
    return dataset.split(validation=validation, test=test, seed=seed) if validation or test else dataset
