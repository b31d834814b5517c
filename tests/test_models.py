"""Model references resolve without network; tiny causal LMs are real, deterministic and loadable."""

from __future__ import annotations

import pytest

from modelops.errors import ModelError
from modelops.models.resolve import resolve_name_or_path
from modelops.models.tiny import byte_tokenizer, tiny_model_path


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_tiny_model_is_a_few_million_parameters_and_learns(name, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("MODELOPS_CACHE", str(tmp_path))
    path = tiny_model_path(name)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 1e7
    batch = tokenizer(["the cat sat on the mat"] * 4, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5


def test_tiny_model_build_is_deterministic(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("MODELOPS_CACHE", str(tmp_path / "a"))
    first = load_file(tiny_model_path("tiny-llama") / "model.safetensors")
    monkeypatch.setenv("MODELOPS_CACHE", str(tmp_path / "b"))
    second = load_file(tiny_model_path("tiny-llama") / "model.safetensors")
    assert first.keys() == second.keys()
    assert all((first[k] == second[k]).all() for k in first)


def test_byte_tokenizer_round_trips_any_text():
    tokenizer = byte_tokenizer()
    text = "Grüße, 你好 — tabs\tand\nnewlines 🙂"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert len(ids) == len(text.encode()) + 1  # one token per UTF-8 byte, plus BOS
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_chat_template_marks_assistant_tokens():
    tokenizer = byte_tokenizer()
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    marked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(marked) == "4</s>"


def test_packaged_minilm_resolves_offline():
    from pathlib import Path

    path = Path(resolve_name_or_path("minilm"))
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()


def test_unknown_model_says_what_was_tried():
    with pytest.raises(ModelError) as info:
        resolve_name_or_path("./no/such/dir")
    message = str(info.value)
    assert "./no/such/dir" in message and "local directory" in message and "minilm" in message


def test_directory_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"no config\.json"):
        resolve_name_or_path(str(tmp_path))


def test_conf_model_option_names_are_model_references():
    from modelops.models.resolve import model_spec

    spec = model_spec("tiny_llama")
    assert spec.task == "causal_lm" and spec.name_or_path == "tiny-llama"
    assert model_spec("minilm_cls").peft is not None


def test_pickled_weights_are_refused(tmp_path, monkeypatch):
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from modelops.models.loading import load_model
    from modelops.models.spec import ModelSpec

    monkeypatch.setenv("MODELOPS_CACHE", str(tmp_path / "cache"))
    source = tiny_model_path("tiny-gpt2")
    pickled = tmp_path / "legacy"
    shutil.copytree(source, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(AutoModelForCausalLM.from_pretrained(source).state_dict(), pickled / "pytorch_model.bin")
    assert (pickled / "pytorch_model.bin").exists() and not (pickled / "model.safetensors").exists()
    with pytest.raises(ModelError, match=r"only pickled weights .*safetensors only"):
        load_model(ModelSpec(name_or_path=str(pickled), task="causal_lm"))
