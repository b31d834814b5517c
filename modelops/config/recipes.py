"""Recipes: each `recipes/NAME.yaml` becomes the option `recipe=NAME` (package `_global_`)."""

from __future__ import annotations

from modelops.config.paths import recipes_dir


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def register_recipes() -> None:
    """Store every recipe in Hydra's ConfigStore as group `recipe`, so `+recipe=NAME` finds it.

    Hydra looks a group up by folder name, and the top-level folder is `recipes/` (plural), so
    the recipes are registered explicitly; their `defaults: [override /group: x]` still apply.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for path in sorted(recipes_dir().glob("*.yaml")):
        store.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")
