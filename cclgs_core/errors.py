"""Errors a user can cause. The CLI prints their message alone and exits with code 2."""

from __future__ import annotations

import errno
import os
from pathlib import Path


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


#: Ends the stop note of a command that cannot resume (``KeyboardInterrupt.add_note``): the stop
#: message then does not offer to resume.
STARTS_OVER = "starts over when run again"


class StorageError(CclgsError):
    """The operating system refused to read or write a file (a full disk, no permission, ...)."""


_AGAIN = "and run the same command again: what was finished is kept"
_FREE_SPACE = f"free some space there (or choose another run directory) {_AGAIN}"
_GIVE_ACCESS = f"give this user access to it (or choose another run directory) {_AGAIN}"
#: errno -> (the reason in words, the fix)
_STORAGE_REASONS = {
    errno.ENOSPC: ("no space left on the device", _FREE_SPACE),
    errno.EDQUOT: ("the disk quota is used up", _FREE_SPACE),
    errno.EACCES: ("permission denied", _GIVE_ACCESS),
    errno.EPERM: ("operation not permitted", _GIVE_ACCESS),
    errno.EROFS: ("the filesystem is read-only", f"choose a run directory on a writable filesystem {_AGAIN}"),
    errno.ENOTDIR: ("a file stands where a folder should be", f"move that file away (or choose another path) {_AGAIN}"),
    errno.EEXIST: ("it exists and is not a folder", f"move it away (or choose another path) {_AGAIN}"),
    errno.EISDIR: ("a folder stands where a file should be", f"move that folder away {_AGAIN}"),
    errno.ENOENT: ("it does not exist (was it removed while the command ran?)", f"restore it {_AGAIN}"),
}


def storage_error(error: OSError, path: str | os.PathLike | None = None) -> StorageError:
    """One line for a failed file operation: the path, the reason in words and the fix.

    path: the file meant, when ``error`` does not name one (a write that found the disk full)."""
    path = path if path is not None else error.filename
    reason, fix = _STORAGE_REASONS.get(error.errno, (error.strerror or str(error), f"fix that {_AGAIN}"))
    if error.errno == errno.ENOTDIR and path is not None:
        path = _file_in_the_way(Path(path))
    where = f"{path}: " if path is not None else ""
    return StorageError(f"{where}{reason}. {fix[0].upper()}{fix[1:]}")


def _file_in_the_way(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists and is not a folder (``path`` if none)."""
    for candidate in (path, *path.parents):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return path
