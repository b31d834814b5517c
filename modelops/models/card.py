"""The model card: `model/README.md` with base model, data fingerprints, config and metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelops.io import atomic_path


def write_model_card(model_dir: str | Path, config_yaml: str, metrics: dict[str, Any] | None = None) -> Path:
    """Write `README.md` into `model_dir` from its `modelops.json`, the run's config and metrics."""
    model_dir = Path(model_dir)
    info = json.loads((model_dir / "modelops.json").read_text())
    data_rows = "\n".join(
        f"| {split} | {d['rows']} | `{d['fingerprint'][:16]}` |" for split, d in info.get("data", {}).items()
    )
    kind = "a PEFT adapter" if info.get("peft") else "a fully fine-tuned model"
    text = f"""# Fine-tuned {info["base_model"]}

This directory holds {kind} for task `{info["task"]}`, trained with modelops.
Labels: {info.get("labels")}.

## Data

| split | rows | fingerprint |
|---|---|---|
{data_rows}

## Metrics

```json
{json.dumps(metrics or {}, indent=2)}
```

## Config

```yaml
{config_yaml.strip()}
```
"""
    path = model_dir / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
