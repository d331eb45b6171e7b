"""Broken symlinks the tested packages shipped or created.

After the install, every symlink that is new or points elsewhere than it
did before the install is resolved against the instance's root (never the
host's ``/``), relative and absolute targets alike, chains followed up to
the kernel's limit; links into the trees a running system mounts (/proc,
/sys, /dev, /run) are not judged.  With an overlay only the upper
directory is read (it holds exactly what changed); otherwise the whole
tree is walked.  A link is blamed on the package that owns it, or on the
tested packages when no package does.  piuparts only warns about broken symlinks unless given
``--fail-on-broken-symlinks``; here they fail unless made a warning.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections import deque
from pathlib import Path

from piuparts.checks.base import Check, Context
from piuparts.dpkgdb import dpkg_owners, owner_of
from piuparts.findings import WARN, Finding
from piuparts.state import Ignores

log = logging.getLogger("piuparts")

#: Symlinks followed before giving up, as the kernel does (MAXSYMLINKS).
MAX_LINKS = 40
#: Where a running system mounts filesystems of its own (proc, sysfs,
#: devtmpfs, tmpfs) that the instance has only in part or not at all: links
#: into them (/dev/stdin, /run/systemd/resolve/...) are not judged.
RUNTIME = ("/proc", "/sys", "/dev", "/run")
_BROKEN = re.compile(r"broken symlink -> (?P<target>.*?) \((?P<why>.*)\)")


def broken_message(target: str, why: str) -> str:
    """A broken symlink finding's message: where it points, why that fails."""
    return f"broken symlink -> {target} ({why})"


def broken_target(message: str) -> str | None:
    """The target a :func:`broken_message` names (None for another message)."""
    match = _BROKEN.fullmatch(message)
    return match["target"] if match else None


def symlinks_under(top: Path, prune: Ignores | None = None) -> dict[str, str]:
    """Inner path -> target of every symlink below ``top``; never crosses a mount."""
    found: dict[str, str] = {}
    dev = os.lstat(top).st_dev
    stack = [""]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(str(top) + current if current else top) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for dirent in entries:
            path = f"{current}/{dirent.name}"
            try:  # a path gone while the walk looks (something still runs inside) is absent
                st = dirent.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    found[path] = os.readlink(dirent.path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_dev == dev and not (prune and prune.prunes(path + "/")):
                stack.append(path)
    return found


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _at_runtime(path: str) -> bool:
    return any(path == top or path.startswith(top + "/") for top in RUNTIME)


def resolve(root: Path, inner: str, limit: int = MAX_LINKS) -> tuple[str | None, str]:
    """Resolve ``inner`` inside ``root`` as a process chrooted there would.

    Returns the resolved inner path and ``""``, or ``None`` and why not.
    Resolution stops, successfully, where it reaches a :data:`RUNTIME` tree.
    """
    parts = deque(inner.split("/"))
    current, hops, top = "/", 0, str(root)
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        candidate = _parent(current) if part == ".." else current.rstrip("/") + "/" + part
        if _at_runtime(candidate):
            return candidate, ""
        try:
            st = os.lstat(top + candidate)
            target = os.readlink(top + candidate) if stat.S_ISLNK(st.st_mode) else None
        except (FileNotFoundError, NotADirectoryError):
            return None, f"{candidate} does not exist"
        if target is not None:
            hops += 1
            if hops > limit:
                return None, f"more than {limit} levels of symlinks"
            current = "/" if target.startswith("/") else current
            parts.extendleft(reversed(target.split("/")))
        elif any(p not in ("", ".") for p in parts) and not stat.S_ISDIR(st.st_mode):
            return None, f"{candidate} is not a directory"
        else:
            current = candidate
    return current, ""


def _blame(owners: tuple[str, ...], ctx: Context) -> tuple[str, ...]:
    return owners or ctx.blame


class Symlinks(Check, name="symlinks"):
    """A finding for each new or changed symlink whose target does not resolve inside the instance."""

    # As in piuparts: a warning unless --fail-on-broken-symlinks.
    default_severity = WARN

    def _top(self, ctx: Context) -> Path:
        return ctx.chroot.upper if ctx.chroot.upper is not None else ctx.chroot.root

    def before_install(self, ctx: Context) -> None:
        self.before = symlinks_under(self._top(ctx), ctx.ignores) if ctx.chroot.host_root else {}

    def after_install(self, ctx: Context) -> list[Finding]:
        if not ctx.chroot.host_root:
            log.debug("symlinks: this backend's files are not visible from the host; not checked")
            return []
        links = symlinks_under(self._top(ctx), ctx.ignores)
        broken = {}
        for path, target in sorted(links.items()):
            if self.before.get(path) != target and ctx.ignores.match(path) is None:
                resolved, why = resolve(ctx.chroot.root, path)
                if resolved is None:
                    broken[path] = broken_message(target, why)
        owners = dpkg_owners(ctx.chroot) if broken else {}
        return [self.finding(path, message, owner, _blame(owner, ctx))
                for path, message in broken.items() for owner in [owner_of(path, owners)]]
