"""The text log: elapsed time at the start of every line, like piuparts.

    0m3.2s INFO: Installing foo_1.0-1_all.deb
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from piuparts.command import SHORT

#: A record attribute for the terminal view (:mod:`piuparts.report.terminal`):
#: ``"headline"`` (shown as it is), ``("scenario", ScenarioResult)``, ``("step",
#: Step)`` (a step starts) or ``("checks", POINT, SECONDS, FAILED)`` (the checks looked,
#: FAILED of their findings fail).
#: The other records go to the log files only, unless -v.
VIEW = "piuparts_view"
HEADLINE = {VIEW: "headline"}


class ElapsedFormatter(logging.Formatter):
    """Prefixes each record with the time since the run started.  ``short``:
    a record's short form where it has one (a command inside an instance
    without its confining wrapper: :data:`piuparts.command.SHORT`), for the
    terminal; log files keep every line whole."""

    def __init__(self, start: float, short: bool = False) -> None:
        super().__init__()
        self.start = start
        self.short = short

    def format(self, record: logging.LogRecord) -> str:
        elapsed = record.created - self.start
        minutes, seconds = divmod(elapsed, 60)
        prefix = f"{int(minutes)}m{seconds:.1f}s {record.levelname}: "
        short = getattr(record, SHORT, None) if self.short else None
        return prefix + (short if short is not None else record.getMessage())


class _ThisThread(logging.Filter):
    """Lets through the records of one thread only."""

    def __init__(self) -> None:
        super().__init__()
        self.ident = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.ident


@contextmanager
def thread_log(path: Path) -> Iterator[None]:
    """While the block runs, write what this thread logs (every level) to ``path``.

    A test's own log: tests running at once in other threads of the same
    process write to their own files; the console is left as it is.
    """
    logger = logging.getLogger("piuparts")
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(ElapsedFormatter(time.time()))
    handler.addFilter(_ThisThread())
    handler.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    # Every record reaches the handlers, which choose by their own levels
    # (the console's is set by setup()); not restored, as other threads'
    # logs may still be open.
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def setup(verbosity: int = 0, stream: TextIO | None = None, logfile: str | None = None,
          view: logging.Handler | None = None) -> logging.Logger:
    """Send the ``piuparts`` logger to ``stream`` (stdout) and ``logfile``.

    ``view``: the console's handler instead of the plain lines to ``stream``
    (the terminal's step view); it gets every record and picks its own, the
    log file keeps its INFO lines."""
    logger = logging.getLogger("piuparts")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    start = time.time()
    level = logging.DEBUG if verbosity > 0 else logging.INFO
    console = view or logging.StreamHandler(stream or sys.stdout)
    console.setFormatter(ElapsedFormatter(start, short=verbosity == 0))  # -v: the whole commands
    console.setLevel(logging.DEBUG if view is not None else level)
    handlers: list[logging.Handler] = [console]
    if logfile:
        handlers.append(logging.FileHandler(logfile, mode="w", encoding="utf-8"))
        handlers[-1].setFormatter(ElapsedFormatter(start))
        handlers[-1].setLevel(level)
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if view is not None else level)
    logger.propagate = False
    return logger
