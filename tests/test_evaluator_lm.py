"""The Evaluator with the tiny causal LM: perplexity against a plain per-window loop, exact match against a
plain greedy loop, label log-likelihood classification against a plain per-pair loop, and every kind of model
reference giving the same model."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from sklearn import metrics as skm

from modelops.data.dataset import Dataset
from modelops.evaluate import Evaluator
from modelops.tasks.metrics import normalize_text

WORDS = ["the", "a", "capital", "city", "of", "river", "north", "south", "old", "new", "small", "large", "green"]
WORDS += ["blue", "stone", "bridge"]


@pytest.fixture(scope="module")
def tiny():
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    return load_model(ModelSpec("tiny-llama", task="causal_lm")).eval(), load_tokenizer("tiny-llama")


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _texts(seed: int, short: int, long: int, long_bytes: int) -> list[str]:
    rng = random.Random(seed)
    texts = [_sentence(rng, rng.randint(2, 12)) for _ in range(short)]
    while len(texts) < short + long:
        text = ""
        while len(text) < long_bytes:
            text += _sentence(rng, 8) + ". "
        texts.append(text)
    return texts


def _text_data(texts: list[str]) -> Dataset:
    return Dataset.from_records([{"text": t} for t in texts], split="test", format="text")


def _reference_nll(model, tokenizer, texts, max_length: int, stride: int) -> tuple[float, int]:
    """Hugging Face's fixed-length perplexity recipe, one text and one window at a time, no padding."""
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        scored_until = 0
        for begin in range(0, len(ids), stride):
            end = min(begin + max_length, len(ids))
            window = torch.tensor([ids[begin:end]])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(window).logits[0].double(), dim=-1)
            # Window positions of the tokens no earlier window reached; position 0 has no context.
            positions = torch.arange(max(scored_until - begin, 1), end - begin)
            total -= float(logprobs[positions - 1, window[0, positions]].sum())
            count += len(positions)
            scored_until = end
            if end == len(ids):
                break
    return total, count


@pytest.mark.parametrize(
    ("max_length", "stride", "long_bytes"),
    [(None, None, 700), (64, 24, 150), (48, 48, 120)],
    ids=["model-context", "window64-stride24", "window48-no-overlap"],
)
def test_perplexity_equals_plain_loop(tiny, max_length, stride, long_bytes):
    model, tokenizer = tiny
    texts = _texts(0, short=6, long=2, long_bytes=long_bytes)
    results = Evaluator(metrics=["loss", "perplexity", "bits_per_byte"], max_length=max_length, stride=stride).evaluate(
        tiny, _text_data(texts)
    )
    context = max_length or model.config.max_position_embeddings
    assert max(len(tokenizer(t)["input_ids"]) for t in texts) > context  # some texts exceed the window
    total, count = _reference_nll(model, tokenizer, texts, context, stride or context // 2)
    assert results.loss == pytest.approx(total / count, rel=1e-4)
    assert results.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)
    total_bytes = sum(len(t.encode()) for t in texts)
    assert results.bits_per_byte == pytest.approx(total / math.log(2) / total_bytes, rel=1e-4)


def test_perplexity_of_completion_rows_scores_the_rendered_example(tiny):
    model, tokenizer = tiny
    rng = random.Random(1)
    rows = [{"prompt": _sentence(rng, 4) + " is", "completion": " " + _sentence(rng, 3)} for _ in range(8)]
    data = Dataset.from_records(rows, split="test", format="completion")
    results = Evaluator(metrics=["perplexity"], score_on="all").evaluate(tiny, data)
    # The documented rendering of a completion row: prompt, completion, EOS.
    texts = [r["prompt"] + r["completion"] + tokenizer.eos_token for r in rows]
    total, count = _reference_nll(model, tokenizer, texts, 512, 256)
    assert results.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)


def test_perplexity_does_not_depend_on_batch_size_or_order(tiny):
    texts = _texts(2, short=24, long=2, long_bytes=300)
    evaluator = Evaluator(metrics=["loss", "perplexity", "bits_per_byte"], max_length=128, stride=64)
    one = Evaluator(**{**vars(evaluator), "batch_size": 1}).evaluate(tiny, _text_data(texts))
    many = Evaluator(**{**vars(evaluator), "batch_size": 32}).evaluate(tiny, _text_data(texts))
    flipped = Evaluator(**{**vars(evaluator), "batch_size": 32}).evaluate(tiny, _text_data(texts[::-1]))
    for name in ("loss", "perplexity", "bits_per_byte"):
        assert one.metrics[name] == pytest.approx(many.metrics[name], rel=1e-5)
        assert flipped.metrics[name] == pytest.approx(many.metrics[name], rel=1e-5)


# -- generation -----------------------------------------------------------------------------------


def _plain_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding one token at a time on the unpadded prompt, stopping at EOS."""
    ids = tokenizer(prompt)["input_ids"]
    new: list[int] = []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            token = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
        if token == tokenizer.eos_token_id:
            break
        new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True)


@pytest.fixture(scope="module")
def completions(tiny):
    """Completion rows whose reference is the greedy output for even rows, and something else for odd rows."""
    model, tokenizer = tiny
    rng = random.Random(3)
    prompts = [_sentence(rng, rng.randint(1, 9)) + ":" for _ in range(10)]
    greedy = [_plain_greedy(model, tokenizer, p, 6) for p in prompts]
    rows = [
        {"prompt": p, "completion": g if i % 2 == 0 else g + " (not what it says)"}
        for i, (p, g) in enumerate(zip(prompts, greedy, strict=True))
    ]
    return rows, greedy


def test_exact_match_against_plain_greedy_decoding(tiny, completions):
    rows, greedy = completions
    data = Dataset.from_records(rows, split="test", format="completion")
    one = Evaluator(metrics=["exact_match"], max_new_tokens=6, batch_size=1).evaluate(tiny, data)
    many = Evaluator(metrics=["exact_match"], max_new_tokens=6, batch_size=32).evaluate(tiny, data)
    assert [r["prediction"] for r in one.predictions] == greedy
    assert [r["prediction"] for r in many.predictions] == greedy  # left padding changes nothing
    assert one.exact_match == many.exact_match == pytest.approx(0.5)
    assert [r["exact_match"] for r in many.predictions] == [i % 2 == 0 for i in range(len(rows))]


def test_exact_match_normalisation(tiny, completions):
    rows, greedy = completions
    padded = [{**r, "completion": "  " + g + " \n"} for r, g in zip(rows, greedy, strict=True)]
    data = Dataset.from_records(padded, split="test", format="completion")
    strict = Evaluator(metrics=["exact_match"], max_new_tokens=6, normalize=[]).evaluate(tiny, data)
    loose = Evaluator(metrics=["exact_match"], max_new_tokens=6, normalize=["whitespace"]).evaluate(tiny, data)
    assert strict.exact_match == 0.0 and loose.exact_match == 1.0


@pytest.mark.parametrize(
    ("prediction", "reference", "normalize", "equal"),
    [
        ("Paris", "paris", [], False),
        ("Paris", "paris", ["case"], True),
        ("STRASSE", "Straße", ["case"], True),
        ("Paris.", "Paris", ["punctuation"], True),
        ("« Paris ! »", "Paris", ["punctuation", "whitespace"], True),
        ("  New \t York\n", "New York", ["whitespace"], True),
        ("New York", "NewYork", ["whitespace"], False),
        ("New, York!", "new york", ["case", "punctuation", "whitespace"], True),
    ],
)
def test_normalize_text(prediction, reference, normalize, equal):
    assert (normalize_text(prediction, normalize) == normalize_text(reference, normalize)) is equal


def test_generation_prompts_come_from_the_templates(tiny):
    from modelops.models.templates import prompt_and_reference

    _, tokenizer = tiny
    rows = [{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello"}]}]
    data = Dataset.from_records(rows, split="test", format="chat")
    results = Evaluator(metrics=["exact_match"], max_new_tokens=2).evaluate(tiny, data)
    assert (results.predictions[0]["prompt"], results.predictions[0]["reference"]) == prompt_and_reference(
        rows[0], "chat", tokenizer
    )


# -- classification with a causal LM --------------------------------------------------------------


def _plain_label_scores(model, tokenizer, prompt: str, labels: list[str]) -> list[float]:
    scores = []
    for label in labels:
        context = tokenizer(prompt)["input_ids"]
        answer = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([context + answer])).logits[0].double(), dim=-1)
        scores.append(sum(float(logprobs[len(context) - 1 + k, tok]) for k, tok in enumerate(answer)))
    return scores


def test_causal_lm_classifies_by_label_loglikelihood(tiny):
    model, tokenizer = tiny
    rng = random.Random(4)
    labels = ["north", "south", "river"]
    rows = [{"text": _sentence(rng, rng.randint(2, 10)), "label": rng.choice(labels)} for _ in range(12)]
    data = Dataset.from_records(rows, split="test")
    one = Evaluator(metrics=["accuracy", "f1"], batch_size=1).evaluate(tiny, data)
    many = Evaluator(metrics=["accuracy", "f1"], batch_size=32).evaluate(tiny, data)
    expected = []
    for row, result in zip(rows, many.predictions, strict=True):
        scores = _plain_label_scores(model, tokenizer, row["text"] + "\nLabel:", data.labels)
        assert [result["loglikelihoods"][name] for name in data.labels] == pytest.approx(scores, rel=1e-4)
        expected.append(data.labels[max(range(len(scores)), key=scores.__getitem__)])
    assert [r["prediction"] for r in many.predictions] == expected
    assert [r["prediction"] for r in one.predictions] == expected
    y_true = [r["label"] for r in rows]
    assert many.accuracy == pytest.approx(skm.accuracy_score(y_true, expected), abs=1e-12)
    assert many.f1 == pytest.approx(skm.f1_score(y_true, expected, average="macro", labels=data.labels), abs=1e-12)


def test_prompt_template_is_configurable(tiny):
    model, tokenizer = tiny
    data = Dataset.from_records([{"text": "old stone bridge", "label": "a"}, {"text": "x", "label": "b"}], split="test")
    evaluator = Evaluator(metrics=["accuracy"], prompt_template="Review: {text}\nSentiment:")
    results = evaluator.evaluate(tiny, data)
    scores = _plain_label_scores(model, tokenizer, "Review: old stone bridge\nSentiment:", ["a", "b"])
    assert list(results.predictions[0]["loglikelihoods"].values()) == pytest.approx(scores, rel=1e-4)


# -- model references -----------------------------------------------------------------------------


def test_every_kind_of_reference_loads_the_same_model(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    plain = tmp_path / "plain"
    model.save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    trained = tmp_path / "run" / "model"
    model.save_pretrained(trained)
    tokenizer.save_pretrained(trained)
    (trained / "modelops.json").write_text(json.dumps({"base_model": "tiny-llama", "task": "causal_lm"}))
    adapter = tmp_path / "adapter"
    lora = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj"]))
    lora.save_pretrained(adapter)  # a fresh LoRA adds zero: the same outputs as the base
    tokenizer.save_pretrained(adapter)
    model = lora.unload()

    texts = _text_data(_texts(5, short=4, long=0, long_bytes=0))
    evaluator = Evaluator(metrics=["perplexity"])
    reference = evaluator.evaluate((model, tokenizer), texts).perplexity
    for ref in ["tiny-llama", "tiny_llama", plain, str(plain), trained, tmp_path / "run", adapter]:
        results = evaluator.evaluate(ref, texts)
        assert results.task == "causal_lm"
        assert results.perplexity == pytest.approx(reference, rel=1e-6), ref


def test_a_saved_causal_lm_on_classification_data_is_scored_as_an_lm(tiny, tmp_path):
    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    data = Dataset.from_records([{"text": "old bridge", "label": "a"}, {"text": "river", "label": "b"}], split="test")
    results = Evaluator(metrics=["accuracy"]).evaluate(tmp_path, data)
    assert results.task == "causal_lm" and "loglikelihoods" in results.predictions[0]


@pytest.mark.parametrize(("option", "data_format"), [("lm", "text"), ("generative", "completion")])
def test_config_options_evaluate_the_tiny_lm(tiny, option, data_format):
    from modelops.config.build import compose, instantiate
    from modelops.config.validate import validate

    cfg = compose([f"evaluator={option}", "evaluator.max_length=64", "evaluator.batch_size=4"])
    validate(cfg)
    evaluator = instantiate(cfg.evaluator, "evaluator")
    if option == "generative":
        evaluator.max_new_tokens = 4
    rows = [{"text": "old stone bridge"}] if data_format == "text" else [{"prompt": "a city", "completion": " x"}]
    results = evaluator.evaluate(tiny, Dataset.from_records(rows, split="test", format=data_format))
    assert set(results.metrics) == set(cfg.evaluator.metrics)
