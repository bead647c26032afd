"""Errors a user can cause. The CLI prints their message alone and exits with code 2."""


class CclgsError(Exception):
    """A problem the user can fix; the message names the file or plugin and the fix."""


class ConfigError(CclgsError):
    """A run config names something that does not exist or gives a value of the wrong type."""


class PluginError(CclgsError):
    """A plugin is missing, broken, ambiguous, or returned something its interface forbids."""


class DataError(CclgsError):
    """An input file (image, transforms.json, .ply, label, checkpoint) is missing or malformed."""


def error_summary(error: BaseException) -> str:
    """``TypeName: first line of the message`` (or ``no detail``), for messages that report a
    failure of a library (torch.load, an image decoder) in one line."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text.strip() else 'no detail'}"


class LaunchError(CclgsError):
    """Processes launched together (torchrun) cannot work as one: a rank cannot reach the others,
    they do not share the run directory, or they were started on different runs.

    every_rank: True when every rank raises the same error (one of them, rank 0, reports it)."""

    def __init__(self, message: str, every_rank: bool = False):
        super().__init__(message)
        self.every_rank = every_rank
