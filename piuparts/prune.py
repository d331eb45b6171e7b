"""Keeping a long-lived cache in bounds: ``piuparts cleanup --prune``.

What a cache grows by: dependency layers (``layers/NAME/``), downloaded
.debs (``debs/``), distupgrade references (``references/``) and base
generations a newer one replaced.  Each use of a layer or a .deb touches
it, so its modification time is its last use.  Pruning removes

- every base generation that is not current and that no run holds;
- what was last used more than ``max_age`` ago;
- then, least recently used first, what it takes to bring the cache under
  ``max_size``.

Nothing that a run holds is removed: a layer is held (a shared lock on its
directory) while an instance stacks it, a reference likewise, a base
generation by its lock; and nothing used in the last :data:`RECENT`
seconds goes, so a run that has just found a layer and not yet locked it
is safe too.  Temporary files of killed runs (``debs/.NAME.PID.tmp``,
``layers/resolved/.KEY.PID``) go whenever their run is dead.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from piuparts import resources
from piuparts.errors import UsageError

log = logging.getLogger("piuparts")

#: Anything used more recently than this (seconds) is never pruned.
RECENT = 600.0

_TEMPORARY = re.compile(r"^\..+\.(\d+)(\.tmp)?$")


@dataclass(frozen=True)
class Item:
    """One thing pruning may remove, with its size and last use."""

    path: Path
    size: int
    used: float
    #: A lock file (or the directory itself) a user holds a shared lock on; None for plain files.
    lock: Path | None


def parse_size(text: str) -> int:
    """``500M``, ``20G``, ``1T`` or a number of bytes; a one-line error otherwise."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?", text.strip())
    if not match:
        raise UsageError(f"--max-size {text!r}: a size such as 500M, 20G or 1T")
    factor = 1024 ** " KMGT".index(match[2].upper() or " ")
    return int(float(match[1]) * factor)


def disk_usage(path: Path) -> int:
    """Bytes ``path`` takes on disk (not following links, not crossing mounts)."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return info.st_blocks * 512
    total = info.st_blocks * 512
    device = info.st_dev
    for directory, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                entry = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if entry.st_dev == device:
                total += entry.st_blocks * 512
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(directory, d)).st_dev == device]
    return total


def reap_temporaries(cache: Path) -> list[Path]:
    """Remove the temporary files that runs no longer running left in debs/ and layers/resolved/."""
    removed = []
    for directory in (cache / "debs", cache / "layers" / "resolved"):
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            match = _TEMPORARY.match(entry.name)
            if match and resources.start_time(int(match[1])) is None and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def items(cache: Path) -> list[Item]:
    """Every layer, cached .deb and reference, least recently used first."""
    found: list[Item] = []
    for layer in _dirs(cache / "layers"):
        if layer.name != "resolved":
            found.append(Item(layer, disk_usage(layer), layer.stat().st_mtime, layer))
    for deb in sorted((cache / "debs").glob("*.deb")) if (cache / "debs").is_dir() else ():
        found.append(Item(deb, disk_usage(deb), deb.stat().st_mtime, None))
    for reference in _dirs(cache / "references"):
        found.append(Item(reference, disk_usage(reference), reference.stat().st_mtime,
                          reference.with_name(reference.name + ".lock")))
    return sorted(found, key=lambda item: item.used)


def _dirs(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


def _remove(item: Item) -> bool:
    """Remove ``item`` unless a run holds it; True when it went."""
    if item.lock is None:
        item.path.unlink(missing_ok=True)
        return True
    fd = os.open(item.lock, os.O_RDONLY | (os.O_DIRECTORY if item.lock.is_dir() else os.O_CREAT), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with resources.signals_deferred():
            resources.remove_tree(item.path)
        return True
    finally:
        os.close(fd)


def prune(cache: Path, max_size: int | None = None, max_age_days: float | None = None,
          now: float | None = None, level: int = logging.INFO) -> list[Path]:
    """Prune ``cache`` (see the module's docstring); return what was removed
    (each said at ``level``: a batch run says only how many)."""
    from piuparts.backends.common import remove_unused_generations
    now = time.time() if now is None else now
    removed = reap_temporaries(cache)
    for base in _dirs(cache / "bases"):
        removed += remove_unused_generations(base)
    candidates = [i for i in items(cache) if now - i.used > RECENT]
    if max_age_days is not None:
        for item in [i for i in candidates if now - i.used > max_age_days * 86400]:
            if _remove(item):
                log.log(level, "Pruned %s, last used %.1f days ago", item.path, (now - item.used) / 86400)
                removed.append(item.path)
                candidates.remove(item)
    if max_size is not None:
        total = disk_usage(cache)
        for item in candidates:  # least recently used first
            if total <= max_size:
                break
            if _remove(item):
                log.log(level, "Pruned %s (%d MB), last used %.1f days ago", item.path, item.size >> 20,
                        (now - item.used) / 86400)
                total -= item.size
                removed.append(item.path)
        if total > max_size:
            log.log(level, "The cache still takes %d MB: what is left is in use or used in the last %d minutes",
                    total >> 20, RECENT // 60)
    _forget_resolutions(cache)
    return removed


def _forget_resolutions(cache: Path) -> None:
    """Drop remembered apt answers whose layer is gone (a run would resolve again anyway)."""
    resolved = cache / "layers" / "resolved"
    if not resolved.is_dir():
        return
    for entry in resolved.iterdir():
        if entry.name.startswith("."):
            continue
        try:
            name = next(iter(entry.read_text().splitlines()), "").strip()  # the layer's name, then what it fetches
        except OSError:
            continue
        if name != "-" and not (cache / "layers" / name).is_dir():
            entry.unlink(missing_ok=True)
