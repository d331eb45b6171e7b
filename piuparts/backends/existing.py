"""An existing Debian tree as the base: ``-e DIR``, which is never changed.

Instances are overlays over DIR (its read-only lower layer).  What the
harness needs and DIR may lack goes into each instance, never into DIR:
policy-rc.d and the apt and dpkg settings (always written, as new files),
a pass-through ``eatmydata`` in /usr/local/bin when DIR has none (outside
dpkg's reach; it only skips the fsync savings, which a tmpfs upper layer
hardly needs), and ``apt-get update`` when DIR's apt lists are missing or
older than ``--lists-max-age`` (each instance pays for it, since DIR keeps
its own lists).  All of this happens before the first snapshot, so no
check sees it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Iterator, Sequence

from piuparts import command, inroot, resources
from piuparts.backends.base import Backend, BaseSpec, Capabilities, Option
from piuparts.backends.common import apt_update, configure_base
from piuparts.backends.overlay import booted, overlay_instance, owned_instance_dir
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from piuparts.config import RunConfig

log = logging.getLogger("piuparts")

EATMYDATA_SHIM = """#!/bin/sh
# piuparts: the tree given with -e has no eatmydata; run the command as it is
exec "$@"
"""


def lists_age(tree: Path) -> float | None:
    """Seconds since the tree's apt lists were fetched (their Release files
    arrived), or None when it has none."""
    times = [p.lstat().st_ctime for p in (tree / "var/lib/apt/lists").glob("*Release")]
    return time.time() - max(times) if times else None


class ExistingBackend(Backend, name="existing"):
    """Overlay instances over an existing tree, which stays as it is."""

    capabilities = Capabilities(host_root=True, upper_dir=True)
    options = (
        Option(("-e", "--existing-chroot"), "existing_chroot", "an existing Debian tree (never changed: "
               "instances are overlays over it)", kind="path", metavar="DIR"),
        Option(("--hard-link",), "hard_link", "with -e: copy the tree with hard links instead of an overlay, "
               "as piuparts does", kind="flag", selects=False),
    )

    def __init__(self, spec: BaseSpec, cache_dir: Path, directory: Path, lists_max_age: float = 86400,
                 tmpfs_size: str | None = "50%") -> None:
        super().__init__(spec, cache_dir)
        self.directory = directory.absolute()
        self.lists_max_age = lists_max_age
        self.tmpfs_size = tmpfs_size
        self._update_lists = False

    @classmethod
    def settings_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        if not Path(args.existing_chroot, "var/lib/dpkg/status").is_file():
            raise UsageError(f"-e {args.existing_chroot}: not a Debian system (no var/lib/dpkg/status in it)")
        return super().settings_from_args(args)

    @classmethod
    def from_options(cls, spec: BaseSpec, options: "RunConfig") -> "ExistingBackend":
        directory = cls.setting(options, "existing_chroot")
        if directory is None:
            raise UsageError("the existing backend needs a directory: give -e DIR")
        chosen = HardLinkedExistingBackend if cls.setting(options, "hard_link") else ExistingBackend
        return chosen(spec, options.cache_dir, directory, lists_max_age=options.lists_max_age,
                      tmpfs_size=options.tmpfs_size).isolated(options)

    def _do_prepare(self) -> None:
        tree = self.directory
        if not (tree / "var/lib/dpkg/status").is_file():
            raise UsageError(f"-e {tree}: not a Debian system (no var/lib/dpkg/status in it)")
        if tree.resolve() == Path("/"):
            raise UsageError("-e /: the host's own root cannot be the base; give a chroot's directory")
        resources.reap(self.cache_dir / "instances")
        age = lists_age(tree)
        self._update_lists = age is None or age > self.lists_max_age
        if self._update_lists:
            log.info("The apt lists of %s are %s; each instance refreshes its own copy (%s is never changed)",
                     tree, "missing" if age is None else f"{age / 3600:.1f} hours old", tree)

    def _fit(self, chroot: Chroot) -> None:
        """Give a new instance what the harness needs (see the module's docstring)."""
        configure_base(chroot.root)
        if inroot.read_bytes(chroot.root, "/usr/bin/eatmydata") is None \
                and inroot.read_bytes(chroot.root, "/usr/local/bin/eatmydata") is None:
            inroot.write_text(chroot.root, "/usr/local/bin/eatmydata", EATMYDATA_SHIM, 0o755)
        if self._update_lists:
            apt_update(chroot)

    @contextmanager
    def _overlay(self) -> Iterator[Chroot]:
        with overlay_instance(self.directory, self.cache_dir, self.tmpfs_size, self.no_network) as chroot:
            self._fit(chroot)
            yield chroot

    def _do_instance(self, layers: Sequence[Path] = ()) -> ContextManager[Chroot]:
        return self._overlay()

    def describe(self) -> dict[str, str]:
        """What the report says about the base."""
        return {"backend": self.name, "base": str(self.directory)}


class HardLinkedExistingBackend(ExistingBackend):
    """``-e DIR --hard-link``: each instance is a copy of DIR made of hard
    links (``cp -al``), as Debian's piuparts does.

    The caveat: a linked file is the same file in DIR and in the instance,
    so a script that writes into an existing file in place (``echo >>
    /etc/foo``) or changes its mode or owner changes DIR too.  dpkg and apt
    replace files by renaming new ones into place, which leaves DIR alone;
    the logs and databases written in place (var/log, var/lib/dpkg,
    var/cache/debconf, man-db's var/cache/man) are copied, not linked; the
    harness writes its own files as new files.  There is no upper layer:
    every snapshot walks the whole tree.  DIR and the cache directory must
    be on one filesystem.
    """

    capabilities = Capabilities(host_root=True, upper_dir=False)

    #: Written in place by dpkg, apt, debconf or man-db: copied instead of linked.
    COPIED = ("var/log", "var/lib/dpkg", "var/cache/debconf", "var/cache/man")

    def _do_prepare(self) -> None:
        super()._do_prepare()
        instances = self.cache_dir / "instances"
        instances.mkdir(parents=True, exist_ok=True)
        if os.stat(self.directory).st_dev != os.stat(instances).st_dev:
            raise UsageError(f"--hard-link: {self.directory} and the cache directory {self.cache_dir} are on "
                             "different filesystems and hard links cannot cross them; give a --cache-dir on "
                             f"the filesystem of {self.directory}, or leave out --hard-link")

    def _copy(self, root: Path) -> None:
        """Make ``root`` a hard-linked copy of DIR, with :attr:`COPIED` really copied."""
        tree = self.directory
        command.run(["cp", "-a", "-l", "--one-file-system", "--", str(tree), str(root)], timeout=1800,
                    error=TestbedError, what=f"hard-linking {tree} into {root}", level=logging.DEBUG)
        for inner in self.COPIED:
            linked = root / inner
            if linked.is_dir() and not linked.is_symlink():
                shutil.rmtree(linked)
                command.run(["cp", "-a", "--one-file-system", "--", str(tree / inner), str(linked)],
                            timeout=1800, error=TestbedError, what=f"copying {tree / inner}", level=logging.DEBUG)
        # booted() copies the host's resolver into place: not through a link.
        (root / "etc/resolv.conf").unlink(missing_ok=True)

    @contextmanager
    def _hard_linked(self) -> Iterator[Chroot]:
        start = time.monotonic()
        with owned_instance_dir(self.cache_dir) as top:
            root = top / "root"
            self._copy(root)
            with booted(root, no_network=self.no_network) as chroot:
                log.info("Instance %s started in %.3f s", root, time.monotonic() - start)
                self._fit(chroot)
                yield chroot

    def _do_instance(self, layers: Sequence[Path] = ()) -> ContextManager[Chroot]:
        return self._hard_linked()
