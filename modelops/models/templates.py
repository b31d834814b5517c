"""How a row of each format becomes model text: a list of segments, each marked trainable or not.

Training masks the loss to the trainable segments (completion, output, assistant turns);
evaluation uses the same rendering to build prompts and references, so both agree.

With a tokenizer that has a chat template, instruction and chat rows are rendered through it
(an instruction row becomes one user turn and one assistant turn). Without one, the documented
defaults below are used: Alpaca's prompt for instruction rows and ChatML-style turns for chat.
Completion rows are `prompt` followed directly by `completion`; text rows are trained whole.
Every trainable segment ends with the tokenizer's EOS text, so the model learns to stop (even
when pad and EOS are the same token: the loss mask comes from these segments, never from the
pad id).
"""

from __future__ import annotations

from typing import Any

from modelops.errors import DataError

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
CHATML_TURN = "<|{role}|>\n{content}\n"
CHATML_ASSISTANT_PREFIX = "<|assistant|>\n"

Segment = tuple[str, bool]


def _eos(tokenizer) -> str:
    return tokenizer.eos_token or ""


def _instruction_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    user = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def _chat_segments(messages: list[dict[str, str]], tokenizer) -> list[Segment]:
    if not getattr(tokenizer, "chat_template", None):
        segments: list[Segment] = []
        for m in messages:
            if m["role"] == "assistant":
                segments += [(CHATML_ASSISTANT_PREFIX, False), (m["content"] + _eos(tokenizer) + "\n", True)]
            else:
                segments.append((CHATML_TURN.format(role=m["role"], content=m["content"]), False))
        return segments
    # Render growing prefixes: the text an assistant turn adds is its trainable segment.
    segments, done = [], ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise DataError("the tokenizer's chat template does not render conversations as growing prefixes")
        segments += [(prompt[len(done) :], False), (full[len(prompt) :], True)]
        done = full
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if full[len(done) :]:
        segments.append((full[len(done) :], False))
    return [(text, trainable) for text, trainable in segments if text]


def segments(row: dict[str, Any], fmt: str, tokenizer) -> list[Segment]:
    """The example's text as `(text, trainable)` segments, in order."""
    if fmt == "text":
        # EOS ends each document, so packed documents stay apart and the model learns where one ends.
        # An empty document stays empty, so it is reported as having nothing to train on.
        return [(row["text"] + _eos(tokenizer), True)] if row["text"] else []
    if fmt == "completion":
        return [(row["prompt"], False), (row["completion"] + _eos(tokenizer), True)]
    if fmt == "instruction":
        if getattr(tokenizer, "chat_template", None):
            return _chat_segments(_instruction_messages(row), tokenizer)
        template = ALPACA_PROMPT_WITH_INPUT if row.get("input") else ALPACA_PROMPT
        return [(template.format(**row), False), (row["output"] + _eos(tokenizer), True)]
    if fmt == "chat":
        return _chat_segments(row["messages"], tokenizer)
    raise DataError(f"format {fmt!r} has no causal-LM rendering (formats: text, completion, instruction, chat)")


def prompt_and_reference(row: dict[str, Any], fmt: str, tokenizer) -> tuple[str, str]:
    """For generation: the text up to the (last) answer, and the answer itself without EOS."""
    if fmt == "chat":
        messages = row["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise DataError("a chat row has no assistant turn to compare against")
        if getattr(tokenizer, "chat_template", None):
            prompt = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
        else:
            prompt = "".join(text for text, _ in _chat_segments(messages[:last], tokenizer)) + CHATML_ASSISTANT_PREFIX
        return prompt, messages[last]["content"]
    if fmt == "text":
        raise DataError("the text format has no prompt/answer pairs to generate from")
    parts = segments(row, fmt, tokenizer)
    prompt = "".join(text for text, trainable in parts if not trainable)
    reference = row["completion"] if fmt == "completion" else row["output"]
    return prompt, reference
