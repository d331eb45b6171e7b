"""Bases built by debootstrap, cached by key; instances are overlays.

The base is a ``--variant=minbase`` system with eatmydata, apt lists
fetched, services forbidden by policy-rc.d, and apt and dpkg set up for
unattended use.  It is built under a temporary name and renamed into
place, under an exclusive lock, so two runs never build the same base at
once; a run that uses a base holds a shared lock on it, so it is never
rebuilt under a running test.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ContextManager

from piuparts import command, resources
from piuparts.backends.base import Backend, BaseSpec, Capabilities
from piuparts.backends.overlay import api_mounted, overlay_instance
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from piuparts.options import Options

log = logging.getLogger("piuparts")

SCRIPTS = Path("/usr/share/debootstrap/scripts")

POLICY_RC_D = "#!/bin/sh\n# piuparts: no service may start in a test chroot\nexit 101\n"
APT_CONF = """\
// piuparts: unattended, no recommends, no translations
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Get::Assume-Yes "true";
Acquire::Languages "none";
Acquire::Retries "3";
Dpkg::Use-Pty "false";
"""
DPKG_CFG = "# piuparts: the chroot is thrown away, no need to fsync\nforce-unsafe-io\n"


def configure_base(root: Path) -> None:
    """Write policy-rc.d and the apt and dpkg settings every instance inherits."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    (root / "etc/apt/apt.conf.d/99piuparts").write_text(APT_CONF)
    (root / "etc/dpkg/dpkg.cfg.d/piuparts").write_text(DPKG_CFG)


class DebootstrapBackend(Backend, name="debootstrap"):
    """A debootstrap minbase per :class:`BaseSpec`, shared by overlay instances."""

    capabilities = Capabilities(host_root=True, upper_dir=True)

    def __init__(self, spec: BaseSpec, cache_dir: Path, max_age: float = 7 * 86400,
                 lists_max_age: float = 86400, tmpfs_size: str | None = "50%") -> None:
        super().__init__(spec, cache_dir)
        self.max_age = max_age
        self.lists_max_age = lists_max_age
        self.tmpfs_size = tmpfs_size
        self.base_dir = cache_dir / "bases" / spec.key()
        self._lock: IO[str] | None = None

    @classmethod
    def from_options(cls, spec: BaseSpec, options: "Options") -> "DebootstrapBackend":
        return cls(spec, options.cache_dir, max_age=options.base_max_age,
                   lists_max_age=options.lists_max_age, tmpfs_size=options.tmpfs_size)

    @classmethod
    def unavailable(cls) -> str | None:
        if not SCRIPTS.is_dir():
            return "debootstrap is not installed (apt-get install debootstrap)"
        return None

    @property
    def root(self) -> Path:
        """The base's root directory (the overlays' lower layer)."""
        return self.base_dir / "root"

    def _do_prepare(self) -> None:
        if not (SCRIPTS / self.spec.distribution).exists():
            raise UsageError(
                f"unknown distribution {self.spec.distribution!r}: debootstrap has no script for it "
                f"in {SCRIPTS}; use a Debian codename such as bookworm or trixie")
        self.base_dir.parent.mkdir(parents=True, exist_ok=True)
        resources.reap(self.cache_dir / "instances")
        resources.reap(self.base_dir.parent, ".build-*")
        lock = open(self.base_dir.with_suffix(".lock"), "a+")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not self._fresh():
                self._build()
            # Held shared until close(): nobody rebuilds the base under us.
            fcntl.flock(lock, fcntl.LOCK_SH)
        except BaseException:
            lock.close()
            raise
        self._lock = lock

    def _fresh(self) -> bool:
        try:
            meta = json.loads((self.base_dir / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        age = time.time() - meta["created"]
        if age > self.max_age:
            log.info("Base %s is %.1f days old; rebuilding it", self.base_dir, age / 86400)
            return False
        log.info("Using cached base %s (%.1f hours old)", self.base_dir, age / 3600)
        if time.time() - meta.get("lists_updated", meta["created"]) > self.lists_max_age:
            self._update_lists(meta)
        return True

    def _update_lists(self, meta: dict[str, Any]) -> None:
        """Refresh the base's apt lists in place (we hold the exclusive lock)."""
        with api_mounted(self.root) as chroot:
            chroot.run(["apt-get", "update"], timeout=900, error=TestbedError, what="apt-get update")
        meta["lists_updated"] = time.time()
        (self.base_dir / "meta.json").write_text(json.dumps(meta))

    def _build(self) -> None:
        spec = self.spec
        start = time.monotonic()
        tmp = resources.make_owned_dir(self.base_dir.parent, prefix=".build-")
        try:
            root = tmp / "root"
            include = ",".join(("eatmydata", *spec.extra_packages))
            command.run(
                ["debootstrap", f"--variant={spec.variant}", f"--include={include}",
                 f"--components={','.join(spec.components)}", f"--arch={spec.architecture}",
                 spec.distribution, str(root), spec.mirror],
                timeout=3600, error=TestbedError,
                what=f"debootstrap of {spec.distribution} from {spec.mirror}")
            configure_base(root)
            with api_mounted(root) as chroot:
                chroot.run(["apt-get", "update"], timeout=900, error=TestbedError, what="apt-get update")
                chroot.run(["apt-get", "clean"], level=logging.DEBUG)
            (tmp / "meta.json").write_text(json.dumps({"created": time.time(), "spec": spec.__dict__}))
            (tmp / "owner").unlink()
            if self.base_dir.exists():
                resources.remove_tree(self.base_dir)
            os.rename(tmp, self.base_dir)
        except BaseException:
            with resources.signals_deferred():
                resources.remove_tree(tmp)
            raise
        log.info("Built base %s in %.1f s", self.base_dir, time.monotonic() - start)

    def _do_instance(self) -> ContextManager[Chroot]:
        return overlay_instance(self.root, self.cache_dir, self.tmpfs_size)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def describe(self) -> dict[str, Any]:
        """What the report says about the base."""
        return {"backend": self.name, "base": str(self.base_dir), **self.spec.__dict__}
