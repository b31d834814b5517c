"""Packing: nothing lost, nothing too long, and a packed batch computes what separate runs compute."""

from __future__ import annotations

from itertools import pairwise

import datasets
import pytest
import torch

from modelops.errors import DataError
from modelops.models.tiny import byte_tokenizer
from modelops.train.packing import causal_lm_collator, pack
from modelops.train.sft import tokenize_causal_lm


def _tokenized(lengths: list[int], max_length: int = 64):
    tokenizer = byte_tokenizer()
    rows = [{"prompt": f"q{i}:", "completion": chr(97 + i % 26) * n} for i, n in enumerate(lengths)]
    return tokenize_causal_lm(datasets.Dataset.from_list(rows), "completion", tokenizer, max_length)


def _examples(packed) -> list[tuple[list[int], list[int]]]:
    """Split packed rows back into examples at position 0."""
    out = []
    for row in packed:
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        for a, b in pairwise(starts):
            assert row["position_ids"][a:b] == list(range(b - a))
            out.append((row["input_ids"][a:b], row["labels"][a:b]))
    return out


def _reference_first_fit_decreasing(lengths: list[int], capacity: int) -> int:
    """Plain first-fit-decreasing, the textbook way: the number of bins it opens."""
    rooms: list[int] = []
    for n in sorted(lengths, reverse=True):
        for i, room in enumerate(rooms):
            if room >= n:
                rooms[i] -= n
                break
        else:
            rooms.append(capacity - n)
    return len(rooms)


def test_packing_preserves_every_example_and_respects_max_length():
    lengths = [1, 30, 7, 55, 12, 3, 40, 20, 20, 8, 2, 33, 15, 9]
    tokenized = _tokenized(lengths)
    packed = pack(tokenized, 64)
    assert packed.column_names == ["input_ids", "labels", "position_ids", "length"]
    assert sum(packed["length"]) == sum(tokenized["length"])
    assert all(len(r["input_ids"]) == r["length"] <= 64 for r in packed)
    expected = sorted((r["input_ids"], [-100, *r["labels"][1:]]) for r in tokenized)
    assert sorted(_examples(packed)) == expected
    assert len(packed) == _reference_first_fit_decreasing(tokenized["length"], 64)


def test_packing_is_deterministic_and_rejects_rows_longer_than_max_length():
    tokenized = _tokenized([5, 17, 9, 30, 2, 11])
    assert pack(tokenized, 48).to_dict() == pack(tokenized, 48).to_dict()
    with pytest.raises(DataError, match=r"row 4: .* max_length=24"):
        pack(tokenized, 24)


def test_packing_a_shuffled_selection_packs_the_selected_rows():
    tokenized = _tokenized([5, 17, 9, 30, 2, 11]).shuffle(seed=3).select([0, 2, 4])
    packed = pack(tokenized, 64)
    assert sorted(e[0] for e in _examples(packed)) == sorted(r["input_ids"] for r in tokenized)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Build the tiny models once, into a temporary cache rather than the user's."""
    from modelops.models.tiny import tiny_model_path

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELOPS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield {name: tiny_model_path(name) for name in ("tiny-llama", "tiny-gpt2")}


def _model(path, attn: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn).eval()


@pytest.mark.parametrize("attn, mask_dtype", [("sdpa", None), ("eager", torch.float32)])
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_packed_batch_equals_separate_runs(tiny_models, name, attn, mask_dtype):
    tokenizer = byte_tokenizer()
    tokenized = _tokenized([3, 21, 9, 14, 30, 5], max_length=48)
    packed = pack(tokenized, 48)
    assert len(packed) < len(tokenized)  # several examples share a row
    model = _model(tiny_models[name], attn)
    batch = causal_lm_collator(tokenizer.pad_token_id, packed=True, mask_dtype=mask_dtype)(list(packed))
    with torch.no_grad():
        out = model(**batch)
        separate = {}
        token_losses = []
        for row in tokenized:
            ids = torch.tensor([row["input_ids"]])
            logits = model(input_ids=ids).logits[0]
            separate[tuple(row["input_ids"])] = logits
            targets = torch.tensor(row["labels"][1:])
            token_losses.append(
                torch.nn.functional.cross_entropy(logits[:-1], targets, reduction="none")[targets != -100]
            )
    seen = 0
    for b, row in enumerate(packed):
        pos = row["position_ids"] + [len(row["input_ids"])]
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(row["input_ids"])]
        for a, z in pairwise(starts):
            ref = separate[tuple(row["input_ids"][a:z])]
            torch.testing.assert_close(out.logits[b, a:z], ref, atol=1e-5, rtol=1e-5)
            seen += 1
    assert seen == len(tokenized)
    torch.testing.assert_close(out.loss, torch.cat(token_losses).mean(), atol=1e-5, rtol=1e-5)


def test_without_the_block_mask_packed_examples_would_attend_to_each_other(tiny_models):
    """The control: a plain 2D mask over the same packed rows gives different logits."""
    tokenizer = byte_tokenizer()
    packed = pack(_tokenized([3, 21, 9, 14], max_length=48), 48)
    model = _model(tiny_models["tiny-llama"], "sdpa")
    batch = causal_lm_collator(tokenizer.pad_token_id, packed=True)(list(packed))
    plain = causal_lm_collator(tokenizer.pad_token_id)(list(packed))
    with torch.no_grad():
        a = model(**batch).logits
        b = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"],
                  position_ids=batch["position_ids"]).logits  # fmt: skip
    assert not torch.allclose(a, b, atol=1e-3)


def test_unpacked_collator_pads_right_with_a_2d_mask():
    rows = [{"input_ids": [1, 5, 6], "labels": [-100, 5, 6]}, {"input_ids": [1, 7], "labels": [-100, 7]}]
    batch = causal_lm_collator(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 7, 0]]
    assert batch["labels"].tolist() == [[-100, 5, 6], [-100, 7, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["position_ids"][:, :2].tolist() == [[0, 1], [0, 1]]
    with pytest.raises(DataError, match="position_ids"):
        causal_lm_collator(pad_token_id=0, packed=True)(rows)
