"""Pure work spread over forked processes (the data they read is shared copy-on-write)."""

from __future__ import annotations

import multiprocessing
import signal
from typing import Any, Callable

#: The function the forked processes call (set just before the fork).
_WORK: Callable[[int], Any] | None = None


def _call(index: int) -> Any:
    assert _WORK is not None
    return _WORK(index)


def quiet_worker() -> None:
    """A pool process's initializer: the default SIGINT and SIGTERM, not the
    command's handlers inherited by the fork, so that the pool's terminate at
    its end (SIGTERM) ends an idle worker without a traceback of ours."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def fork_map(function: Callable[[int], Any], count: int, processes: int) -> list[Any]:
    """``[function(i) for i in range(count)]``, in ``processes`` forked processes when there are two
    or more of both; ``function`` and its results cross by fork and pickle, its arguments are indices."""
    global _WORK
    if processes < 2 or count < 2:
        return [function(i) for i in range(count)]
    _WORK = function
    try:
        with multiprocessing.get_context("fork").Pool(min(processes, count), initializer=quiet_worker) as pool:
            return pool.map(_call, range(count))
    finally:
        _WORK = None


__all__ = ["fork_map", "quiet_worker"]
