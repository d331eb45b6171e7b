"""What a tree looks like, and how two looks at it differ.

:class:`TreeState` maps each path inside the chroot (``/etc/foo``) to an
:class:`Entry`: type, permissions, owner, size, symlink target and a
content digest.  :func:`diff` is a pure function of two states.

Two ways to take a state, giving identical diffs (a test checks it):

* :func:`snapshot` walks the whole tree (any backend);
* :func:`snapshot_upper` reads only an overlay's upper directory, and
  :func:`diff_overlay` compares two such reads against the read-only lower
  layer, touching only what changed.  Whiteouts and opaque directories are
  understood.  The overlay is mounted with ``redirect_dir=off`` and
  ``metacopy=off`` so that the upper directory alone says what changed.

Ignore rules (:class:`Ignores`) are anchored regular expressions over the
displayed path (directories end with ``/``), applied in one place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger("piuparts")

_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
          stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One path's type, permissions, owner, size, link target and content digest."""

    type: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    target: str = ""
    digest: str = ""

    def describe(self) -> str:
        """A short human description: ``file 0644 0:0 12 bytes``."""
        text = f"{self.type} {self.mode:04o} {self.uid}:{self.gid}"
        if self.type == "file":
            text += f" {self.size} bytes"
        elif self.type == "symlink":
            text += f" -> {self.target}"
        return text


TreeState = dict[str, Entry]


def entry_of(path: str | os.PathLike[str], st: os.stat_result | None = None) -> Entry:
    """The :class:`Entry` of a host path (not following symlinks)."""
    st = st or os.lstat(path)
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "other")
    size, target, digest = 0, "", ""
    if kind == "file":
        size = st.st_size
        # Not followed, never blocking: a file swapped for a link or a fifo since the lstat is not read.
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    elif kind == "symlink":
        target = os.readlink(path)
    elif kind in ("char", "block"):
        digest = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
    return Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, target, digest)


def display(path: str, entry: Entry | None) -> str:
    """The path as reports and ignore rules see it: directories end with ``/``."""
    return path + "/" if entry is not None and entry.type == "dir" and path != "/" else path


#: What the walk meets when a path goes (or becomes another type) while it looks.
_VANISHED = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def present_entry(path: str) -> tuple[os.stat_result, Entry] | None:
    """``path``'s stat and :class:`Entry`, or None when it is gone.  A path
    replaced while it was read (a file by a directory) is read once more."""
    for _ in range(2):
        try:
            st = os.lstat(path)
            return st, entry_of(path, st)
        except _VANISHED:
            continue
    return None


def _walk(top: Path, rel: str, prune: "Ignores | None", dev: int) -> Iterator[tuple[str, Entry]]:
    """(path, entry) under ``top``; never follows symlinks or crosses mounts.

    Something may still run in the tree (a daemon a test left): a path that
    disappears while the walk looks at it counts as absent."""
    stack = [rel]
    while stack:
        current = stack.pop()
        try:
            it = os.scandir(top / current.lstrip("/") if current != "/" else top)
        except _VANISHED:
            continue
        with it:
            for dirent in it:
                path = f"{current.rstrip('/')}/{dirent.name}"
                found = present_entry(dirent.path)
                if found is None:
                    log.debug("%s went away during the walk: absent", path)
                    continue
                st, ent = found
                yield path, ent
                if ent.type == "dir":
                    if st.st_dev != dev:
                        continue  # a mount point: proc, devpts, a bind mount
                    if prune is not None and prune.prunes(path + "/"):
                        continue
                    stack.append(path)


def snapshot(root: Path, prune: "Ignores | None" = None) -> TreeState:
    """Walk the whole tree under ``root``.

    Directories that ``prune`` ignores wholesale are not descended into
    (their own entry is kept).  Mount points inside the tree are listed
    but not entered.
    """
    return dict(_walk(root, "/", prune, os.lstat(root).st_dev))


@dataclass
class UpperState:
    """An overlay upper directory: entries (``None`` for a whiteout) and opaque dirs."""

    entries: dict[str, Entry | None] = field(default_factory=dict)
    opaque: set[str] = field(default_factory=set)


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def snapshot_upper(upper: Path, prune: "Ignores | None" = None) -> UpperState:
    """Read what an overlay's upper directory says changed.

    Directories that ``prune`` ignores wholesale (downloaded .debs, apt
    lists) are not descended into, as in :func:`snapshot`.
    """
    state = UpperState()
    top = str(upper)
    for path, ent in _walk(upper, "/", prune, os.lstat(upper).st_dev):
        host = top + path
        if ent.type == "char" and ent.digest == "0,0":
            state.entries[path] = None
        elif ent.type == "file" and ent.size == 0 and _xattr(host, "trusted.overlay.whiteout") is not None:
            state.entries[path] = None
        else:
            state.entries[path] = ent
            if ent.type == "dir" and _xattr(host, "trusted.overlay.opaque") == b"y":
                state.opaque.add(path)
    return state


def _ancestors(path: str) -> Iterator[str]:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        yield "/" + "/".join(parts[:i])


def _names(top: Path, rel: str) -> Iterator[str]:
    """Every path under ``rel`` in the tree at ``top``, without reading any
    file; never follows symlinks or crosses mounts."""
    dev = os.lstat(top).st_dev
    stack = [rel]
    while stack:
        current = stack.pop()
        try:
            it = os.scandir(top / current.lstrip("/") if current != "/" else top)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for dirent in it:
                path = f"{current.rstrip('/')}/{dirent.name}"
                yield path
                if dirent.is_dir(follow_symlinks=False) and dirent.stat(follow_symlinks=False).st_dev == dev:
                    stack.append(path)


class _Lower:
    """Cached, symlink-safe look-ups in a read-only lower layer; a file is
    read (for its digest) only when a diff needs its entry."""

    def __init__(self, lower: Path) -> None:
        self.top = str(lower)
        self.cache: dict[str, Entry | None] = {}

    def get(self, path: str) -> Entry | None:
        if path not in self.cache:
            parents_ok = all((e := self.get(a)) is not None and e.type == "dir" for a in _ancestors(path))
            try:
                self.cache[path] = entry_of(self.top + path) if parents_ok else None
            except FileNotFoundError:
                self.cache[path] = None
        return self.cache[path]

    def subtree(self, path: str) -> Iterator[str]:
        ent = self.get(path)
        if ent is not None and ent.type == "dir":
            yield from _names(Path(self.top), path)


def _resolve(path: str, upper: UpperState, lower: _Lower) -> Entry | None:
    """What the merged overlay shows at ``path``."""
    if path in upper.entries:
        return upper.entries[path]
    for anc in _ancestors(path):
        if anc in upper.entries:
            ent = upper.entries[anc]
            if ent is None or ent.type != "dir" or anc in upper.opaque:
                return None
    return lower.get(path)


def diff_overlay(lower: Path, before: UpperState, after: UpperState) -> "Diff":
    """:func:`diff` of two merged views, computed from their upper dirs only."""
    return diff_layered(lower, before, lower, after)


def _hidden(state: UpperState, path: str) -> tuple[bool, Entry | None, bool] | None:
    """What ``state`` holds at ``path`` if that hides the lower tree below it."""
    if path not in state.entries:
        return None
    ent = state.entries[path]
    if ent is None or ent.type != "dir" or path in state.opaque:
        return (True, ent, path in state.opaque)
    return None


def _hidden_below(state: UpperState, other: UpperState, low: _Lower) -> Iterator[str]:
    """The lower paths ``state`` hides (under its whiteouts, files and opaque
    dirs) where ``other`` does not hide them the same way: below a path
    hidden alike in both, every lower path is absent from both views."""
    for path in state.entries:
        mine = _hidden(state, path)
        if mine is not None and mine != _hidden(other, path):
            yield from low.subtree(path)


def layer_paths(layer: Path, base: Path) -> Iterator[str]:
    """The paths a layer (an upper directory kept over ``base``) may change:
    its own, and the base's below its whiteouts, files and opaque dirs."""
    top, low = str(layer), _Lower(base)
    for path in _names(layer, "/"):
        yield path
        if not os.path.isdir(low.top + path) or os.path.islink(low.top + path):
            continue
        st = os.lstat(top + path)
        if not stat.S_ISDIR(st.st_mode) or _xattr(top + path, "trusted.overlay.opaque") == b"y":
            yield from _names(base, path)


def diff_layered(before_lower: Path, before: UpperState, after_lower: Path, after: UpperState,
                 between: Iterable[str] = ()) -> "Diff":
    """:func:`diff` of ``before`` seen over ``before_lower`` and ``after``
    seen over ``after_lower``, from the upper directories only.

    With dependency layers, the state before the test is the instance's
    upper directory over the base alone, and later states are over the
    layers and the base: ``between`` (see :func:`layer_paths`) then names
    the paths that may differ between the two lowers.  A file is read
    only when it shows on both sides of the comparison.
    """
    low_before = _Lower(before_lower)
    low_after = low_before if after_lower == before_lower else _Lower(after_lower)
    paths = set(before.entries) | set(after.entries)
    paths.update(_hidden_below(before, after, low_before))
    # Over the layers, what ``after`` hides is the layers' (``between``) and the base's.
    paths.update(_hidden_below(after, before, low_before))
    if low_after is not low_before:
        paths.update(between)
    old = {p: e for p in paths if (e := _resolve(p, before, low_before)) is not None}
    new = {p: e for p in paths if (e := _resolve(p, after, low_after)) is not None}
    return diff(old, new)


@dataclass(frozen=True)
class Diff:
    """What changed between two states."""

    added: dict[str, Entry] = field(default_factory=dict)
    removed: dict[str, Entry] = field(default_factory=dict)
    modified: dict[str, tuple[Entry, Entry]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)


def diff(before: TreeState, after: TreeState) -> Diff:
    """Added, removed and modified paths; modified means any field differs."""
    added = {p: after[p] for p in sorted(after.keys() - before.keys())}
    removed = {p: before[p] for p in sorted(before.keys() - after.keys())}
    modified = {p: (before[p], after[p]) for p in sorted(before.keys() & after.keys())
                if before[p] != after[p]}
    return Diff(added, removed, modified)


@dataclass(frozen=True)
class Rule:
    """One anchored ignore rule and where it came from."""

    pattern: str
    source: str
    regex: re.Pattern[str] = field(compare=False, repr=False)


# A rule ``/literal/prefix/.*`` ignores a whole subtree; the walk can skip it.
# Only escapes of punctuation are literal (``\d`` is a class, not a "d").
_SUBTREE = re.compile(r"^((?:[^\\.^$*+?{}\[\]|()]|\\[^A-Za-z0-9])*/)\.\*$")


class Ignores:
    """Anchored regular expressions over displayed paths, applied in one place."""

    def __init__(self, rules: Iterable[tuple[str, str]] = ()) -> None:
        self.rules: list[Rule] = []
        self._prefixes: list[str] = []
        for pattern, source in rules:
            self.add(pattern, source)

    def add(self, pattern: str, source: str) -> None:
        """Add ``pattern`` (matched against the whole path) from ``source``."""
        self.rules.append(Rule(pattern, source, re.compile(pattern)))
        literal = _SUBTREE.match(pattern)
        if literal:
            self._prefixes.append(re.sub(r"\\(.)", r"\1", literal[1]))

    def match(self, shown: str) -> Rule | None:
        """The first rule that matches the whole of ``shown``, if any."""
        for rule in self.rules:
            if rule.regex.fullmatch(shown):
                return rule
        return None

    def prunes(self, dir_shown: str) -> bool:
        """True when everything below directory ``dir_shown`` is ignored."""
        return any(dir_shown.startswith(prefix) for prefix in self._prefixes)

    def filter(self, changes: Diff) -> Diff:
        """``changes`` without the ignored paths; the debug log says which rule took what."""
        def keep(path: str, ent: Entry) -> bool:
            shown = display(path, ent)
            rule = self.match(shown)
            if rule is not None:
                log.debug("ignored %s (rule %s from %s)", shown, rule.pattern, rule.source)
            return rule is None
        return Diff({p: e for p, e in changes.added.items() if keep(p, e)},
                    {p: e for p, e in changes.removed.items() if keep(p, e)},
                    {p: (a, b) for p, (a, b) in changes.modified.items() if keep(p, b)})

    @classmethod
    def load(cls, path: Path) -> "Ignores":
        """Read one rule a line; ``#`` starts a comment."""
        ignores = cls()
        ignores.extend_from(path)
        return ignores

    def extend_from(self, path: Path) -> None:
        """Add the rules of the file at ``path``."""
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                self.add(line, f"{path}:{number}")
