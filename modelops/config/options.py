"""Read one option of a config group (`conf/<group>/<name>.yaml`) as plain data, without composing.

This is how the Python API reads a group's option where it needs the node itself: `FineTuningJob` starts its
trainer node from `conf/trainer/default.yaml` (as the CLI does), a model reference may name a `conf/model` option.
`TrainConfig` and `Evaluator` define their defaults in Python; the `default` YAML spells the same values out.
"""

from __future__ import annotations

import functools
from typing import Any

from modelops.config.paths import conf_dir
from modelops.errors import ConfigError


def conf_node(group: str, name: str) -> dict[str, Any] | None:
    """`conf/<group>/<name>.yaml` as a plain dict (a fresh copy each call), or None when there is no such option.

    A name with a path separator is never an option (it is a directory or a hub id).
    """
    import copy

    node = _load(group, name) if "/" not in name and "\\" not in name else None
    return copy.deepcopy(node)


@functools.cache
def _load(group: str, name: str) -> dict[str, Any] | None:
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    path = conf_dir() / group / f"{name}.yaml"
    if not path.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path), throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"conf/{group}/{name}.yaml: {group}.{exc.full_key} is ??? and must be given") from exc
