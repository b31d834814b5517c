"""Typed errors: every bad input surfaces as one of these, with a message that names its place."""


class ModelopsError(Exception):
    """Base class of every error modelops raises on purpose (exit code 2 from the CLI)."""


class ConfigError(ModelopsError):
    """A config key, type or value that cannot work; the message names the key's full path."""


class DataError(ModelopsError):
    """Data that cannot be read or does not fit its format; the message names file and line/row and field."""


class ModelError(ModelopsError):
    """A model reference that cannot be resolved or loaded; the message says what was tried."""


class JobError(ModelopsError):
    """A FineTuningJob used in a way its state does not allow, or a training run that failed."""


class EvaluationError(ModelopsError):
    """An evaluation request that cannot be answered (unknown metric, wrong model kind, empty data)."""


def did_you_mean(word: object, options) -> str:
    """`` (did you mean 'x'?)`` for the option closest to `word`, or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def debugging() -> bool:
    """Whether ``MODELOPS_DEBUG`` asks for full tracebacks (any value but empty, ``0`` or ``false``)."""
    import os

    return os.environ.get("MODELOPS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def report(exc: BaseException) -> str:
    """What the CLI prints for an error: one line, or with ``MODELOPS_DEBUG`` the traceback and its causes."""
    import traceback

    if debugging():
        return "".join(traceback.format_exception(exc)).rstrip()
    # An OSError here is the machine's (a full disk, a path that cannot be written): name the file.
    if isinstance(exc, OSError) and exc.strerror:
        return f"error: {exc.filename}: {exc.strerror}" if exc.filename else f"error: {exc.strerror}"
    return f"error: {exc}"
