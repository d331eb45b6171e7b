"""Bases built by debootstrap, cached by key; instances are overlays.

The base is a ``--variant=minbase`` system with eatmydata, apt lists
fetched, services forbidden by policy-rc.d, and apt and dpkg set up for
unattended use.  It is rebuilt when older than ``max_age``.  Locking,
finishing and the apt lists' refresh are shared with the tarball backend
(:mod:`piuparts.backends.common`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from piuparts import command
from piuparts.backends.base import BaseSpec

# APT_CONF, DPKG_CFG, POLICY_RC_D and configure_base lived here first: still importable from here.
from piuparts.backends.common import (  # noqa: F401
    APT_CONF,
    DPKG_CFG,
    POLICY_RC_D,
    CachedBaseBackend,
    configure_base,
)
from piuparts.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from piuparts.config import RunConfig

log = logging.getLogger("piuparts")

SCRIPTS = Path("/usr/share/debootstrap/scripts")


class DebootstrapBackend(CachedBaseBackend, name="debootstrap"):
    """A debootstrap minbase per :class:`BaseSpec`, shared by overlay instances."""

    def __init__(self, spec: BaseSpec, cache_dir: Path, max_age: float = 7 * 86400,
                 lists_max_age: float = 86400, tmpfs_size: str | None = "50%") -> None:
        super().__init__(spec, cache_dir, spec.key(), lists_max_age, tmpfs_size)
        self.max_age = max_age

    @classmethod
    def from_options(cls, spec: BaseSpec, options: "RunConfig") -> "DebootstrapBackend":
        return cls(spec, options.cache_dir, max_age=options.base_max_age,
                   lists_max_age=options.lists_max_age, tmpfs_size=options.tmpfs_size).isolated(options)

    @classmethod
    def unavailable(cls) -> str | None:
        if not SCRIPTS.is_dir():
            return "debootstrap is not installed (apt-get install debootstrap)"
        return None

    def _check(self) -> None:
        if not (SCRIPTS / self.spec.distribution).exists():
            raise UsageError(
                f"unknown distribution {self.spec.distribution!r}: debootstrap has no script for it "
                f"in {SCRIPTS}; use a Debian codename such as bookworm or trixie")

    def _stale(self, meta: dict[str, Any]) -> str | None:
        age = time.time() - meta["created"]
        return f"the base is {age / 86400:.1f} days old" if age > self.max_age else None

    def _make_root(self, root: Path) -> dict[str, Any]:
        spec = self.spec
        include = ",".join(("eatmydata", *spec.extra_packages))
        command.run(
            ["debootstrap", f"--variant={spec.variant}", f"--include={include}",
             f"--components={','.join(spec.components)}", f"--arch={spec.architecture}",
             spec.distribution, str(root), spec.mirror],
            timeout=3600, error=TestbedError,
            what=f"debootstrap of {spec.distribution} from {spec.mirror}")
        return {"spec": spec.__dict__}
