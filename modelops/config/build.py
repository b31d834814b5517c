"""The one way from a config node to an object: check it, then `hydra.utils.instantiate` it.

`instantiate` checks every `_target_` in the node with `modelops.config.targets.check_target` and
every node's keys against its target's signature (naming the full key) before anything is called,
then builds it with Hydra; a failure inside a target becomes a `ConfigError` naming the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelops.config.construct import construct
from modelops.config.paths import conf_dir
from modelops.config.recipes import register_recipes
from modelops.config.resolvers import register_resolvers
from modelops.config.validate import check_node

__all__ = ["compose", "construct", "instantiate"]


def instantiate(node, key: str, allowed: Sequence[str] = (), **kwargs: Any) -> Any:
    """Check `node` (config key `key`), then build it with `hydra.utils.instantiate(node, **kwargs)`.

    Args:
        node: a config node (DictConfig or plain dict) with a `_target_`.
        key: its config key, for messages (``trainer``, ``sanitizer.steps.2``).
        allowed: import prefixes or exact names trusted besides the defaults (``allowed_targets``);
            trusted as well by the components that build entries of their own inside (steps, metrics).
        kwargs: passed to Hydra (``_partial_``, runtime objects).

    Raises:
        ConfigError: naming the key of a refused target, an unknown key or a failed construction;
            a `ModelopsError` raised by the target itself passes through unchanged.
    """
    check_node(key, _plain(node), tuple(allowed))
    return construct(node, key, allowed, **kwargs)


def _plain(node) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def compose(overrides: list[str] | None = None, config_name: str = "config"):
    """Compose `conf/config.yaml` with recipes and overrides, as the CLI does (no run directory)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_recipes()
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides or []))
