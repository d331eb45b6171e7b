"""One module a backend: how the contract suite runs the command on it.

Each module defines ``case(cache_dir, tmp_path_factory) -> BackendCase``
(doing its one-time setup there, cached between sessions where it is slow)
and ``available() -> str | None`` (None where the backend can run on this
machine, else the reason).  The contract suite
(tests/integration/test_backend_contract.py) runs the same tests through
every available case.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable


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
