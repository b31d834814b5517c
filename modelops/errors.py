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
