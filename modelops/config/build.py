"""Instantiate config groups through `_target_`, with errors that name the config key; compose configs."""

from __future__ import annotations

import re
from typing import Any

from modelops.errors import ConfigError, ModelopsError

_BAD_ARG = re.compile(r"unexpected keyword argument '(\w+)'")


def instantiate(node, key: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(node)`, turning a failure into a `ConfigError` that names `key`."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    # Plain containers: otherwise nested dataclass objects come back as DictConfig.
    kwargs.setdefault("_convert_", "all")
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, ModelopsError):
            raise cause from None
        bad = _BAD_ARG.search(str(cause))
        where = _find_key(node, bad.group(1), key) if bad else key
        raise ConfigError(f"{where}: {cause}") from None


def _find_key(node, name: str, path: str) -> str:
    """The full path of the (first, depth-first) config key called `name` under `node`."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    data = OmegaConf.to_container(node) if isinstance(node, DictConfig | ListConfig) else node
    stack = [(path, data)]
    while stack:
        where, item = stack.pop(0)
        if isinstance(item, dict):
            if name in item:
                return f"{where}.{name}"
            stack.extend((f"{where}.{k}", v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}.{i}", v) for i, v in enumerate(item))
    return path


def compose(overrides: list[str] | None = None, config_name: str = "config"):
    """Compose `conf/config.yaml` with recipes and overrides, as the CLI does (no run directory)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from modelops.config.paths import conf_dir
    from modelops.config.recipes import register_recipes
    from modelops.config.resolvers import register_resolvers

    register_recipes()
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides or []))


def model_spec(ref: str):
    """A `ModelSpec` for a reference: a `conf/model` option name, else a path/alias/hub id as is."""
    from modelops.models.resolve import model_option
    from modelops.models.spec import ModelSpec

    node = model_option(ref)
    return instantiate(node, "model") if node is not None else ModelSpec(name_or_path=ref)
