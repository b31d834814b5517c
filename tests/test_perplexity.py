"""language_model_scores against a hand-written per-text, per-window loop on a tiny random Llama."""

from __future__ import annotations

import math
import random

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

from modelops.errors import EvaluationError
from modelops.evaluate.perplexity import language_model_scores

WORDS = [f"w{i}" for i in range(60)] + ["héllo", "naïve", "日本"]  # some multi-byte words for bits_per_byte
VOCAB = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, **{word: i + 3 for i, word in enumerate(WORDS)}}
CONTEXT = 64


def _tokenizer(add_bos: bool) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if add_bos:
        tokenizer.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]")


def _config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=CONTEXT,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=None,
    )


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(_config()).eval()


def _texts(seed: int, count: int, low: int, high: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(low, high))) for _ in range(count)]


def _reference(model, tokenizer, texts, max_length, stride):
    """Per text, per window (HF "perplexity of fixed-length models"), one unpadded sequence, NLL by hand."""
    total_nll, tokens = 0.0, 0
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        prev_end = 0
        for begin in range(0, len(ids), stride):
            end = min(begin + max_length, len(ids))
            target_len = end - prev_end  # tokens this window scores; earlier ones are context
            window = ids[begin:end]
            with torch.no_grad():
                log_probs = torch.log_softmax(model(torch.tensor([window])).logits[0].double(), dim=-1)
            for position in range(max(1, len(window) - target_len), len(window)):
                total_nll -= log_probs[position - 1, window[position]].item()
                tokens += 1
            prev_end = end
            if end == len(ids):
                break
    loss = total_nll / tokens
    total_bytes = sum(len(text.encode("utf-8")) for text in texts)
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_byte": total_nll / math.log(2) / total_bytes}, tokens


def _assert_close(got, expected, rel):
    for key in ("loss", "perplexity", "bits_per_byte"):
        assert got[key] == pytest.approx(expected[key], rel=rel), key


@pytest.mark.parametrize("add_bos", [True, False])
def test_short_texts_match_reference(model, add_bos):
    tokenizer = _tokenizer(add_bos)
    texts = _texts(0, 12, 2, 30)
    got = language_model_scores(model, tokenizer, texts, batch_size=4)
    expected, tokens = _reference(model, tokenizer, texts, CONTEXT, CONTEXT // 2)
    _assert_close(got, expected, 1e-4)
    # With a BOS every word is predicted; without one the first word of each text is context only.
    words = sum(len(text.split()) for text in texts)
    assert got["tokens"] == tokens == (words if add_bos else words - len(texts))


def test_short_texts_match_model_loss(model):
    """Second reference: the model's own mean loss with labels=input_ids, pooled over texts by token count."""
    tokenizer = _tokenizer(add_bos=True)
    texts = _texts(1, 6, 3, 20)
    total_nll, tokens = 0.0, 0
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            total_nll += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
        tokens += ids.shape[1] - 1
    got = language_model_scores(model, tokenizer, texts)
    assert got["tokens"] == tokens
    assert got["perplexity"] == pytest.approx(math.exp(total_nll / tokens), rel=1e-4)


@pytest.mark.parametrize(("max_length", "stride"), [(None, 24), (16, 5), (16, 16)])
def test_long_texts_sliding_window_match_reference(model, max_length, stride):
    tokenizer = _tokenizer(add_bos=True)
    texts = _texts(2, 4, 100, 200) + _texts(3, 3, 2, 10)  # several windows per long text, mixed with short ones
    got = language_model_scores(model, tokenizer, texts, max_length=max_length, stride=stride, batch_size=3)
    expected, tokens = _reference(model, tokenizer, texts, max_length or CONTEXT, stride)
    _assert_close(got, expected, 1e-4)
    assert got["tokens"] == tokens


def test_each_row_carries_its_own_nll_tokens_and_bytes(model):
    """The per-row values (what paired intervals resample) equal the reference loop on each text alone."""
    tokenizer = _tokenizer(add_bos=True)
    texts = _texts(6, 3, 60, 90) + _texts(7, 4, 2, 8)  # long rows span several windows (max_length 16)
    got = language_model_scores(model, tokenizer, texts, max_length=16, stride=6, batch_size=3)
    for text, row in zip(texts, got["rows"], strict=True):
        expected, tokens = _reference(model, tokenizer, [text], 16, 6)
        assert row["tokens"] == tokens and row["bytes"] == len(text.encode("utf-8"))
        assert row["nll"] == pytest.approx(expected["loss"] * tokens, rel=1e-4)
    nll = sum(row["nll"] for row in got["rows"])
    assert got["loss"] == pytest.approx(nll / sum(row["tokens"] for row in got["rows"]), rel=1e-12)


def test_default_stride_is_half_the_context(model):
    tokenizer = _tokenizer(add_bos=False)
    texts = _texts(4, 2, 150, 150)
    expected, _ = _reference(model, tokenizer, texts, CONTEXT, CONTEXT // 2)
    _assert_close(language_model_scores(model, tokenizer, texts), expected, 1e-4)


def test_independent_of_batch_size_and_order(model):
    tokenizer = _tokenizer(add_bos=True)
    texts = _texts(5, 20, 2, 120)
    one = language_model_scores(model, tokenizer, texts, stride=20, batch_size=1)
    many = language_model_scores(model, tokenizer, texts, stride=20, batch_size=32)
    _assert_close(many, one, 1e-5)
    shuffled = texts[:]
    random.Random(0).shuffle(shuffled)
    _assert_close(language_model_scores(model, tokenizer, shuffled, stride=20, batch_size=8), one, 1e-5)
    assert one["tokens"] == many["tokens"]


def test_restores_training_mode(model):
    model.train()
    try:
        language_model_scores(model, _tokenizer(add_bos=True), ["w1 w2 w3"])
        assert model.training
    finally:
        model.eval()


def test_classifier_is_rejected():
    torch.manual_seed(0)
    classifier = LlamaForSequenceClassification(_config())
    with pytest.raises(EvaluationError, match="LlamaForSequenceClassification is a classifier"):
        language_model_scores(classifier, _tokenizer(add_bos=True), ["w1 w2"])


@pytest.mark.parametrize(
    ("texts", "kwargs", "fragment"),
    [
        ([], {}, "empty"),
        (["w1", ""], {}, "two tokens"),
        (["w1 w2"], {"stride": 0}, "stride"),
        (["w1 w2"], {"max_length": 8, "stride": 9}, "stride"),
        (["w1 w2"], {"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input_raises(model, texts, kwargs, fragment):
    with pytest.raises(EvaluationError, match=fragment):
        language_model_scores(model, _tokenizer(add_bos=False), texts, **kwargs)
