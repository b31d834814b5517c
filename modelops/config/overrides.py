"""Check the command line's config before Hydra creates a run directory.

Hydra applies the overrides and creates the run directory before the task function runs, so a
mistyped key (`trainer.learnig_rate=1e-3`) would end in its "not in struct" error with exit 1.
`composition_error` turns such a failure of `hydra.main`'s composition into a `ConfigError` with a
did-you-mean. A single run is then checked by the `modelops.run.CheckBeforeRunDir` callback before the
run directory exists; a multirun has no single config, so `precheck` composes it with each swept key's
first value and validates that, before `hydra.main` starts any trial.
"""

from __future__ import annotations

import re

from modelops.config.build import compose
from modelops.config.validate import check
from modelops.errors import ConfigError, did_you_mean

# Hydra's own flags take values or change what runs (--cfg, --info, --config-dir ...): leave those to Hydra.
_PLAIN_FLAGS = ("-m", "--multirun")
_COULD_NOT_OVERRIDE = re.compile(r"Could not override '([^']+)'")


def precheck(argv: list[str]):
    """Compose and validate the config of `python -m modelops ARGS` as `hydra.main` will.

    Sweep overrides (`a=1,2`) are checked with their first value; run and sweep settings of
    Hydra itself (`hydra.*`) are left to Hydra.

    Returns:
        The composed config, or None when Hydra's own flags (``--cfg``, ``--config-dir`` ...) leave it to Hydra.

    Raises:
        ConfigError: an unknown key (with a did-you-mean), a bad value, or whatever `validate` refuses.
    """
    args = argv[1:]
    if any(arg.startswith("-") and arg not in _PLAIN_FLAGS for arg in args):
        return None
    overrides = _first_of_sweeps([arg for arg in args if arg not in _PLAIN_FLAGS])
    cfg = _compose(overrides)
    check(cfg)
    return cfg


def composition_error(exc: Exception, argv: list[str]) -> ConfigError:
    """What `hydra.main` failed to compose for `python -m modelops ARGS`, as a ConfigError (with a did-you-mean)."""
    args = [arg for arg in argv[1:] if not arg.startswith("-")]
    return _explain(exc, _first_of_sweeps(args) if set(_PLAIN_FLAGS) & set(argv) else args)


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """The overrides with each sweep replaced by its first value (interval sweeps dropped), `hydra.*` left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"cannot parse the overrides: {exc}") from exc
    out = []
    for override, text in zip(parsed, overrides, strict=True):
        if override.get_key_element().lstrip("+~").startswith(("hydra.", "hydra/")):
            continue
        if override.is_sweep_override():
            try:
                first = next(override.sweep_string_iterator())
            except (HydraException, StopIteration, TypeError):
                continue  # an interval for a sweeper to sample: its key is checked when the job runs
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(text)
    return out


def _compose(overrides: list[str]):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _explain(exc, overrides) from exc


def _explain(exc: Exception, overrides: list[str]) -> ConfigError:
    """A composition failure as a ConfigError; an unknown key gets the close keys of its parent."""
    message = str(exc)
    match = _COULD_NOT_OVERRIDE.search(message)
    if not match or "not in struct" not in str(exc.__cause__ or message):
        return ConfigError(message.strip())
    key = match.group(1)
    parent_path, _, name = key.rpartition(".")
    rest = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
    known = _keys_of(_compose_quietly(rest), parent_path)
    return ConfigError(
        f"{key}: unknown key{did_you_mean(name, known)}; valid keys: {sorted(known)} "
        f"(to add a key the target accepts, write +{key}=...)"
    )


def _compose_quietly(overrides: list[str]):
    try:
        return compose(overrides)
    except Exception:  # the original error is the one to report; this is only for suggestions
        return None


def _keys_of(cfg, path: str) -> list[str]:
    from omegaconf import DictConfig, OmegaConf

    node = cfg if not path else (OmegaConf.select(cfg, path) if cfg is not None else None)
    return [str(k) for k in node] if isinstance(node, DictConfig) else []
