"""Packing: nothing lost, nothing too long, and a packed batch computes what separate runs compute."""

from __future__ import annotations

from itertools import pairwise

import datasets
import pytest
import torch

from modelops.errors import DataError
from modelops.models.tiny import byte_tokenizer
from modelops.tasks.packing import causal_lm_collator, pack, packed_layout
from modelops.tasks.sft import tokenize_causal_lm


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


def _separate(model, tokenized):
    """Each example run alone: its logits by input_ids, and the per-token losses of all of them."""
    separate, token_losses = {}, []
    for row in tokenized:
        logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0]
        separate[tuple(row["input_ids"])] = logits
        targets = torch.tensor(row["labels"][1:])
        token_losses.append(torch.nn.functional.cross_entropy(logits[:-1], targets, reduction="none")[targets != -100])
    return separate, torch.cat(token_losses).mean()


def _spans(position_ids: list[int]) -> list[tuple[int, int]]:
    starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(position_ids)]
    return list(pairwise(starts))


LAYOUT_CASES = [("sdpa", "position_ids", None), ("eager", "position_ids", None), ("sdpa", "flat", None),
                ("sdpa", "block_mask", None), ("eager", "block_mask", torch.float32)]  # fmt: skip


@pytest.mark.parametrize("attn, layout, mask_dtype", LAYOUT_CASES)
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_packed_batch_equals_separate_runs(tiny_models, name, attn, layout, mask_dtype):
    tokenizer = byte_tokenizer()
    tokenized = _tokenized([3, 21, 9, 14, 30, 5], max_length=48)
    packed = pack(tokenized, 48)
    assert len(packed) < len(tokenized)  # several examples share a row
    model = _model(tiny_models[name], attn)
    batch = causal_lm_collator(tokenizer.pad_token_id, packed=True, layout=layout, mask_dtype=mask_dtype)(list(packed))
    assert ("attention_mask" in batch) == (layout == "block_mask")
    with torch.no_grad():
        out = model(**batch)
        separate, loss = _separate(model, tokenized)
    widths = [sum(packed["length"])] if layout == "flat" else packed["length"]  # flat: one row, no padding
    seen = 0
    for b, width in enumerate(widths):
        ids = batch["input_ids"][b, :width].tolist()
        for a, z in _spans(batch["position_ids"][b, :width].tolist()):
            torch.testing.assert_close(out.logits[b, a:z], separate[tuple(ids[a:z])], atol=1e-5, rtol=1e-5)
            seen += 1
    assert seen == len(tokenized)
    torch.testing.assert_close(out.loss, loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["position_ids", "flat"])
def test_padding_free_packing_lets_no_token_see_another_example(tiny_models, layout):
    """Changing every token of one example changes no logit of the examples packed beside it."""
    tokenizer = byte_tokenizer()
    model = _model(tiny_models["tiny-llama"], "sdpa")
    collate = causal_lm_collator(tokenizer.pad_token_id, packed=True, layout=layout)
    a, b = [7, 8, 9, 10, 11], [20, 21, 22, 23]
    rows = [{"input_ids": a + b, "labels": a + b, "position_ids": [0, 1, 2, 3, 4, 0, 1, 2, 3]}]
    changed = [{**rows[0], "input_ids": [40, 41, 42, 43, 44, *b]}]
    with torch.no_grad():
        before, after = model(**collate(rows)).logits[0], model(**collate(changed)).logits[0]
    torch.testing.assert_close(before[5:], after[5:], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(before[:5], after[:5], atol=1e-3)  # the control: example A itself did change


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_packed_layout_is_padding_free_for_models_that_read_position_ids(tiny_models, name):
    assert packed_layout(_model(tiny_models[name], "sdpa")) == "position_ids"


def test_packed_layout_falls_back_to_the_block_mask_for_a_model_without_position_ids():
    """Bloom (ALiBi) takes no position_ids: padding-free packing would let its examples mix."""
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    model = BloomForCausalLM(BloomConfig(vocab_size=64, hidden_size=32, n_layer=2, n_head=2)).eval()
    assert packed_layout(model) == "block_mask"


def test_packed_layout_is_flat_for_flash_attention(tiny_models):
    model = _model(tiny_models["tiny-llama"], "sdpa")
    model.config._attn_implementation = "flash_attention_2"  # the kernel itself needs CUDA; the choice does not
    assert packed_layout(model) == "flat"


def test_without_the_block_mask_packed_examples_would_attend_to_each_other(tiny_models):
    """The control: a plain 2D mask over the same packed rows gives different logits."""
    tokenizer = byte_tokenizer()
    packed = pack(_tokenized([3, 21, 9, 14], max_length=48), 48)
    model = _model(tiny_models["tiny-llama"], "sdpa")
    batch = causal_lm_collator(tokenizer.pad_token_id, packed=True, layout="block_mask")(list(packed))
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
