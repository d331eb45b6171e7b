"""The text log: elapsed time at the start of every line, like piuparts.

    0m3.2s INFO: Installing foo_1.0-1_all.deb
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO


class ElapsedFormatter(logging.Formatter):
    """Prefixes each record with the time since the run started."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.start = start

    def format(self, record: logging.LogRecord) -> str:
        elapsed = record.created - self.start
        minutes, seconds = divmod(elapsed, 60)
        prefix = f"{int(minutes)}m{seconds:.1f}s {record.levelname}: "
        return prefix + record.getMessage()


def setup(verbosity: int = 0, stream: TextIO | None = None, logfile: str | None = None) -> logging.Logger:
    """Send the ``piuparts`` logger to ``stream`` (stdout) and ``logfile``."""
    logger = logging.getLogger("piuparts")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = ElapsedFormatter(time.time())
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
    if logfile:
        handlers.append(logging.FileHandler(logfile, mode="w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    logger.propagate = False
    return logger
