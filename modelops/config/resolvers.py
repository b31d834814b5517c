"""OmegaConf resolvers the config uses; registered before Hydra composes anything."""

from __future__ import annotations

import secrets


def register_resolvers() -> None:
    """`${run_id:}`: a short random id, fixed once per config (two runs started in the same second
    still get different run directories)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", lambda: secrets.token_hex(3), use_cache=True)
