"""Causal-LM tokenisation: the loss lands exactly on the answers (+ EOS), whatever the format and template."""

from __future__ import annotations

import datasets
import pytest

from modelops.errors import DataError
from modelops.models.tiny import byte_tokenizer
from modelops.tasks.packing import causal_lm_collator
from modelops.tasks.preview import preview
from modelops.tasks.sft import tokenize_causal_lm
from modelops.tasks.truncation import CUT, END_CUT, PROMPT_CUT, ROW, WHOLE

EOS = "</s>"

ROWS = {
    "text": [{"text": "The cat sat."}, {"text": "Ünïcode ok ✓"}, {"text": "Doc one.</s>Doc two."}],
    "completion": [{"prompt": "2+2=", "completion": "4"}, {"prompt": "Capital of France? ", "completion": "Paris"}],
    "instruction": [
        {"instruction": "Say hi", "input": "", "output": "hi"},
        {"instruction": "Translate", "input": "chat", "output": "cat"},
    ],
    "chat": [
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}]},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "One?"},
                {"role": "assistant", "content": "1"},
                {"role": "user", "content": "Two?"},
                {"role": "assistant", "content": "2"},
            ]
        },
    ],
}


def _answers(fmt: str, row: dict) -> list[str]:
    """The text that must carry loss, written down from the row itself."""
    if fmt == "text":
        return [row["text"] + EOS]
    if fmt == "completion":
        return [row["completion"] + EOS]
    if fmt == "instruction":
        return [row["output"] + EOS]
    return [m["content"] + EOS for m in row["messages"] if m["role"] == "assistant"]


def _trained_spans(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    spans, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != -100:
            assert label == token, "a trainable label must be the token itself"
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return [tokenizer.decode(span, skip_special_tokens=False) for span in spans]


def _tokenizer(with_template: bool):
    tokenizer = byte_tokenizer()
    if not with_template:
        tokenizer.chat_template = None
    return tokenizer


@pytest.mark.parametrize("with_template", [True, False], ids=["chat-template", "default-template"])
@pytest.mark.parametrize("fmt", list(ROWS))
def test_trainable_tokens_are_exactly_the_answers_plus_eos(fmt, with_template):
    tokenizer = _tokenizer(with_template)
    out = tokenize_causal_lm(datasets.Dataset.from_list(ROWS[fmt]), fmt, tokenizer, max_length=256)
    assert out.column_names == ["input_ids", "labels", "length", ROW, CUT]
    assert out[ROW] == list(range(len(ROWS[fmt]))) and out[CUT] == [WHOLE] * len(ROWS[fmt])
    for row, tok in zip(ROWS[fmt], out, strict=True):
        assert _trained_spans(tokenizer, tok["input_ids"], tok["labels"]) == _answers(fmt, row)
        assert tok["input_ids"][0] == tokenizer.bos_token_id and tok["labels"][0] == -100
        assert tok["length"] == len(tok["input_ids"]) == len(tok["labels"])


def test_chat_mask_matches_the_templates_own_generation_mask():
    """The tiny template marks assistant text with {% generation %}; transformers turns that into a mask."""
    tokenizer = _tokenizer(True)
    rows = ROWS["chat"]
    out = tokenize_causal_lm(datasets.Dataset.from_list(rows), "chat", tokenizer, max_length=256)
    for row, tok in zip(rows, out, strict=True):
        ref = tokenizer.apply_chat_template(
            row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert tok["input_ids"][1:] == list(ref["input_ids"])  # ours adds the BOS the post-processor would add
        assert [label != -100 for label in tok["labels"][1:]] == [bool(m) for m in ref["assistant_masks"]]


def test_multi_turn_chat_trains_every_assistant_turn():
    tokenizer = _tokenizer(True)
    row = ROWS["chat"][1]
    tok = tokenize_causal_lm(datasets.Dataset.from_list([row]), "chat", tokenizer, max_length=256)[0]
    spans = _trained_spans(tokenizer, tok["input_ids"], tok["labels"])
    assert spans == ["1" + EOS, "2" + EOS]
    assert tokenizer.decode(tok["input_ids"], skip_special_tokens=False) == "<s>" + tokenizer.apply_chat_template(
        row["messages"], tokenize=False
    )


@pytest.mark.parametrize("fmt", list(ROWS))
def test_loss_on_all_trains_everything_but_padding(fmt):
    tokenizer = _tokenizer(True)
    out = tokenize_causal_lm(datasets.Dataset.from_list(ROWS[fmt]), fmt, tokenizer, max_length=256, loss_on="all")
    for tok in out:
        assert tok["labels"] == tok["input_ids"]
    batch = causal_lm_collator(tokenizer.pad_token_id)(list(out))
    real = batch["attention_mask"].bool()
    assert (batch["labels"][real] == batch["input_ids"][real]).all()
    assert (batch["labels"][~real] == -100).all()
    assert (~real).any()  # the rows differ in length, so there was padding to check


def test_pad_equal_to_eos_keeps_the_eos_label():
    tokenizer = _tokenizer(False)
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos
    rows = ROWS["completion"]
    out = tokenize_causal_lm(datasets.Dataset.from_list(rows), "completion", tokenizer, max_length=256)
    batch = causal_lm_collator(tokenizer.pad_token_id)(list(out))
    for i, tok in enumerate(out):
        n = tok["length"]
        assert batch["input_ids"][i, n - 1] == eos and batch["labels"][i, n - 1] == eos
        assert (batch["input_ids"][i, n:] == eos).all() and (batch["labels"][i, n:] == -100).all()


def _long_rows():
    # Byte tokenizer: one token per ASCII character, plus the BOS and the EOS.
    return [
        {"prompt": "p: ", "completion": "short"},
        {"prompt": "question " * 5 + "? ", "completion": "forty-two"},
        {"prompt": "q: ", "completion": "y" * 50},
    ]


def _decoded(tokenizer, tok) -> str:
    return tokenizer.decode(tok["input_ids"], skip_special_tokens=False)


@pytest.mark.parametrize("side", ["left", "right"])
def test_truncate_cuts_the_prompt_from_its_side_and_keeps_the_answer(side):
    tokenizer = _tokenizer(False)
    rows, max_length = _long_rows(), 24
    out = tokenize_causal_lm(
        datasets.Dataset.from_list(rows), "completion", tokenizer, max_length=max_length, truncation_side=side
    )
    assert out[CUT] == [WHOLE, PROMPT_CUT, END_CUT] and out[ROW] == [0, 1, 2]
    assert _decoded(tokenizer, out[0]) == "<s>p: short" + EOS
    # Row 2: 1 + 47 + 9 + 1 = 58 tokens; 24 leave room for 24 - 1 - 9 - 1 = 13 prompt characters.
    prompt = rows[1]["prompt"]
    kept = prompt[-13:] if side == "left" else prompt[:13]
    assert _decoded(tokenizer, out[1]) == "<s>" + kept + "forty-two" + EOS
    assert _trained_spans(tokenizer, out[1]["input_ids"], out[1]["labels"]) == ["forty-two" + EOS]
    # Row 3: the answer alone is too long: the prompt goes (the BOS stays, to predict the answer's first
    # token), then the answer's end.
    assert _decoded(tokenizer, out[2]) == "<s>" + "y" * 23
    assert all(tok["length"] == len(tok["input_ids"]) <= max_length for tok in out)


def test_truncate_without_a_bos_keeps_one_prompt_token_before_the_answer():
    from tokenizers import processors

    tokenizer = _tokenizer(False)
    tokenizer.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    out = tokenize_causal_lm(datasets.Dataset.from_list([{"prompt": "abc: ", "completion": "z" * 30}]), "completion",
                             tokenizer, max_length=10)  # fmt: skip
    assert _decoded(tokenizer, out[0]) == " " + "z" * 9  # the prompt's last character, then the answer's start
    assert out[0]["labels"][1:] == out[0]["input_ids"][1:] and out[0]["labels"][0] == -100


def test_skip_drops_and_marks_the_rows_that_are_too_long():
    tokenizer = _tokenizer(False)
    out = tokenize_causal_lm(datasets.Dataset.from_list(_long_rows()), "completion", tokenizer, 24, too_long="skip")
    assert out[ROW] == [0] and _decoded(tokenizer, out[0]) == "<s>p: short" + EOS


def test_too_long_reject_names_the_row():
    tokenizer = _tokenizer(False)
    with pytest.raises(DataError, match=r"^row 2: 58 tokens exceed model.max_length=24 \(trainer.too_long='reject'"):
        tokenize_causal_lm(datasets.Dataset.from_list(_long_rows()), "completion", tokenizer, 24, too_long="reject")


def test_reject_names_the_place_that_locate_gives():
    tokenizer = _tokenizer(False)
    with pytest.raises(DataError, match=r"^data.jsonl:7: 58 tokens"):
        tokenize_causal_lm(datasets.Dataset.from_list(_long_rows()), "completion", tokenizer, 24, too_long="reject",
                           locate=lambda rows: [f"data.jsonl:{2 * r + 5}" for r in rows])  # fmt: skip


def test_empty_text_raises_naming_the_row():
    tokenizer = _tokenizer(False)
    with pytest.raises(DataError, match=r"row 2: no token carries loss"):
        tokenize_causal_lm(datasets.Dataset.from_list([{"text": "ok"}, {"text": ""}]), "text", tokenizer, 64)


def test_no_bos_when_the_tokenizer_would_not_add_one():
    from tokenizers import processors

    tokenizer = _tokenizer(False)
    tokenizer.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tokenizer("a")["input_ids"][0] != tokenizer.bos_token_id  # the premise: no BOS from this tokenizer
    tok = tokenize_causal_lm(datasets.Dataset.from_list(ROWS["completion"]), "completion", tokenizer, 64)[0]
    assert tokenizer.decode(tok["input_ids"], skip_special_tokens=False) == "2+2=4" + EOS


def test_preview_marks_the_trainable_spans():
    tokenizer = _tokenizer(True)
    out = tokenize_causal_lm(datasets.Dataset.from_list(ROWS["chat"]), "chat", tokenizer, max_length=256)
    text = preview(out, tokenizer, n=2)
    assert "[[Hi there</s>]]" in text and "[[1</s>]]" in text and "[[2</s>]]" in text
    assert "[[Hello" not in text
    n_answer_tokens = len("Hi there") + 1  # one byte token per character, plus the EOS
    assert f"{n_answer_tokens}/{out[0]['length']} tokens carry loss" in text
    assert "\033[32m" in preview(out, tokenizer, n=1, color=True)
