"""Generative prompts: the training template, optionally preceded by few-shot examples from the train split.

A prompt is what `modelops.models.templates.prompt_and_reference` renders for the row, so the model is asked in
the template it was trained with (the tokenizer's chat template when it has one). With ``num_fewshot = k``,
each row gets k examples drawn from the train split with ``random.Random(seed + row)`` (the same draw every
run, different rows get different shots), never the evaluated row itself nor a row with the same prompt:

- instruction and chat rows with a chat template: the shots become earlier user/assistant turns (lm-eval's
  ``fewshot_as_multiturn``), after a leading system message if the row has one;
- otherwise: each shot is its prompt and answer, followed by a blank line, before the row's prompt.
"""

from __future__ import annotations

import random
from typing import Any

from modelops.errors import EvaluationError
from modelops.models.templates import prompt_and_reference

FEWSHOT_SPLIT = "train"
SHOT_SEPARATOR = "\n\n"


def generative_prompts(table, dataset, split: str, tokenizer, num_fewshot: int, seed: int) -> tuple[list, list]:
    """The prompt and reference of every row of `table` (split `split` of `dataset`), with `num_fewshot` shots."""
    fmt = dataset.format
    rows = list(table)
    if num_fewshot == 0:
        pairs = [prompt_and_reference(row, fmt, tokenizer) for row in rows]
        return [p for p, _ in pairs], [r for _, r in pairs]
    if FEWSHOT_SPLIT not in dataset.split_names:
        raise EvaluationError(f"evaluator.num_fewshot={num_fewshot}: the dataset has no {FEWSHOT_SPLIT!r} split")
    pool = list(dataset[FEWSHOT_SPLIT])
    pool_prompts = [prompt_and_reference(shot, fmt, tokenizer)[0] for shot in pool]
    prompts, references = [], []
    for index, row in enumerate(rows):
        own = (index if split == FEWSHOT_SPLIT else None, prompt_and_reference(row, fmt, tokenizer)[0])
        shots = _draw(pool, pool_prompts, own, num_fewshot, seed + index)
        prompt, reference = _with_shots(row, shots, fmt, tokenizer)
        prompts.append(prompt)
        references.append(reference)
    return prompts, references


def _draw(pool: list, pool_prompts: list[str], own: tuple[int | None, str], k: int, seed: int) -> list:
    """k shots drawn with `seed`, skipping the evaluated row (its index in the train split, or its prompt)."""
    own_index, own_prompt = own
    candidates = [shot for i, shot in enumerate(pool) if i != own_index and pool_prompts[i] != own_prompt]
    if len(candidates) < k:
        raise EvaluationError(
            f"evaluator.num_fewshot={k}: the {FEWSHOT_SPLIT!r} split has only {len(candidates)} other rows"
        )
    return random.Random(seed).sample(candidates, k)


def _with_shots(row, shots: list, fmt: str, tokenizer) -> tuple[str, str]:
    if fmt in ("instruction", "chat") and getattr(tokenizer, "chat_template", None):
        messages = [m for shot in shots for m in _messages(shot, fmt) if m["role"] != "system"]
        own = _messages(row, fmt)
        system = [m for m in own[:1] if m["role"] == "system"]
        return prompt_and_reference({"messages": system + messages + own[len(system) :]}, "chat", tokenizer)
    prefix = "".join(p + r + SHOT_SEPARATOR for p, r in (prompt_and_reference(s, fmt, tokenizer) for s in shots))
    prompt, reference = prompt_and_reference(row, fmt, tokenizer)
    return prefix + prompt, reference


def _messages(row: dict[str, Any], fmt: str) -> list[dict[str, str]]:
    """A row as chat messages (an instruction row: one user turn, one assistant turn), up to its last answer."""
    if fmt == "chat":
        messages = list(row["messages"])
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return messages[: last + 1]
    user = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def preview(dataset, split: str, tokenizer, num_fewshot: int, seed: int) -> str:
    """The exact first prompt generation gets on `split`, and its reference, for ``stages=[preview]``."""
    prompts, references = generative_prompts(dataset[split].select([0]), dataset, split, tokenizer, num_fewshot, seed)
    return (
        f"evaluation prompt (split {split!r}, row 1, {num_fewshot}-shot), exactly as generation sees it:\n"
        f"{prompts[0]}\n--- reference:\n{references[0]}"
    )
