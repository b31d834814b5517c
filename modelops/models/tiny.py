"""Tiny causal LMs built from a transformers config with seeded random weights, and their tokenizer.

Nothing is downloaded: the tokenizer is byte-level (every UTF-8 byte is a token, plus four special
tokens) and carries a ChatML-style chat template; the weights are initialised from a fixed seed.
A built model is written once to a cache directory (`$MODELOPS_CACHE`, default
`~/.cache/modelops`) keyed by its settings, and from then on is an ordinary local model directory
that transformers, peft and modelops load like any other.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from modelops.paths import cache_root  # re-exported: callers import it from here too

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]

# ChatML-style turns; `{% generation %}` marks what the assistant says, so that
# `return_assistant_tokens_mask` can tell which tokens carry the loss.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '</s>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

#: name -> (transformers config class, its settings). A few million parameters each.
TINY_MODELS = {
    "tiny-llama": ("LlamaConfig", {
        "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 4, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
    }),
    "tiny-gpt2": ("GPT2Config", {
        "n_embd": 256, "n_layer": 4, "n_head": 4, "n_positions": 512, "tie_word_embeddings": True,
    }),
}  # fmt: skip


def byte_tokenizer():
    """A byte-level `PreTrainedTokenizerFast`: 256 byte tokens + `<pad> <s> </s> <unk>`, BOS added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({ch: len(SPECIAL_TOKENS) + i for i, ch in enumerate(sorted(alphabet))})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=512,
    )  # fmt: skip
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model_path(name: str, seed: int = 0) -> Path:
    """The directory of tiny model `name`, building it on first use (atomically)."""
    config_class, settings = TINY_MODELS[name]
    key = hashlib.sha256(json.dumps([name, config_class, settings, seed], sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / "models" / f"{name}-{key}"
    if not (path / "config.json").exists():
        _build(path, config_class, settings, seed)
    return path


def _build(path: Path, config_class: str, settings: dict, seed: int) -> None:
    import shutil
    import tempfile

    import torch
    import transformers

    tokenizer = byte_tokenizer()
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **settings,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, path)  # atomic; if another process built it first, theirs stays
    except OSError:
        if not (path / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
