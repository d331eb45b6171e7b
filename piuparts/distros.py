"""piuparts' /etc/piuparts/distros.conf: distribution names that stand for
more than one apt suite (a release and its updates, backports over a
release, an alias), as piuparts 1.1.7 and piuparts.debian.org's slaves
read it.

Each block names a distribution; its keys (all optional):

- ``uri``: its mirror (default: the -m mirror); ``None`` makes it virtual,
  a name for its ``depends`` alone;
- ``distribution``: the suite's name in the archive (default: the block's);
- ``components``: the components it has (default: all the -m ones);
- ``depends``: the distributions it is used on top of, in order;
- ``target-release``: what apt installs from by default (piuparts passes
  ``-t`` to its installs; here ``APT::Default-Release`` in the instance);
- ``candidates``: the master's, for its Packages files (``piuparts batch``
  reads those).

The first ``-d NAME``, with NAME a block here, starts the test in the
chain NAME stands for (see :func:`resolve`); a later one is a release the
test dist-upgrades to (see :func:`upgrade`), as piuparts.debian.org's
``bullseye2next`` (to the virtual ``bullseye-next``) or ``sid2experimental``
(to ``experimental`` over sid, installing from experimental).  A name with
no block is one apt suite, as without the file.  The file is read as piuparts reads it
(configparser).
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from piuparts.errors import UsageError

#: Where piuparts (the piuparts-common package) keeps it.
DEFAULT_PATH = Path("/etc/piuparts/distros.conf")
KEYS = ("uri", "distribution", "components", "depends", "target-release", "candidates")


@dataclass(frozen=True)
class Distros:
    """The blocks of a distros.conf: name -> key -> value."""

    blocks: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path = DEFAULT_PATH

    @classmethod
    def read(cls, path: Path = DEFAULT_PATH) -> "Distros":
        """The file's blocks (none when it does not exist); a broken file is a one-line UsageError."""
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as err:
            message = str(err).splitlines()[0]
            raise UsageError(f"{path}: not a distros.conf ({message}); fix it, or name another "
                             "with --distros-conf") from None
        return cls({name: {key: parser.get(name, key) for key in KEYS if parser.has_option(name, key)}
                    for name in parser.sections()}, path)

    def knows(self, name: str) -> bool:
        """Whether ``name`` means more than the apt suite of that name."""
        return bool(self.blocks.get(name))

    def value(self, name: str, key: str) -> str | None:
        """The value of ``key`` in the block ``name``, or None."""
        return self.blocks.get(name, {}).get(key)

    def target_release(self, name: str) -> str | None:
        """The block's target-release: a release name (it goes into apt's configuration inside)."""
        release = self.value(name, "target-release")
        if release is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]*", release):
            raise UsageError(f"{self.path}: [{name}] target-release {release!r} is not a release name; fix it")
        return release

    def candidates(self, name: str) -> list[str]:
        """The distributions whose Packages the master reads for ``name`` (piuparts-master's
        ``candidates``; ``name`` itself by default)."""
        return (self.value(name, "candidates") or "").split() or [name]

    def virtual(self, name: str) -> bool:
        """A name for its ``depends`` alone (``uri = None``)."""
        return self.value(name, "uri") == "None"

    def chain(self, name: str) -> list[str]:
        """``name`` after everything it depends on (each once, depth first, as
        piuparts orders them), virtual names left out."""
        done: list[str] = []
        seen: set[str] = set()

        def visit(current: str, trail: tuple[str, ...]) -> None:
            if current in trail:
                raise UsageError(f"{self.path}: [{current}] depends on itself ({' -> '.join((*trail, current))}); "
                                 "fix its depends")
            if current in seen:
                return
            seen.add(current)
            for dependency in (self.value(current, "depends") or "").split():
                visit(dependency, (*trail, current))
            if not self.virtual(current):
                done.append(current)
        visit(name, ())
        if not done:
            raise UsageError(f"-d {name}: {self.path} names no distribution with a mirror under it; fix its depends")
        return done

    def suite(self, name: str) -> str:
        """The archive's name of ``name``."""
        if self.virtual(name):
            name = self.chain(name)[0]
        return self.value(name, "distribution") or name

    def mirror(self, name: str, default: str) -> str:
        """Where ``name`` is fetched from."""
        if self.virtual(name):
            name = self.chain(name)[0]
        return (self.value(name, "uri") or default).rstrip("/")

    def apt_lines(self, name: str, mirror: str, components: Sequence[str]) -> list[str]:
        """The sources.list lines of ``name``, as piuparts writes them: one a
        component of each distribution of its chain that has it."""
        lines = []
        for distro in self.chain(name):
            has = (self.value(distro, "components") or "").split()
            for component in components:
                if not has or component in has:
                    lines.append(f"deb {self.mirror(distro, mirror)} {self.suite(distro)} {component}")
        return lines


@dataclass(frozen=True)
class Start:
    """Where a test starts, when distros.conf knows the first -d name."""

    #: The suite the base is made of (the chain's first), and its mirror.
    base_suite: str
    base_mirror: str
    #: The instance's sources.list: the whole chain.
    sources: str
    #: APT::Default-Release inside, or None.
    target_release: str | None
    #: PIUPARTS_DISTRIBUTION, as piuparts names it (the block's distribution, or its name).
    hooks_name: str
    #: One line for the log: what the name became.
    said: str


def resolve(distros: Distros, name: str, mirror: str, components: Sequence[str]) -> Start | None:
    """What the first ``-d name`` means with ``distros``; None when it is a plain suite."""
    if not distros.knows(name):
        return None
    chain = distros.chain(name)
    lines = distros.apt_lines(name, mirror, components)
    release = distros.target_release(name)
    base = chain[0]
    said = (f"-d {name}: {distros.path} makes it " + " + ".join(distros.suite(d) for d in chain)
            + (f", installing from {release}" if release else ""))
    return Start(distros.suite(base), distros.mirror(base, mirror), "".join(f"{line}\n" for line in lines),
                 release, distros.suite(name), said)


@dataclass(frozen=True)
class Upgrade:
    """What a later ``-d NAME`` (a release to dist-upgrade to) means."""

    #: What the run calls it (config.distributions): the suite of a plain name
    #: or an alias, the -d name itself for a chain.
    name: str
    #: PIUPARTS_DISTRIBUTION once there, as piuparts names it.
    hooks_name: str
    #: The instance's whole sources.list there, or "" to rename the suite of the
    #: entries it has (their mirror, their pockets kept).
    sources: str
    #: distros.conf's target-release of NAME: what apt installs from once there.
    target_release: str
    #: One line for the log, or None when the name is a plain suite.
    said: str | None


def _is_chain(distros: Distros, name: str) -> bool:
    """More than a new name for one suite of the -m mirror."""
    return any(distros.value(name, key) for key in ("depends", "uri", "target-release"))


def upgrade(distros: Distros, name: str, mirror: str, components: Sequence[str], after_chain: bool) -> Upgrade:
    """A later ``-d name``.  A plain name or an alias renames the suite of the
    instance's sources, as without the file; a chain writes them whole, as
    piuparts does (and so does the name after a chain: there is no one suite
    left to rename)."""
    suite = distros.suite(name)
    chain = _is_chain(distros, name)
    if not (chain or after_chain):
        return Upgrade(suite, suite, "", "", None)
    lines = distros.apt_lines(name, mirror, components)
    release = distros.target_release(name) or ""
    said = (f"-d {name}: {distros.path} makes it " + " + ".join(distros.suite(d) for d in distros.chain(name))
            + (f", installing from {release}" if release else "")) if chain else None
    return Upgrade(name if chain else suite, suite, "".join(f"{line}\n" for line in lines), release, said)
