"""A disk cache of tokenised training data, keyed by everything that changes it.

An entry is a `save_to_disk` directory named by the SHA-256 of its key. It is written under a
temporary name and renamed into place, so an entry either is complete or does not exist: a crash
mid-write leaves at most a `.tmp-*` directory, which is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelops.config.paths import cache_root

#: Bump when the tokenisation code changes what it produces, so old entries are not reused.
PIPELINE_VERSION = 1


def tokenizer_digest(tokenizer) -> str:
    """A SHA-256 of what decides the tokenizer's output: vocab, merges, special tokens, processors, chat template."""
    parts = {
        "class": type(tokenizer).__name__,
        "vocab": sorted(tokenizer.get_vocab().items()),
        "special": {name: str(value) for name, value in sorted(tokenizer.special_tokens_map.items())},
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # The serialised pipeline covers merges, normaliser, pre-tokeniser and the post-processor (BOS/EOS adding).
        parts["backend"] = backend.to_str()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def tokenization_key(fingerprint: str, tokenizer, fmt: str, max_length: int, loss_on: str, packing: bool) -> dict:
    """Everything that changes the tokenised data, as a JSON-able dict.

    Args:
        fingerprint: the content fingerprint of the split (`Dataset.fingerprint(split)`).
        tokenizer: the tokenizer; it enters as a digest of its content, not its name.
        fmt: the split's format.
        max_length: most tokens per row.
        loss_on: which tokens carry loss.
        packing: whether rows are packed.
    """
    return {
        "version": PIPELINE_VERSION,
        "data": fingerprint,
        "tokenizer": tokenizer_digest(tokenizer),
        "format": fmt,
        "max_length": int(max_length),
        "loss_on": loss_on,
        "packing": bool(packing),
    }


def cached_dataset(key: dict, build: Callable[[], Any], cache_dir: str | os.PathLike | None = None) -> tuple:
    """The dataset stored under `key`, building and storing it on a miss.

    Args:
        key: from `tokenization_key` (any JSON-able dict works).
        build: makes the `datasets.Dataset` on a miss.
        cache_dir: where entries live; default `$MODELOPS_CACHE/tokenized`.

    Returns:
        (dataset, hit): the dataset, memory-mapped from the cache entry, and whether it was there already.
    """
    import datasets

    root = Path(cache_dir) if cache_dir is not None else default_dir()
    path = root / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    if path.exists():
        return datasets.load_from_disk(str(path)), True
    _store(build(), key, root, path)
    return datasets.load_from_disk(str(path)), False


def default_dir() -> Path:
    """The tokenised-data cache (`trainer.cache_dir` null): `$MODELOPS_CACHE/tokenized`."""
    return cache_root() / "tokenized"


def _store(dataset, key: dict, root: Path, path: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name[:12]}-", dir=root))
    try:
        dataset.save_to_disk(str(tmp / "data"))
        (tmp / "data" / "modelops_key.json").write_text(json.dumps(key, indent=2, sort_keys=True))
        os.rename(tmp / "data", path)  # atomic; if another process stored it first, theirs stays
    except OSError:
        if not path.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
