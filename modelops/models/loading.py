"""Load tokenizers and models for a `ModelSpec`, apply PEFT, and load what training saved."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, ModelError
from modelops.models.resolve import resolve_name_or_path
from modelops.models.spec import ModelSpec

_AUTO_CLASSES = {"seq_cls": "AutoModelForSequenceClassification", "causal_lm": "AutoModelForCausalLM"}


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """Load a tokenizer; give it a pad token when it has none (the EOS token, else a new `[PAD]`)."""
    from transformers import AutoTokenizer

    source = resolve_name_or_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelError(f"model {name_or_path!r}: cannot load a tokenizer from {source} ({exc})") from exc
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    return tokenizer


def load_model(spec: ModelSpec, labels: list[str] | None = None, seed: int | None = None):
    """Load the base model of `spec` for its task, then wrap it with `spec.peft` if given.

    Args:
        spec: the model to load.
        labels: class names in id order (sequence classification); sizes the new head.
        seed: seeds torch before loading, so a freshly initialised head is reproducible.
    """
    import torch
    import transformers

    if seed is not None:
        torch.manual_seed(seed)
    source = resolve_name_or_path(spec.name_or_path)
    if trained_adapter_info(source) is not None:
        return _continue_adapter(spec, source, labels, seed)
    # Weights load from safetensors only: a pickled checkpoint could run code.
    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, spec.dtype), "trust_remote_code": spec.trust_remote_code, "use_safetensors": True,
        "use_kernels": spec.use_kernels,  # transformers' default (on) would fetch hub kernels at run time
    }  # fmt: skip
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    if spec.task == "seq_cls" and labels:
        kwargs |= {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }
    if spec.quantization:
        kwargs |= _quantization(spec.quantization)
    auto = getattr(transformers, _AUTO_CLASSES[spec.task])
    _refuse_pickled_weights(spec.name_or_path, source)
    try:
        model = auto.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise ModelError(f"model {spec.name_or_path!r}: cannot load from {source} ({exc})") from exc
    # Non-reentrant checkpointing gives gradients to adapters whose frozen base inputs need none.
    checkpointing = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
    if spec.quantization:
        from peft import prepare_model_for_kbit_training

        # Norms in fp32, inputs requiring grad, and checkpointing if asked: what a 4-bit base needs to train.
        model = prepare_model_for_kbit_training(model, spec.gradient_checkpointing, **checkpointing)
    elif spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(**checkpointing)
        if spec.peft is not None:
            model.enable_input_require_grads()  # a frozen embedding would cut the checkpointed graph
    if spec.peft is not None:
        from peft import get_peft_model

        with quiet_peft():
            model = get_peft_model(model, spec.peft)
    return model


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the FutureWarning peft 0.21 triggers by reading transformers' deprecated `is_gradient_checkpointing`.

    It is about peft's own code, says nothing to the user, and is printed on every adapter load.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _quantization(kind: str) -> dict[str, Any]:
    """from_pretrained arguments for a 4-bit NF4 base (QLoRA), on this process's GPU."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"model.quantization={kind}: bitsandbytes 4-bit weights need a CUDA GPU; set model.quantization=null"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"model.quantization={kind}: needs the bitsandbytes package (pip install 'modelops[gpu]')")
    from accelerate import PartialState
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=kind, bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )  # fmt: skip
    # A quantised model is loaded onto its GPU (it cannot be moved later): each process its own.
    return {"quantization_config": config, "device_map": {"": PartialState().local_process_index}}


def apply_liger(model) -> None:
    """Swap transformers' RMSNorm, RoPE and MLP activations of `model` for Liger's Triton kernels, in place.

    Liger's fused linear cross-entropy is not patched into the model's forward: the loop calls it itself
    on the hidden states (`modelops.models.loss.loss_sum(liger=True)`), summed over each step's targets.

    Raises:
        ConfigError: no CUDA GPU, or the `liger-kernel` package is not installed.
    """
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise ConfigError("trainer.liger=true: Liger kernels need a CUDA GPU; set trainer.liger=false")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError("trainer.liger=true: needs the liger-kernel package (pip install 'modelops[gpu]')")
    from transformers.integrations.liger import apply_liger_kernel

    apply_liger_kernel(model, {"fused_linear_cross_entropy": False, "cross_entropy": False})


def trained_adapter_info(source: str | Path) -> dict[str, Any] | None:
    """The `modelops.json` of a model directory holding an adapter trained by modelops, else None."""
    info_path = Path(source) / "modelops.json"
    if not info_path.is_file() or not (Path(source) / "adapter_config.json").is_file():
        return None
    return json.loads(info_path.read_text())


def base_model_ref(ref: str) -> str:
    """The model `ref`'s weights sit on: for an adapter trained by modelops, its base model; else `ref`."""
    info = trained_adapter_info(resolve_name_or_path(ref))
    return ref if info is None else info["base_model"]


def _continue_adapter(spec: ModelSpec, source: str, labels: list[str] | None, seed: int | None):
    """A trained adapter on its base model, trainable again: training continues from it (its own LoRA config)."""
    from peft import PeftModel

    info = trained_adapter_info(source)
    if labels and info.get("labels") and list(labels) != list(info["labels"]):
        raise ModelError(f"model {spec.name_or_path!r}: trained with labels {info['labels']}, the data has {labels}")
    if spec.peft is not None:
        warnings.warn(f"model.peft is not applied: {spec.name_or_path!r} is a trained adapter, and training "
                      "continues that adapter", stacklevel=3)  # fmt: skip
    base_spec = ModelSpec(name_or_path=info["base_model"], task=info["task"], max_length=spec.max_length,
                          dtype=spec.dtype, trust_remote_code=spec.trust_remote_code,
                          use_kernels=spec.use_kernels)  # fmt: skip
    base = load_model(base_spec, labels=info.get("labels") or labels, seed=seed)
    with quiet_peft():
        return PeftModel.from_pretrained(base, source, is_trainable=True)


def _refuse_pickled_weights(ref: str, source: str) -> None:
    path = Path(source)
    if path.is_dir() and not any(path.glob("*.safetensors")) and any(path.glob("*.bin")):
        raise ModelError(
            f"model {ref!r}: {path} has only pickled weights (*.bin); modelops loads safetensors only "
            "(convert them with safetensors.torch.save_file on a machine you trust)"
        )


def load_trained(model_dir: str | Path):
    """Load a model directory written by training (PEFT adapter or full model) and its tokenizer.

    Returns:
        `(model, tokenizer)`, the model in eval mode.
    """
    import transformers

    model_dir = Path(model_dir)
    info_path = model_dir / "modelops.json"
    if not info_path.exists():
        raise ModelError(f"{model_dir}: not a modelops model directory (no modelops.json)")
    info = json.loads(info_path.read_text())
    tokenizer = load_tokenizer(str(model_dir))
    if (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        base = load_model(ModelSpec(name_or_path=info["base_model"], task=info["task"]), labels=info.get("labels"))
        with quiet_peft():
            model = PeftModel.from_pretrained(base, str(model_dir))
    else:
        auto = getattr(transformers, _AUTO_CLASSES[info["task"]])
        model = auto.from_pretrained(str(model_dir), use_safetensors=True, use_kernels=False)
    return model.eval(), tokenizer
