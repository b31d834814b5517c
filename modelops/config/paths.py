"""Where `conf/` and `recipes/` are: inside the installed package (wheel) or at the checkout's top."""

from __future__ import annotations

from pathlib import Path

from modelops.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent.parent


def _find(name: str) -> Path:
    # A wheel carries the folders as package data under modelops/_resources/; an editable
    # install or a plain checkout has them beside the package.
    for candidate in (_PACKAGE / "_resources" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"modelops: cannot find its {name}/ folder next to {_PACKAGE}")


def cache_root() -> Path:
    """Where modelops keeps what it builds once and reuses (tiny models, tokenised data, registry downloads)."""
    import os

    return Path(os.environ.get("MODELOPS_CACHE", Path.home() / ".cache" / "modelops"))


def conf_dir() -> Path:
    return _find("conf")


def recipes_dir() -> Path:
    return _find("recipes")


def check_child_name(key: str, value: str) -> None:
    """Refuse a name that becomes a path inside a directory (a sweep job's subdir, a job name) but leaves it.

    A run or sweep directory the user names is honoured wherever it is; names made from config
    values are kept inside their parent (no absolute path, no `..`).

    Raises:
        ConfigError: naming `key`.
    """
    from pathlib import PurePath

    parts = PurePath(value).parts
    if PurePath(value).is_absolute() or ".." in parts:
        raise ConfigError(f"{key}: {value!r} would leave its parent directory; use a plain name")


def check_outputs_writable(root: Path | None = None, outputs: Path | None = None) -> None:
    """Fail with a clear error, before Hydra creates the run directory, when it cannot be written.

    Args:
        root: the directory `outputs/` is in (default: the working directory).
        outputs: the directory to check instead (the parent of a run directory the user named).
    """
    import errno
    import os
    import tempfile

    outputs = outputs or (root or Path.cwd()) / "outputs"
    # Probed where Hydra will create it, without creating anything: a config error found later leaves no trace.
    probe = outputs
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ConfigError(f"{outputs}: run directories cannot be written there ({exc.strerror})") from exc
