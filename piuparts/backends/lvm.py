"""Instances as LVM snapshots of a volume that holds a base (``--lvm-volume VG/LV``).

As in piuparts: the origin volume holds a Debian tree (``piuparts lvm-setup``
fills one from the debootstrap base); each instance is a snapshot of it,
mounted under an owned instance directory and brought to life there.  The
snapshot lives outside that directory, so its removal is written down as an
undo record *before* it is made: a run killed at any point leaves a record
that ``piuparts cleanup`` (or the next run) carries out.  Snapshots have no
upper directory: the checks walk the tree.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from piuparts import aptsources, command, resources
from piuparts.backends.base import Backend, BaseSpec, Capabilities, Option
from piuparts.backends.overlay import booted, owned_instance_dir
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from piuparts.config import RunConfig

log = logging.getLogger("piuparts")

#: LVM's own sizes: a number and an optional unit (``1G``, ``512m``, ``1.5g``).
SIZE = re.compile(r"[0-9]+(\.[0-9]+)?[bBsSkKmMgGtTpPeE]?")
#: LVM's volume group and logical volume names.
NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*")


def split_volume(volume: str, flag: str = "--lvm-volume") -> tuple[str, str]:
    """``VG/LV`` (or piuparts' ``/dev/VG/LV``) as (VG, LV); a one-line UsageError otherwise."""
    vg, _, lv = volume.removeprefix("/dev/").partition("/")
    if not (NAME.fullmatch(vg) and NAME.fullmatch(lv)):
        raise UsageError(f"{flag} {volume!r}: name a logical volume as VG/LV (volume group/volume)")
    return vg, lv


def check_size(size: str, flag: str) -> str:
    if not SIZE.fullmatch(size):
        raise UsageError(f"{flag} {size!r}: a size as LVM takes it, such as 1G or 512M")
    return size


def _run(*argv: str, what: str) -> command.Result:
    return command.run(argv, timeout=300, error=TestbedError, what=what, level=logging.DEBUG)


def _ask(*argv: str) -> subprocess.CompletedProcess[str]:
    """A query (``lvs``, ``vgs``) whose failure is an answer, not worth a warning."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=False)


def _exists(volume: str) -> bool:
    return _ask("lvs", volume).returncode == 0


def snapshots_of(vg: str, lv: str) -> list[str]:
    """Names of the snapshots of ``vg/lv`` that exist."""
    pairs = [line.split() for line in _ask("lvs", "--noheadings", "-o", "lv_name,origin", vg).stdout.splitlines()]
    return [words[0] for words in pairs if len(words) == 2 and words[1] == lv]


def device_mapper() -> bool:
    """True when the kernel has device-mapper (opening its control node loads dm-mod if need be)."""
    try:
        if "device-mapper" in Path("/proc/misc").read_text():
            return True
        os.close(os.open("/dev/mapper/control", os.O_RDWR))
    except PermissionError:
        return True  # not root: cannot tell, and the run will say it needs root
    except OSError:
        return False
    return True


class LvmBackend(Backend, name="lvm"):
    """Snapshots of an LVM volume that holds a base, mounted and booted."""

    capabilities = Capabilities(host_root=True, upper_dir=False)
    options = (
        Option(("--lvm-volume",), "lvm_volume", "snapshots of this LVM volume that holds a base "
               "(see 'piuparts lvm-setup')", metavar="VG/LV"),
        Option(("--lvm-snapshot-size",), "lvm_snapshot_size", "size of the LVM snapshots", metavar="SIZE",
               selects=False, default="1G"),
    )

    def __init__(self, spec: BaseSpec, cache_dir: Path, volume: str = "", snapshot_size: str = "1G") -> None:
        super().__init__(spec, cache_dir)
        self.vg, self.lv = split_volume(volume)
        self.snapshot_size = check_size(snapshot_size, "--lvm-snapshot-size")

    @property
    def volume(self) -> str:
        return f"{self.vg}/{self.lv}"

    @classmethod
    def from_options(cls, spec: BaseSpec, options: "RunConfig") -> "LvmBackend":
        return cls(spec, options.cache_dir, volume=cls.setting(options, "lvm_volume") or "",
                   snapshot_size=cls.setting(options, "lvm_snapshot_size")).isolated(options)

    @classmethod
    def unavailable(cls) -> str | None:
        if shutil.which("lvcreate") is None:
            return "lvm2 is not installed (apt-get install lvm2)"
        if not device_mapper():
            return "the kernel has no device-mapper (try modprobe dm-mod)"
        return None

    def _do_prepare(self) -> None:
        if not _exists(self.volume):
            raise UsageError(f"--lvm-volume {self.volume}: no such logical volume; make one that holds "
                             f"a base with 'piuparts lvm-setup {self.volume}'")
        resources.reap(self.cache_dir / "instances")

    @contextmanager
    def _do_instance(self, layers: Sequence[Path] = ()) -> Iterator[Chroot]:
        start = time.monotonic()
        with owned_instance_dir(self.cache_dir) as top:
            # The instance directory's name makes the snapshot's: unique, and it
            # says which run (PID) made it.
            name = f"{self.lv}-piuparts-{top.name}"
            snapshot = f"{self.vg}/{name}"
            root = top / "root"
            with resources.signals_deferred():
                resources.record_undo(top, ["lvremove", "-f", snapshot], exists=["lvs", snapshot])
                _run("lvcreate", "-s", "-L", self.snapshot_size, "-n", name, self.volume,
                     what=f"creating the snapshot {snapshot}")
                root.mkdir()
                _run("mount", f"/dev/{snapshot}", str(root), what=f"mounting the snapshot {snapshot}")
            with booted(root, no_network=self.no_network) as chroot:
                log.info("Instance %s (snapshot %s) started in %.3f s", root, snapshot, time.monotonic() - start)
                yield chroot


def host_spec(distribution: str | None = None, mirror: str | None = None) -> BaseSpec:
    """The base a run with these settings uses; the host's distribution and mirror by default."""
    if distribution is None or mirror is None:
        host_dist, host_mirror = aptsources.default_distribution_and_mirror(
            aptsources.read_host_sources(), aptsources.host_codename())
        distribution, mirror = distribution or host_dist, mirror or host_mirror
    return BaseSpec(distribution, mirror.rstrip("/"), aptsources.host_architecture())


def setup_parser() -> argparse.ArgumentParser:
    """The parser of ``piuparts lvm-setup``."""
    p = argparse.ArgumentParser(
        prog="piuparts lvm-setup",
        description="Fill an LVM volume with a base for --lvm-volume: create it if it is missing, make an "
                    "ext4 file system on it and copy the debootstrap base (built if needed) into it.")
    p.add_argument("volume", metavar="VG/LV", help="the volume (the volume group must exist)")
    p.add_argument("-d", "--distribution", help="distribution codename (default: the host's)")
    p.add_argument("--mirror", metavar="URL", help="Debian mirror (default: the one the host's apt sources name)")
    p.add_argument("--size", default="4G", help="size of the volume when it is created (default: %(default)s)")
    p.add_argument("--cache-dir", default=str(aptsources.DEFAULT_CACHE_DIR),
                   help="where the debootstrap base is cached")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def lvm_setup(argv: list[str]) -> int:
    """``piuparts lvm-setup``: make ``VG/LV`` hold a copy of the debootstrap base."""
    from piuparts import log as logsetup
    from piuparts.backends.debootstrap import DebootstrapBackend
    args = setup_parser().parse_args(argv)
    logsetup.setup(args.verbose)
    vg, lv = split_volume(args.volume, "lvm-setup")
    size = check_size(args.size, "--size")
    if args.mirror is not None and not re.match(r"^(https?|ftp|file)://", args.mirror):
        raise UsageError(f"--mirror {args.mirror!r}: a mirror is a URL such as http://HOST/debian")
    if os.geteuid() != 0:
        raise UsageError("lvm-setup must run as root (it creates, formats and mounts a volume)")
    if LvmBackend.unavailable() is not None:
        raise UsageError(f"lvm-setup cannot run here: {LvmBackend.unavailable()}")
    if _ask("vgs", vg).returncode != 0:
        raise UsageError(f"lvm-setup: no volume group {vg}; make one with 'vgcreate {vg} DEVICE'")
    busy = snapshots_of(vg, lv)
    if busy:
        raise UsageError(f"lvm-setup: {vg}/{lv} has snapshots ({', '.join(busy)}); wait for the runs "
                         "using it to end, or run 'piuparts cleanup'")
    cache_dir = Path(args.cache_dir).absolute()
    base = DebootstrapBackend(host_spec(args.distribution, args.mirror), cache_dir)
    try:
        base.prepare()
        if not _exists(f"{vg}/{lv}"):
            _run("lvcreate", "--yes", "-L", size, "-n", lv, vg, what=f"creating {vg}/{lv}")
        device = f"/dev/{vg}/{lv}"
        _run("mkfs.ext4", "-F", "-q", device, what=f"making a file system on {device}")
        top = resources.make_owned_dir(cache_dir / "instances")
        try:
            target = top / "root"
            target.mkdir()
            _run("mount", device, str(target), what=f"mounting {device}")
            command.run(["cp", "-a", f"{base.root}/.", f"{target}/"], timeout=3600, error=TestbedError,
                        what=f"copying the base into {device}", level=logging.DEBUG)
        finally:
            with resources.signals_deferred():
                resources.remove_tree(top)
    finally:
        base.close()
    log.info("%s/%s holds the %s base; test with --lvm-volume %s/%s", vg, lv, base.spec.distribution, vg, lv)
    return 0


Backend.subcommands["lvm-setup"] = lvm_setup
