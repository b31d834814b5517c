"""The run's result, `model/`: adapter or full model, tokenizer, labels, and optionally the merged model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from modelops.io import atomic_dir, write_json
from modelops.models.loading import base_model_ref
from modelops.models.spec import ModelSpec

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")


def save_model(accelerator, model, tokenizer, spec: ModelSpec, dataset, run_dir: Path, info: dict[str, Any]) -> Path:
    """Write `run_dir/model/` atomically (main process only) and return its path.

    Args:
        info: extra facts for `modelops.json` (best step, format, ...).
    """
    model_dir = run_dir / "model"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        net = accelerator.unwrap_model(model)
        adapter = hasattr(net, "peft_config")  # spec.peft, or a trained adapter whose training continued
        with atomic_dir(model_dir) as tmp:
            net.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if adapter and spec.task == "seq_cls":
                _labelled_base(net, spec, tmp, model_dir.resolve())
            write_json(tmp / "modelops.json", {
                "base_model": base_model_ref(spec.name_or_path), "continued_from": _continued_from(spec.name_or_path),
                "task": spec.task, "labels": dataset.labels,
                "format": dataset.format, "max_length": spec.max_length, "peft": adapter,
                "data": dataset.lineage(), **info,
            })  # fmt: skip
            if info.get("merged"):
                _save_merged(net, tokenizer, tmp / "merged")
    accelerator.wait_for_everyone()
    return model_dir


def _continued_from(ref: str) -> str | None:
    """The model training started from when that was itself a trained adapter (a run's model, a registered version)."""
    return ref if base_model_ref(ref) != ref else None


def _labelled_base(net, spec: ModelSpec, tmp: Path, final_dir: Path) -> None:
    """Give a classifier adapter a base that carries its labels.

    `AutoPeftModelForSequenceClassification` (and transformers' adapter loading) build the base
    from `base_model_name_or_path` with that model's own config, which knows nothing of our labels
    (two generic ones). So `model/base/` holds the base config with our id2label/label2id and
    links to the base weight files (hard links: no copy), and the adapter points there.
    """
    from modelops.models.resolve import resolve_name_or_path

    source = Path(resolve_name_or_path(base_model_ref(spec.name_or_path)))
    if not source.is_dir():
        return  # a hub id: nothing local to link; the labels still travel in modelops.json
    base = tmp / "base"
    base.mkdir()
    net.get_base_model().config.save_pretrained(base)
    for path in source.iterdir():
        if path.is_file() and path.name.endswith(_WEIGHT_SUFFIXES):
            _link(path, base / path.name)
    adapter_config = tmp / "adapter_config.json"
    doc = json.loads(adapter_config.read_text())
    doc["base_model_name_or_path"] = str(final_dir / "base")
    write_json(adapter_config, doc)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source.resolve(), target)
    except OSError:  # another filesystem: a symbolic link
        os.symlink(source.resolve(), target)


def _save_merged(net, tokenizer, path: Path) -> None:
    """The adapter merged into the base weights: a plain transformers model (this changes `net`: call last)."""
    merged = net.merge_and_unload()
    merged.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
