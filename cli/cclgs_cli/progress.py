"""Progress of long stages: rich bars on a terminal, plain timed lines in logs.

Both are ``update(stage, done, total, status="")`` callables, usable as a pipeline ``Progress``
callback (which passes the first three).
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, TextIO

#: Environment variable: seconds between two progress lines of a stage in a log (default 30).
INTERVAL_ENV = "CCLGS_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 30.0

Update = Callable[..., None]


#: The last update any progress display got: (stage, done, total), for a stop's message.
latest: list[tuple[str, int, int]] = []


def where_stopped() -> str:
    """Where the command was, by its last progress update: ``semantic field at 140/400``."""
    if not latest:
        return "before its first stage"
    stage, done, total = latest[-1]
    return f"{stage} at {done}/{total}"


@contextmanager
def progress_bar() -> Iterator[Update]:
    """Yields ``update(stage, done, total, status="")``: one rich bar per stage when stdout is a
    terminal; otherwise ``ProgressLines`` on stderr, every ``CCLGS_PROGRESS_SECONDS``. Either
    way the last update is kept in ``latest``."""
    from rich.console import Console

    if not Console().is_terminal:
        yield _remembered(ProgressLines(sys.stderr, log_interval()))
        return
    with _rich_bars() as update:
        yield _remembered(update)


def _remembered(update: Update) -> Update:
    def remembering(stage: str, done: int, total: int, status: str = "") -> None:
        latest[:] = [(stage, done, total)]
        update(stage, done, total, status)

    return remembering


def log_interval() -> float:
    """Seconds between progress lines, from ``CCLGS_PROGRESS_SECONDS``."""
    from cclgs_core.errors import ConfigError

    value = os.environ.get(INTERVAL_ENV, "")
    if not value:
        return DEFAULT_INTERVAL_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError(f"{INTERVAL_ENV}={value!r}: give the seconds between progress lines, e.g. 30")
    return seconds


@dataclass
class _StageClock:
    started: float
    done_at_start: int
    last_line: float = -math.inf
    finished: bool = False


class ProgressLines:
    """Progress for logs that are not a terminal: per stage, a line at its first update, then at
    most one every ``interval_s`` seconds, and one when it finishes, such as
    ``semantic field: 420/1500 (28%), 3.1/s, elapsed 2:15, ETA 5:48``.

    The rate counts from the stage's first update, so a resumed stage reports its own speed. An
    update below the total after a stage finished starts it anew (the same stage of another run).
    """

    def __init__(self, stream: TextIO, interval_s: float, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.interval_s = interval_s
        self.clock = clock
        self._stages: dict[str, _StageClock] = {}

    def __call__(self, stage: str, done: int, total: int, status: str = "") -> None:
        now = self.clock()
        finishing = done >= total
        clock = self._stages.get(stage)
        if clock is None or (clock.finished and not finishing):  # a stage's first update, or a new run of it
            clock = self._stages[stage] = _StageClock(started=now, done_at_start=done)
        if clock.finished or (not finishing and now - clock.last_line < self.interval_s):
            return
        clock.last_line, clock.finished = now, finishing
        elapsed = now - clock.started
        parts = [f"{stage}: {done}/{total} ({done / max(total, 1):.0%})"]
        rate = (done - clock.done_at_start) / elapsed if elapsed > 0 and total > 1 else 0.0
        if rate > 0:
            parts.append(_rate(rate))
        parts.append(f"elapsed {_duration(elapsed)}")
        if rate > 0 and not finishing:
            parts.append(f"ETA {_duration((total - done) / rate)}")
        if status:
            parts.append(status)
        print(", ".join(parts), file=self.stream, flush=True)


def _rate(per_second: float) -> str:
    """12,345/s, 3.1/s or 2.5 s each."""
    if per_second >= 100:
        return f"{per_second:,.0f}/s"
    return f"{per_second:.2g}/s" if per_second >= 1 else f"{1 / per_second:.2g} s each"


def _duration(seconds: float) -> str:
    """H:MM:SS, or M:SS under an hour."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@contextmanager
def _rich_bars() -> Iterator[Update]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int, status: str = "") -> None:
            if stage not in tasks or (progress.tasks[tasks[stage]].finished and done < total):
                tasks[stage] = progress.add_task(stage, total=total, status=status)  # a new bar for a new run
            progress.update(tasks[stage], completed=done, total=total, status=status)

        yield update
