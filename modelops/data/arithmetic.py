"""Small sums and differences with checkable answers: GRPO prompts, their SFT warm-up, GSM8K-style rows.

One generator, three layouts of the same questions (the same `n` and `seed` give the same questions in each):

- ``prompt`` (GRPO): ``{"prompt": "Question: What is 3 + 4?\\nAnswer:", "answer": "7"}``; the reward
  `modelops.tasks.rewards.correctness` compares the completion's last number (or its ``#### N``) with ``answer``;
- ``completion`` (SFT warm-up): the same prompt, completion ``" 3 + 4 = 7\\n#### 7"`` (a worked step, then the
  GSM8K answer marker), so a model warmed up on it answers GRPO's prompts in the format the rewards read;
- ``gsm8k``: ``{"question": "What is 3 + 4?", "answer": "3 + 4 = 7\\n#### 7"}``, the rows of lm-eval's local task
  ``modelops_arithmetic`` (`modelops.evaluate.harness.arithmetic_rows` draws the very same rows).

The prompt text is the lm-eval task's ``doc_to_text`` (``Question: ...\\nAnswer:``), so training and the harness's
evaluation see the same prompts.
"""

from __future__ import annotations

import random
from typing import Any

from modelops.errors import ConfigError

STYLES = ("prompt", "completion", "gsm8k")


def _questions(n: int, seed: int, largest: int | None = None) -> list[tuple[str, int]]:
    """(question, value) pairs; the draws of `modelops.evaluate.harness.arithmetic_rows`, in its order.

    With `largest`, sums of two numbers from 0 to `largest` instead (few enough for a tiny model to learn).
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if largest is not None:
            a, b = rng.randint(0, largest), rng.randint(0, largest)
            out.append((f"{a} + {b}", a + b))
            continue
        a, b = rng.randint(1, 60), rng.randint(1, 40)
        op, value = rng.choice([("+", a + b), ("-", a - b)])
        out.append((f"{a} {op} {b}", value))
    return out


def arithmetic_rows(
    n: int, seed: int = 0, *, style: str = "prompt", largest: int | None = None
) -> list[dict[str, str]]:
    """`n` arithmetic rows in `style` (``prompt``, ``completion`` or ``gsm8k``; see the module docstring).

    Args:
        largest: sums of two numbers from 0 to `largest` (``+`` only); None: the harness task's questions
            (sums and differences of numbers up to 60 and 40).
    """
    if style not in STYLES:
        raise ConfigError(f"arithmetic style {style!r} is not one of {list(STYLES)}")
    if largest is not None and largest < 1:
        raise ConfigError(f"arithmetic largest must be >= 1 or null, got {largest!r}")
    rows = []
    for expression, value in _questions(n, seed, largest):
        prompt = f"Question: What is {expression}?\nAnswer:"
        if style == "prompt":
            rows.append({"prompt": prompt, "answer": str(value)})
        elif style == "completion":
            rows.append({"prompt": prompt, "completion": f" {expression} = {value}\n#### {value}"})
        else:
            rows.append({"question": f"What is {expression}?", "answer": f"{expression} = {value}\n#### {value}"})
    return rows


def arithmetic_demo(
    n: int = 400, seed: int = 0, validation: float = 0.1, test: float = 0.1, style: str = "prompt",
    largest: int | None = None,
) -> Any:  # fmt: skip
    """A `Dataset` of `arithmetic_rows` (format ``prompt`` or ``completion``), split like the other demos."""
    from modelops.data.dataset import Dataset

    if style == "gsm8k":
        raise ConfigError("arithmetic_demo: style gsm8k is lm-eval's layout; use prompt or completion")
    dataset = Dataset.from_records(arithmetic_rows(n, seed, style=style, largest=largest), format=style)
    return dataset.split(validation=validation, test=test, seed=seed) if validation or test else dataset
