"""The one check on what a dotted name in a config may build: judged by what it resolves to.

A `_target_` (or a dotted metric name) is allowed when

1. its spelling lies under an allowed prefix, so that nothing outside the allowed packages is
   even imported, and no part of it is private (``torch._C``, ``modelops.__builtins__``);
2. it resolves, without being called, to a class, function or method and not to a module;
3. every module it is defined in (``__module__``; for a bound method also its class's module)
   lies under an allowed prefix, so that a re-exported module (``torch.os.system`` is
   ``posix.system``) is refused whatever route reaches it;
4. it is none of the entry points in `DENIED`, which fetch or run code from elsewhere although
   they live in an allowed package.

The allowed prefixes are `DEFAULT_ALLOWED` plus the config's ``allowed_targets``; a name listed
there exactly (``allowed_targets=[torch.hub.load]``) is trusted as it is, denied or not. Prefixes
match whole components: ``torch`` allows ``torch.optim.adamw``, not ``torchvision``.

This stops a recipe from elsewhere from running arbitrary code by accident; it is not a sandbox:
an allowed function can still do anything its own code does with the arguments it is given.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from modelops.errors import ConfigError

DEFAULT_ALLOWED = ("modelops", "torch", "transformers", "peft", "datasets", "accelerate")

#: Where (module, or module.qualname) an entry point is defined -> why it is refused by default.
DENIED: dict[str, str] = {
    "torch.hub": "runs a downloaded repository's hubconf.py, downloads files",
    "torch.serialization.load": "torch.load unpickles arbitrary code with weights_only=False",
    "torch.package": "imports and unpickles the code inside a package file",
    "torch.utils.cpp_extension": "compiles and loads native code",
    "torch.utils.collect_env": "runs shell commands",
    "torch.distributed.rpc": "runs functions on other machines",
    "transformers.models.auto": "auto classes run a hub repository's code with trust_remote_code",
    "transformers.dynamic_module_utils": "imports Python modules from a hub repository",
    "transformers.pipelines": "pipeline() loads any hub model, trust_remote_code included",
    "datasets.load.load_dataset": "downloads and builds any hub dataset",
    "datasets.load.load_dataset_builder": "downloads and builds any hub dataset",
    "accelerate.commands": "starts scripts in new processes",
}

_TRUSTED: ContextVar[tuple[str, ...]] = ContextVar("modelops_trusted_targets", default=())


@contextlib.contextmanager
def trusting(allowed: Sequence[str]) -> Iterator[None]:
    """Trust `allowed` (prefixes or exact names) in every check made inside the block.

    The config's ``allowed_targets`` reach the components that build objects from entries of
    their own (sanitizer steps, metrics) this way, since those are built inside a component.
    """
    token = _TRUSTED.set((*_TRUSTED.get(), *allowed))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def check_target(key: str, name: Any, allowed: Sequence[str] = ()) -> Any:
    """The object `name` resolves to, if a config may build it (see the module docstring).

    Args:
        key: the config key that holds `name`, for the message (``model.peft._target_``).
        name: a dotted name (``torch.optim.AdamW``).
        allowed: prefixes or exact names trusted besides `DEFAULT_ALLOWED` (``allowed_targets``).

    Raises:
        ConfigError: naming `key`, `name` and, once resolved, what it resolved to.
    """
    if not isinstance(name, str) or "." not in name.strip("."):
        raise ConfigError(f"{key}: {name!r} is not an import path like 'package.module.Class'")
    extra = tuple(_TRUSTED.get()) + tuple(allowed)
    prefixes = tuple(p.rstrip(".") for p in (*DEFAULT_ALLOWED, *extra))
    exact = name in extra
    if not exact and not _under(name, prefixes):
        raise ConfigError(f"{key}: {name!r} is outside the allowed prefixes {list(prefixes)}{_HOW}")
    if not exact and any(part.startswith("_") for part in name.split(".")):
        raise ConfigError(f"{key}: {name!r} names a private part; targets must be public API")
    obj = _resolve(key, name)
    if inspect.ismodule(obj):
        raise ConfigError(f"{key}: {name!r} is a module; a target is a class, function or method")
    if exact:
        return obj
    origins = _origins(obj)
    outside = [m for m in origins if not _under(m, prefixes)] or ([] if origins else ["an unknown module"])
    if outside:
        raise ConfigError(
            f"{key}: {name!r} resolves to {_describe(obj)}, outside the allowed prefixes {list(prefixes)}{_HOW}"
        )
    denied = next((d for d in DENIED for where in _names(obj) if _under(where, (d,))), None)
    if denied:
        raise ConfigError(
            f"{key}: {name!r} resolves to {_describe(obj)}, refused by default ({DENIED[denied]}); "
            f"to trust it, name it exactly: allowed_targets=[{name}]"
        )
    return obj


_HOW = " (add its package to `allowed_targets` in your config to trust it)"


def _under(dotted: str, prefixes: Sequence[str]) -> bool:
    return any(dotted == p or dotted.startswith(p + ".") for p in prefixes)


def _resolve(key: str, name: str) -> Any:
    """Import and walk `name` the way Hydra's `_locate` does (attribute first, then submodule)."""
    parts = name.split(".")
    try:
        obj = importlib.import_module(parts[0])
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import {name!r} ({exc})") from exc
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        submodule = ".".join(parts[: i + 1])
        try:
            if not inspect.ismodule(obj):
                raise ModuleNotFoundError(name=submodule)
            obj = importlib.import_module(submodule)
        except ModuleNotFoundError as exc:
            if exc.name not in (submodule, None) and not submodule.startswith(f"{exc.name}."):
                raise ConfigError(f"{key}: cannot import {name!r} ({exc})") from exc
            raise ConfigError(f"{key}: {name!r} does not exist (no {part!r} in {'.'.join(parts[:i])})") from exc
        except Exception as exc:  # an allowed module that fails to import: say which and why
            raise ConfigError(f"{key}: cannot import {name!r} ({exc})") from exc
    return obj


def _owner(obj: Any) -> type | None:
    """The class a method is bound to or defined on; for a callable instance, its class."""
    if inspect.isclass(obj):
        return None
    bound = getattr(obj, "__self__", None)
    if inspect.isclass(bound):
        return bound
    if bound is not None and not inspect.ismodule(bound):
        return type(bound)
    if getattr(obj, "__objclass__", None) is not None:
        return obj.__objclass__
    return None if inspect.isroutine(obj) else type(obj)


def _origins(obj: Any) -> list[str]:
    """Every module `obj` is defined in, as far as known (builtins may not say)."""
    func = getattr(obj, "__func__", obj)
    own = getattr(func, "__module__", None) if inspect.isclass(obj) or inspect.isroutine(obj) else None
    owner = _owner(obj)
    found = [own, getattr(owner, "__module__", None)]
    return [m if isinstance(m, str) else "an unknown module" for m in found if m is not None]


def _names(obj: Any) -> list[str]:
    """Where `obj` is defined, as ``module.qualname``, from itself and from its owner."""
    func = getattr(obj, "__func__", obj)
    names = [f"{getattr(func, '__module__', None)}.{getattr(func, '__qualname__', '')}"]
    owner = _owner(obj)
    if owner is not None:
        names.append(f"{owner.__module__}.{owner.__qualname__}.{getattr(obj, '__name__', '')}".rstrip("."))
    return names


def _describe(obj: Any) -> str:
    names = _names(obj)
    return names[-1] if inspect.ismethod(obj) or names[0].startswith("None.") else names[0]
