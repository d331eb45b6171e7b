"""``cache-max-size``: the cache kept under a size while a batch run tests.

Every so often (:data:`PRUNE_EVERY`) the coordinator starts a prune of
the cache in a thread of its own, as ``piuparts cleanup --prune
--max-size`` does it: the least recently used dependency layers, .debs and
dist-upgrade references go first, never what a test holds nor what was
used in the last minutes (:mod:`piuparts.prune`).  The tests go on
meanwhile; the run waits for a prune under way before it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from piuparts import prune

log = logging.getLogger("piuparts")

#: The cache is pruned at most this often (seconds) during a run.
PRUNE_EVERY = 300.0


class CacheLimit:
    """Prunes ``cache_dir`` to ``limit`` bytes (nothing when None); ``say`` tells how much went."""

    def __init__(self, cache_dir: Path, limit: int | None, say: Callable[[str], None]) -> None:
        self.cache_dir, self.limit, self.say = cache_dir, limit, say
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

    def close(self) -> None:
        """Wait for a prune under way."""
        if self._thread is not None:
            self._thread.join()
