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
