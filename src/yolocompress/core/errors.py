"""The exceptions users see: each carries one line that says what is wrong, where, and what to do."""


class YoloCompressError(Exception):
    """Base of every error the CLI reports as one line (exit code 2) instead of a traceback."""


class ConfigError(YoloCompressError):
    """A model yaml, hyperparameter file or option is invalid."""


class DataError(YoloCompressError):
    """A dataset yaml, image folder or label file cannot be used."""


class CheckpointError(YoloCompressError):
    """A weights file is unreadable, foreign, unsafe or does not fit the task."""


class TrainingError(YoloCompressError):
    """Training cannot continue (e.g. a loss became NaN/inf)."""


class PruningError(YoloCompressError):
    """Pruning cannot reach a usable model."""
