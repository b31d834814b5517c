"""Build a checked config node with `hydra.utils.instantiate`, with errors that name the node's key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelops.config.targets import trusting
from modelops.errors import ConfigError, ModelopsError


def construct(node, key: str, allowed: Sequence[str] = (), **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(node, **kwargs)` for a node already checked with `check_node`."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    # Plain containers: otherwise nested dataclass objects come back as DictConfig.
    kwargs.setdefault("_convert_", "all")
    try:
        with trusting(tuple(allowed)):
            return hydra_instantiate(node, **kwargs)
    except InstantiationException as exc:
        if not isinstance(exc.__cause__, ModelopsError):
            raise ConfigError(f"{key}: {exc.__cause__ or exc}") from exc
        error = exc.__cause__
    # The target's own error, raised outside the handler so that it keeps its own chain: Hydra's
    # wrapper around it adds nothing.
    raise error
