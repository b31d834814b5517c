"""Where `conf/` and `recipes/` are: inside the installed package (wheel) or at the checkout's top."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def _find(name: str) -> Path:
    # A wheel carries the folders as package data under modelops/_resources/; an editable
    # install or a plain checkout has them beside the package.
    for candidate in (_PACKAGE / "_resources" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"modelops: cannot find its {name}/ folder next to {_PACKAGE}")


def conf_dir() -> Path:
    return _find("conf")


def recipes_dir() -> Path:
    return _find("recipes")


def check_inside_outputs(key: str, value: str, root: Path | None = None) -> Path:
    """Refuse a run/sweep directory outside `outputs/` (through `..`, an absolute path or a link).

    Raises:
        ConfigError: naming `key` when `value` resolves outside `<cwd>/outputs`.
    """
    from modelops.errors import ConfigError

    outputs = (root or Path.cwd()).resolve() / "outputs"
    target = (outputs.parent / value).resolve()
    if target != outputs and outputs not in target.parents:
        raise ConfigError(f"{key}: {value!r} is outside {outputs}; run directories stay under outputs/")
    return target


def check_outputs_writable(root: Path | None = None) -> None:
    """Fail with a clear error, before Hydra creates the run directory, when outputs/ cannot be written."""
    import tempfile

    from modelops.errors import ConfigError

    outputs = (root or Path.cwd()) / "outputs"
    try:
        outputs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=outputs):
            pass
    except OSError as exc:
        raise ConfigError(f"{outputs}: run directories cannot be written there ({exc.strerror})") from exc
