"""Bases built by mmdebstrap or debootstrap, cached by key; instances are overlays.

The base is a ``--variant=minbase`` system (Essential, Priority: required
and apt: the same package set with either tool) with eatmydata, apt lists
fetched, merged /usr where the release has it, services forbidden by
policy-rc.d, and apt and dpkg set up for unattended use.  It is rebuilt
when older than ``max_age``.  Locking, finishing and the apt lists' refresh
are shared with the tarball backend (:mod:`piuparts.backends.common`).

mmdebstrap makes it when installed: it resolves and unpacks with apt in one
go, in less than half debootstrap's time here (bench/bases.py: 10.7 s against 24.6 s).
debootstrap stays the fallback where mmdebstrap is missing, and makes the
releases older than stretch (mmdebstrap needs hooks of its own for those).
The tool is part of the base's name: a base is never reused for the other.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from piuparts import command, inroot
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
from piuparts.log import HEADLINE

if TYPE_CHECKING:
    from piuparts.config import RunConfig

log = logging.getLogger("piuparts")

SCRIPTS = Path("/usr/share/debootstrap/scripts")
#: mmdebstrap's hooks; maybe-merged-usr merges /usr as debootstrap does,
#: where the release has usr-is-merged.
MMDEBSTRAP_HOOKS = Path("/usr/share/mmdebstrap/hooks")
#: Releases mmdebstrap does not make without hooks of their own: debootstrap makes them.
DEBOOTSTRAP_ONLY = frozenset({"jessie", "wheezy", "squeeze", "lenny", "etch", "sarge", "woody", "potato"})
TOOLS = ("mmdebstrap", "debootstrap")


def choose_tool(distribution: str) -> str:
    """The tool that makes a base of ``distribution`` here (see the module's docstring)."""
    if distribution not in DEBOOTSTRAP_ONLY and shutil.which("mmdebstrap") and MMDEBSTRAP_HOOKS.is_dir():
        return "mmdebstrap"
    return "debootstrap"


class DebootstrapBackend(CachedBaseBackend, name="debootstrap"):
    """A minbase per :class:`BaseSpec` and tool, shared by overlay instances."""

    def __init__(self, spec: BaseSpec, cache_dir: Path, max_age: float = 7 * 86400,
                 lists_max_age: float = 86400, tmpfs_size: str | None = "50%", tool: str | None = None) -> None:
        self.tool = tool or choose_tool(spec.distribution)
        if self.tool not in TOOLS:
            raise UsageError(f"unknown base tool {self.tool!r}; known: {', '.join(TOOLS)}")
        # debootstrap's bases keep the name they always had; mmdebstrap's are told apart
        name = spec.key() if self.tool == "debootstrap" else f"{spec.key()}-mm"
        super().__init__(spec, cache_dir, name, lists_max_age, tmpfs_size)
        self.max_age = max_age

    @classmethod
    def from_options(cls, spec: BaseSpec, options: "RunConfig") -> "DebootstrapBackend":
        return cls(spec, options.cache_dir, max_age=options.base_max_age,
                   lists_max_age=options.lists_max_age, tmpfs_size=options.tmpfs_size).isolated(options)

    @classmethod
    def unavailable(cls) -> str | None:
        if not SCRIPTS.is_dir():  # its scripts name the distributions, for either tool
            return "debootstrap is not installed (apt-get install debootstrap mmdebstrap)"
        return None

    def _check(self) -> None:
        if not (SCRIPTS / self.spec.distribution).exists():
            raise UsageError(
                f"unknown distribution {self.spec.distribution!r}: debootstrap has no script for it "
                f"in {SCRIPTS}; use a Debian codename such as bookworm or trixie")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tool": self.tool}

    def _stale(self, meta: dict[str, Any]) -> str | None:
        age = time.time() - meta["created"]
        return f"the base is {age / 86400:.1f} days old" if age > self.max_age else None

    def _make_root(self, root: Path) -> dict[str, Any]:
        spec = self.spec
        include = ",".join(("eatmydata", *spec.extra_packages))
        components = ",".join(spec.components)
        if self.tool == "mmdebstrap":
            argv = ["mmdebstrap", f"--variant={spec.variant}", f"--include={include}",
                    f"--components={components}", f"--architectures={spec.architecture}",
                    f"--hook-dir={MMDEBSTRAP_HOOKS / 'maybe-merged-usr'}",
                    f"--hook-dir={MMDEBSTRAP_HOOKS / 'eatmydata'}",  # dpkg without fsync while it builds
                    "--skip=cleanup/apt/lists",  # finish_base's apt-get update then only checks them
                    # apt's retries without their 1+2+4 s back-off: an unreachable mirror is said at
                    # once, as debootstrap says it (a worker hands the test on before its peers' turn)
                    "--aptopt=Acquire::Retries::Delay \"false\"",
                    spec.distribution, str(root), spec.mirror]
        else:
            argv = ["debootstrap", f"--variant={spec.variant}", f"--include={include}",
                    f"--components={components}", f"--arch={spec.architecture}",
                    spec.distribution, str(root), spec.mirror]
        log.info("Making the %s base with %s, once (about %s)", spec.distribution, self.tool,
                 "10 s" if self.tool == "mmdebstrap" else "25 s", extra=HEADLINE)
        command.run(argv, timeout=3600, error=TestbedError,
                    what=f"{self.tool} of {spec.distribution} from {spec.mirror}")
        if self.tool == "mmdebstrap":
            # mmdebstrap marks the base's libraries automatically installed; debootstrap
            # marks none, and an autoremove in a test must find the same base with either
            inroot.unlink(root, "/var/lib/apt/extended_states")
            inroot.unlink(root, "/etc/apt/apt.conf.d/99mmdebstrap")  # the --aptopt above: the build's alone
        return {"spec": spec.__dict__, "tool": self.tool}
