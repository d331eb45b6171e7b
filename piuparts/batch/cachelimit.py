"""The disk during a batch run: ``cache-max-size`` and ``min-free-space``.

``min-free-space``: before each test the coordinator looks at the space
left on the file systems of the cache, the logs and the database
(:func:`short_of_space`); below it, the run takes no new test, lets the
running ones finish and be recorded, and ends with one line saying which
file system is full (the exit code of a test-bed failure, 3).  Nothing
finished is lost, and no package is blamed for a full disk.

``cache-max-size``: the cache kept under a size while a batch run tests.

Every so often (:data:`PRUNE_EVERY`) the coordinator starts a prune of
the cache in a thread of its own, as ``piuparts cleanup --prune
--max-size`` does it: the least recently used dependency layers, .debs and
dist-upgrade references go first, never what a test holds nor what was
used in the last minutes (:mod:`piuparts.prune`).  The tests go on
meanwhile; the run waits for a prune under way before it ends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from piuparts import prune

log = logging.getLogger("piuparts")

#: The cache is pruned at most this often (seconds) during a run.
PRUNE_EVERY = 300.0


def short_of_space(paths: Sequence[Path], minimum: int) -> str | None:
    """Which of the file systems under ``paths`` has less than ``minimum``
    bytes free for us (one line), or None."""
    for path in paths:
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            info = os.statvfs(probe)
        except OSError:
            continue
        free = info.f_bavail * info.f_frsize
        if free < minimum:
            return (f"the disk of {path} has {free >> 20} MB free, less than min-free-space ({minimum >> 20} MB): "
                    "no new tests; free some space (piuparts cleanup --prune, cache-max-size) and run again")
    return None


class CacheLimit:
    """Prunes ``cache_dir`` to ``limit`` bytes (nothing when None); ``say`` tells how much went.
    Watches that ``watched`` (the cache, the logs, the database) keep ``minimum`` bytes free."""

    def __init__(self, cache_dir: Path, limit: int | None, say: Callable[[str], None],
                 watched: Sequence[Path] = (), minimum: int = 0) -> None:
        self.cache_dir, self.limit, self.say = cache_dir, limit, say
        self.watched, self.minimum = tuple(watched), minimum
        self._thread: threading.Thread | None = None
        self._last = -PRUNE_EVERY

    def tick(self) -> None:
        """Start a prune when one is due and none runs."""
        if self.limit is None or (self._thread is not None and self._thread.is_alive()):
            return
        if time.monotonic() - self._last < PRUNE_EVERY:
            return
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._prune, args=(self.limit,), name="prune", daemon=True)
        self._thread.start()

    def _prune(self, limit: int) -> None:
        try:
            removed = prune.prune(self.cache_dir, max_size=limit, level=logging.DEBUG)
        except OSError as err:
            log.warning("Could not prune the cache %s: %s", self.cache_dir, err)
            return
        if removed:
            self.say(f"Pruned {len(removed)} items of the cache {self.cache_dir} (cache-max-size {limit >> 20} MB)")

    def short_of_space(self) -> str | None:
        """Why no new test may start (a watched disk too full), or None."""
        return short_of_space(self.watched, self.minimum) if self.minimum else None

    def close(self) -> None:
        """Wait for a prune under way."""
        if self._thread is not None:
            self._thread.join()
