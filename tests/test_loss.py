"""The loss from hidden states (modelops.models.loss) equals the plain full-logits path: values and gradients.

Tiny Llama, Qwen2 and GPT-2 shapes built from config; LoRA (also with the head under LoRA) and full
fine-tuning; padded and packed batches; per-sequence log-probs as DPO uses them.
"""

from __future__ import annotations

import pytest
import torch

from modelops.models import loss as L
from modelops.models.labels import IGNORE_INDEX

VOCAB = 300
SHAPES = {
    "llama": ("LlamaConfig", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                              "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False}),
    "qwen2": ("Qwen2Config", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                              "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True}),
    # no dropout: the two paths run the model twice and must see the same activations
    "gpt2": ("GPT2Config", {"n_embd": 32, "n_layer": 2, "n_head": 4, "tie_word_embeddings": True, "bos_token_id": 1,
                            "eos_token_id": 2, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}),
}  # fmt: skip


def _model(shape: str, lora: str | None = None, attn: str = "sdpa"):
    import transformers

    kind, options = SHAPES[shape]
    config = getattr(transformers, kind)(vocab_size=VOCAB, max_position_embeddings=128, **options)
    config._attn_implementation = attn
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        targets = "all-linear" if lora == "body" else ["lm_head", "c_attn", "q_proj", "v_proj"]
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                                                 init_lora_weights=False))  # fmt: skip
        assert (type(model.get_output_embeddings()) is torch.nn.Linear) == (lora == "body")
    return model.train()


def _padded_batch():
    torch.manual_seed(1)
    ids = torch.randint(4, VOCAB, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 14:], mask[2, 9:] = 0, 0
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    labels[:, :5] = IGNORE_INDEX  # a prompt
    return {"input_ids": ids, "attention_mask": mask}, labels


def _packed_batch():
    torch.manual_seed(2)
    ids = torch.randint(4, VOCAB, (2, 24))
    position_ids = torch.tensor([list(range(10)) + list(range(14)), list(range(7)) + list(range(17))])
    labels = ids.clone()
    labels[position_ids == 0] = IGNORE_INDEX
    labels[0, 10:13] = IGNORE_INDEX
    return {"input_ids": ids, "position_ids": position_ids, "use_cache": False}, labels


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _compare(model, inputs, labels, **options):
    plain = L.full_logits_loss_sum(model, inputs, labels)
    plain.backward()
    expected = _grads(model)
    chunked = L.loss_sum(model, inputs, labels, **options)
    chunked.backward()
    got = _grads(model)
    torch.testing.assert_close(chunked, plain, atol=1e-5, rtol=1e-5)
    assert got.keys() == expected.keys() and expected
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("lora", [None, "body", "head"])
def test_loss_and_gradients_equal_full_logits_padded(shape, lora):
    inputs, labels = _padded_batch()
    # chunks of 7 positions: several chunks and a ragged last one
    _compare(_model(shape, lora), inputs, labels, chunk_tokens=7)


@pytest.mark.parametrize("shape", ["llama", "qwen2"])
def test_loss_and_gradients_equal_full_logits_packed(shape):
    inputs, labels = _packed_batch()
    _compare(_model(shape, "body"), inputs, labels, chunk_tokens=5)
    _compare(_model(shape), inputs, labels)


def test_the_head_sees_only_the_labelled_positions_in_chunks():
    model = _model("qwen2")
    inputs, labels = _padded_batch()
    seen = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape)))
    L.loss_sum(model, inputs, labels, chunk_tokens=8).backward()
    hook.remove()
    labelled = int((labels[:, 1:] != IGNORE_INDEX).sum())
    forward = [s for s in seen if s[-2:] != (0, VOCAB)]  # the model's own call gets an empty slice
    assert (3, 0, VOCAB) in seen
    # forward chunks, then the same chunks recomputed in the backward; never more than 8 positions at once
    assert sum(s[0] for s in forward) == 2 * labelled and max(s[0] for s in forward) == 8


def test_sequence_logprobs_equal_full_logits_for_dpo_pairs():
    from modelops.tasks.preference import PairCollator, PreferenceLoss, SideLogps

    model = _model("llama", "body")
    pairs = [{"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9, 2], "rejected_ids": [10, 2]},
             {"prompt_ids": [11, 12], "chosen_ids": [13, 14, 15, 2], "rejected_ids": [16, 17, 2]}]  # fmt: skip
    batch = PairCollator(0)(pairs)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    dpo = PreferenceLoss("dpo", beta=0.1)

    def sides(sums, counts):
        return SideLogps(sums[:2], sums[2:], counts[:2], counts[2:])

    with torch.no_grad(), model.disable_adapter():
        reference = sides(*L.sequence_logprobs(model, inputs, batch["labels"]))
    logprobs, rows = L.full_logits_token_logprobs(model, inputs, batch["labels"])
    plain_sums = torch.zeros(4).index_add(0, rows, logprobs)
    counts = torch.bincount(rows, minlength=4)
    dpo(sides(plain_sums, counts), reference)[0].sum().backward()
    expected = _grads(model)
    sums, got_counts = L.sequence_logprobs(model, inputs, batch["labels"], chunk_tokens=3)
    dpo(sides(sums, got_counts), reference)[0].sum().backward()
    torch.testing.assert_close(sums, plain_sums, atol=1e-5, rtol=1e-5)
    assert got_counts.tolist() == counts.tolist() == [3, 4, 2, 3]
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=1e-5, msg=name)


def test_no_labelled_position_gives_a_zero_loss_with_gradients():
    model = _model("llama")
    inputs, labels = _padded_batch()
    loss = L.loss_sum(model, inputs, torch.full_like(labels, IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0


def test_inference_mode_scores_without_keeping_a_graph():
    model = _model("gpt2").eval()
    inputs, labels = _padded_batch()
    with torch.inference_mode():
        got = L.loss_sum(model, inputs, labels, chunk_tokens=4)
        plain = L.full_logits_loss_sum(model, inputs, labels)
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-5)
