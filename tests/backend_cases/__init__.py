"""One module a backend: how the contract suite runs the command on it.

Each module defines ``case(cache_dir, tmp_path_factory) -> BackendCase``
(doing its one-time setup there, cached between sessions where it is slow)
and ``available() -> str | None`` (None where the backend can run on this
machine, else the reason).  The contract suite
(tests/integration/test_backend_contract.py) runs the same tests through
every available case.
"""

from __future__ import annotations

import fcntl
import functools
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass
class BackendCase:
    """How to run the command on one backend, and what of it may leak."""

    name: str
    #: Command-line options that select the backend (``["-b", TARBALL]``).
    args: list[str]
    #: What the backend may leave that the cache directory does not show
    #: (schroot sessions, LVM snapshots); empty when nothing is left.
    leaks: Callable[[], list[str]] = field(default=lambda: [])
    #: Checks the backend's source (a schroot's chroot, an existing tree) is unchanged.
    source_unchanged: Callable[[], None] = field(default=lambda: None)


def modules() -> list[ModuleType]:
    """Every case module, in name order."""
    return [importlib.import_module(f"{__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)]


def made_once(name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A builder of ``CACHE/test-inputs`` that the suite's processes (pytest-xdist
    workers) run one at a time: the second waits, then finds what the first made."""
    def wrap(build: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(build)
        def locked(cache_dir: Path, *args: object) -> T:
            inputs = cache_dir / "test-inputs"
            inputs.mkdir(parents=True, exist_ok=True)
            with open(inputs / f".{name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                return build(cache_dir, *args)
        return locked
    return wrap
