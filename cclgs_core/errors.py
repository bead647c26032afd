"""Errors a user can cause. The CLI prints their message alone and exits with code 2."""


class CclgsError(Exception):
    """A problem the user can fix; the message names the file or plugin and the fix."""


class ConfigError(CclgsError):
    """A run config names something that does not exist or gives a value of the wrong type."""


class PluginError(CclgsError):
    """A plugin is missing, broken, ambiguous, or returned something its interface forbids."""


class DataError(CclgsError):
    """An input file (image, transforms.json, .ply, label, checkpoint) is missing or malformed."""
