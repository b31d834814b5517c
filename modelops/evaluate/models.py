"""Turn whatever the Evaluator is given as a model into a loaded model, its tokenizer and its task.

Accepted, tried in this order:

1. an already loaded ``(model, tokenizer)`` pair (the task comes from the model's class);
2. a directory written by modelops training (``modelops.json`` inside), or a run directory holding one in
   ``model/`` (the task and labels come from ``modelops.json``);
3. a plain PEFT adapter directory (``adapter_config.json``: its ``task_type`` gives the task);
4. a saved transformers model directory (``config.json``);
5. a ``conf/model`` option name (``tiny_llama``): its ``ModelSpec`` gives the task, its adapter is left off;
6. a built-in alias (``minilm``, ``tiny-llama``), a registered model (``NAME``, ``NAME@alias``, ``NAME/3``) or a hub id.

For 4 and 6 the task comes from the model config's ``architectures`` (``*ForCausalLM``/``*LMHeadModel`` ->
``causal_lm``, ``*ForSequenceClassification`` -> ``seq_cls``); for other architectures (a bare encoder such as
MiniLM) it is ``seq_cls`` on classification data and ``causal_lm`` otherwise. A sequence classifier loaded from a
bare encoder gets a fresh head for the dataset's labels, seeded so its scores repeat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelops.config.build import instantiate
from modelops.errors import ModelError, ModelopsError
from modelops.models.loading import load_model, load_tokenizer, load_trained, quiet_peft
from modelops.models.resolve import model_option, resolve_name_or_path
from modelops.models.spec import ModelSpec

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@dataclass
class LoadedModel:
    """A model ready to evaluate.

    Attributes:
        model: the ``transformers``/``peft`` model.
        tokenizer: its tokenizer (with a pad token).
        task: ``seq_cls`` or ``causal_lm``.
        name: how results name it (the reference as given, or the directory).
        labels: for ``seq_cls``, the class names in id order.
    """

    model: Any
    tokenizer: Any
    task: str
    name: str
    labels: list[str] | None = None


def load_for_evaluation(ref: Any, data_format: str, labels: list[str] | None, seed: int) -> LoadedModel:
    """Load `ref` (see the module docstring) for evaluating data of `data_format` with class `labels`.

    Raises:
        ModelError: naming every kind of reference tried, when `ref` is none of them or fails to load.
    """
    if isinstance(ref, tuple | list) and len(ref) == 2:
        model, tokenizer = ref
        task = task_of_model(model)
        return LoadedModel(model, tokenizer, task, type(model).__name__, _model_labels(model, task))
    if isinstance(ref, tuple | list) or not isinstance(ref, str | Path):
        raise ModelError(
            f"Evaluator: cannot evaluate a {type(ref).__name__}; pass a path, a name or (model, tokenizer)"
        )
    text = str(ref)
    path = Path(text).expanduser()
    try:
        if path.is_dir():
            return _from_directory(path, text, data_format, labels, seed)
        option = _conf_option(text)
        if option is not None:
            return _from_spec(replace(option, peft=None), text, labels, seed)
        source = resolve_name_or_path(text)
        if Path(source).is_dir():  # a registered model resolves to its model directory
            return _from_directory(Path(source), text, data_format, labels, seed)
        return _from_base(source, text, data_format, labels, seed)
    except ModelopsError as exc:
        tried = (
            "a (model, tokenizer) pair, a modelops model or run directory (modelops.json, model/modelops.json), "
            "a PEFT adapter directory, a transformers model directory, a conf/model option, "
            "a built-in alias (minilm, tiny-llama, tiny-gpt2), a registered model (NAME, NAME@alias, NAME/3), a hub id"
        )
        raise ModelError(f"Evaluator: cannot load model {text!r}: {exc}. Accepted: {tried}") from exc


def task_of_model(model) -> str:
    """``causal_lm`` for a model with a language-modelling head that generates, else ``seq_cls``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = type(base).__name__
    if name.endswith(_CAUSAL_SUFFIXES):
        return "causal_lm"
    return "seq_cls"


def _model_labels(model, task: str) -> list[str] | None:
    if task != "seq_cls":
        return None
    id2label = getattr(model.config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(int(k) for k in id2label)] if id2label else None


def _from_directory(path: Path, name: str, data_format: str, labels, seed: int) -> LoadedModel:
    for candidate in (path, path / "model"):
        info = candidate / "modelops.json"
        if info.exists():
            model, tokenizer = load_trained(candidate)
            meta = json.loads(info.read_text())
            task = meta["task"]
            return LoadedModel(model, tokenizer, task, str(candidate), _model_labels(model, task))
    if (path / "adapter_config.json").exists():
        return _from_adapter(path, name)
    if (path / "config.json").exists():
        return _from_base(str(path.resolve()), name, data_format, labels, seed)
    raise ModelError(
        f"directory {path} holds no modelops.json, model/modelops.json, adapter_config.json or config.json"
    )


def _from_adapter(path: Path, name: str) -> LoadedModel:
    import peft

    task_type = json.loads((path / "adapter_config.json").read_text()).get("task_type")
    task = "seq_cls" if task_type == "SEQ_CLS" else "causal_lm"
    auto = peft.AutoPeftModelForSequenceClassification if task == "seq_cls" else peft.AutoPeftModelForCausalLM
    try:
        with quiet_peft():
            model = auto.from_pretrained(str(path), use_safetensors=True, use_kernels=False)
    except OSError as exc:
        raise ModelError(f"adapter {path}: cannot load it or its base model ({exc})") from exc
    return LoadedModel(model.eval(), load_tokenizer(str(path)), task, name, _model_labels(model, task))


def _conf_option(ref: str):
    """The `ModelSpec` of conf/model/<ref>.yaml, or None when there is no such option."""
    node = model_option(ref)  # an option with a `???` (hf) raises ConfigError naming the key
    if node is None:
        return None
    return instantiate(node, "model")


def _from_base(source: str, name: str, data_format: str, labels, seed: int) -> LoadedModel:
    saved_task = _task_from_config(source)
    task = saved_task or ("seq_cls" if data_format == "classification" else "causal_lm")
    # A saved classifier keeps its own head and labels; only a bare encoder gets a fresh head for the data.
    head_labels = None if saved_task == "seq_cls" else labels
    return _from_spec(ModelSpec(name_or_path=source, task=task), name, head_labels, seed)


def _from_spec(spec, name: str, labels, seed: int) -> LoadedModel:
    tokenizer = load_tokenizer(spec.name_or_path, spec.trust_remote_code)
    model = load_model(spec, labels=labels if spec.task == "seq_cls" else None, seed=seed).eval()
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, spec.task, name, _model_labels(model, spec.task))


def _task_from_config(source: str) -> str | None:
    """The task the saved architecture implies, or None for a bare encoder or an unreadable config."""
    config_path = Path(source) / "config.json"
    if config_path.is_file():
        architectures = json.loads(config_path.read_text()).get("architectures") or []
    else:
        try:
            from transformers import AutoConfig

            architectures = AutoConfig.from_pretrained(source).architectures or []
        except (OSError, ValueError):
            return None
    if any(a.endswith(_CAUSAL_SUFFIXES) for a in architectures):
        return "causal_lm"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "seq_cls"
    return None
