"""Cached dependency layers: "base + this exact set of dependencies", read-only.

Most of a test's time goes to installing the dependencies (python3 and its
byte-compiling, for every OpenStack package), the same ones run after run.
So the dependencies are installed once in an instance of their own, and
that instance's upper directory (whiteouts and opaque directories
included) is kept as a layer that later instances stack between the base
and their own upper directory: overlayfs takes several lower layers.

A layer is named by what it holds: the base (its path and the state of
its dpkg database) and every package apt resolved, with its version and
architecture.  A new version of any dependency, or a rebuilt base, makes a
new key.  A layer is written under a temporary name and renamed, so runs
that go at once either find it whole or build their own.

What a layer costs is the dependencies' purge: the test no longer removes
and purges them, so what their own maintainer scripts leave is not
checked (``--purge-dependencies`` checks it, as the dependencies' own
tests do).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import time
from pathlib import Path
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from piuparts import command, debcache, resources
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError

if TYPE_CHECKING:
    from piuparts.backends import Backend
    from piuparts.inputs import TestSubject

log = logging.getLogger("piuparts")

#: apt-get --simulate: "Inst python3.11 (3.11.2-6+deb12u8 Debian:12.12/stable [amd64])"
_INST = re.compile(r"^Inst (?P<name>\S+) (?:\[[^]]*\] )?\((?P<version>\S+) .*?\[(?P<arch>[^]]+)\]\)", re.M)


def resolve(chroot: Chroot, apt: Sequence[str], targets: Sequence[str], tested: Sequence[str]) -> list[str] | None:
    """``NAME=VERSION:ARCH`` of what installing ``targets`` pulls in besides
    the ``tested`` packages; None when apt cannot resolve it."""
    simulated = chroot.run([*apt, "install", "--simulate", *targets], level=logging.DEBUG)
    if not simulated.ok:
        return None
    return sorted(f"{m['name']}={m['version']}:{m['arch']}" for m in _INST.finditer(simulated.output)
                  if m["name"].split(":", 1)[0] not in tested)


#: apt's "unmet dependencies" lines: " python3-oslo.log : Depends: python3-oslo.config but it is not ..."
_UNMET = re.compile(r"^ (\S+) : (?:Pre-)?Depends: ", re.M)


def _without_cycles(chroot: Chroot, apt: Sequence[str], dependencies: list[str],
                    tested: Sequence[str]) -> list[str]:
    """``dependencies`` less those that need a tested package back (OpenStack
    has such cycles: python3-oslo.log depends on python3-oslo.config).  The
    layer must not hold the packages under test; what is left out here is
    installed by the test itself, in its "install dependencies" step."""
    names = [dep.split("=", 1)[0] for dep in dependencies]
    alone = chroot.run([*apt, "install", "--simulate", *names], level=logging.DEBUG)
    back = {m["name"].split(":", 1)[0] for m in _INST.finditer(alone.output)} & set(tested)
    if alone.ok and not back:
        return dependencies  # no cycle: the usual case
    kept = list(dependencies)
    for _ in range(20):
        names = [dep.split("=", 1)[0] for dep in kept]
        simulated = chroot.run([*apt, "install", "--simulate", *names, *(f"{name}-" for name in back)],
                               level=logging.DEBUG)
        if simulated.ok:
            if len(kept) < len(dependencies):
                log.info("Leaving out of the layer what needs the tested packages back: %s",
                         " ".join(sorted(set(dependencies) - set(kept))))
            return kept
        broken = set(_UNMET.findall(simulated.output))
        if not broken:
            return []
        kept = [dep for dep in kept if dep.split("=", 1)[0] not in broken]
    return []


def key(lower: Path, dependencies: Sequence[str]) -> str:
    """The layer's name: the base it sits on and the exact dependency set."""
    status = (lower / "var/lib/dpkg/status").stat()
    data = "\n".join([str(lower), str(status.st_mtime_ns), str(status.st_size), *dependencies])
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def find(cache_dir: Path, name: str) -> Path | None:
    """The tree of the cached layer ``name`` if there is one (its use is recorded for pruning)."""
    layer = cache_dir / "layers" / name
    if not (layer / "tree").is_dir():
        return None
    os.utime(layer)
    return layer / "tree"


def store(chroot: Chroot, cache_dir: Path, name: str, dependencies: Sequence[str],
          scratch: Sequence[str]) -> Path:
    """Keep the instance's upper directory as the layer ``name`` and return
    its tree, without the .debs in the ``scratch`` directories."""
    assert chroot.upper is not None, "only overlay instances make layers"
    start = time.monotonic()
    for inner in scratch:
        target = chroot.upper / inner.lstrip("/")
        if target.is_dir():
            for item in target.glob("*.deb"):
                item.unlink()
    layer = cache_dir / "layers" / name
    with resources.building(layer, replace=False) as tmp:  # a run storing the same layer first wins
        command.run(["cp", "-a", "--", f"{chroot.upper}/.", str(tmp / "tree")], error=TestbedError,
                    what="keeping the dependency layer", level=logging.DEBUG)
        (tmp / "dependencies").write_text("".join(f"{dep}\n" for dep in dependencies))
    log.info("Stored dependency layer %s in %.2f s", name, time.monotonic() - start)
    return layer / "tree"


def _resolution_key(lower: Path, subject: "TestSubject", sources: Sequence[str]) -> str:
    """What apt's answer for ``subject`` depends on: the base's package
    database and lists, the extra sources, and the subjects' relations."""
    parts = [str(lower)]
    for inner in ("var/lib/dpkg/status", "var/lib/apt/lists"):
        info = (lower / inner).stat()
        parts.append(f"{inner} {info.st_mtime_ns} {info.st_size}")
    parts += sources
    parts += [f"{deb.package} {deb.architecture}\n{deb.relations}" for deb in subject.debs]
    parts += subject.apt_names
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cached_layer(cache_dir: Path, resolution: str) -> tuple[Path, list[str]] | None:
    """The layer an earlier run resolved the same subject to, if it is still cached."""
    try:
        name = (cache_dir / "layers" / "resolved" / resolution).read_text().strip()
    except OSError:
        return None
    if name == NO_LAYER:
        return Path(), []
    tree = find(cache_dir, name)
    if tree is None:
        return None
    return tree, (tree.parent / "dependencies").read_text().split()


#: What _remember writes for a subject that needs nothing besides the base.
NO_LAYER = "-"


def _remember(cache_dir: Path, resolution: str, name: str) -> None:
    directory = cache_dir / "layers" / "resolved"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{resolution}.{os.getpid()}"
    tmp.write_text(name + "\n")
    os.rename(tmp, directory / resolution)


def for_subject(backend: "Backend", subject: "TestSubject", setup: Callable[[Chroot], None],
                deb_cache: Path, timeout: float, prompt_timeout: float,
                sources: Sequence[str] = ()) -> tuple[list[Path], dict[str, Any]]:
    """The layers an instance for testing ``subject`` should stack (none or
    one), and what the report says about them.

    In a throwaway instance (made ready by ``setup``: extra repositories,
    bind mounts; not the hooks, whose effects belong to each test) apt
    resolves the dependencies; their layer is used if cached, else built
    there.  When apt cannot resolve or install them, no layer: the test
    itself then fails and says why.

    apt's answer is remembered (keyed by what it depends on, ``sources``
    being the extra apt sources), so the same subject again (a rebuilt
    .deb whose relations did not change) needs no instance to find its
    layer.  A stale answer costs only time: the test's own resolution then
    installs what the layer lacks in a step of its own.
    """
    from piuparts.checks.purge_status import installed_packages
    from piuparts.scenarios.runner import APT, DEBS_DIR  # the runner's own apt command line

    if not subject.apt_names and not any(deb.relations for deb in subject.debs):
        return [], {}  # nothing to depend on
    start = time.monotonic()
    base = getattr(backend, "root")
    resolution = _resolution_key(base, subject, sources)
    known = _cached_layer(backend.cache_dir, resolution)
    if known is not None:
        tree, remembered = known
        if not remembered:
            return [], {}
        log.info("Dependencies: %d packages from the cached layer %s", len(remembered), tree.parent.name)
        return [tree], {"layer": tree.parent.name, "packages": len(remembered), "reused": True,
                        "seconds": round(time.monotonic() - start, 3)}
    with backend.instance() as chroot:
        setup(chroot)
        targets = [chroot.copy_in(deb.path, DEBS_DIR) for deb in subject.debs] + list(subject.apt_names)
        dependencies = resolve(chroot, APT, targets, subject.packages)
        if dependencies:
            dependencies = _without_cycles(chroot, APT, dependencies, subject.packages)
        if dependencies == []:
            _remember(backend.cache_dir, resolution, NO_LAYER)
        if not dependencies:
            return [], {}
        assert chroot.lower is not None
        name = key(chroot.lower, dependencies)
        info: dict[str, Any] = {"layer": name, "packages": len(dependencies)}
        found = find(backend.cache_dir, name)
        if found is not None:
            _remember(backend.cache_dir, resolution, name)
            log.info("Dependencies: %d packages from the cached layer %s", len(dependencies), name)
            return [found], {**info, "reused": True, "seconds": round(time.monotonic() - start, 3)}
        debcache.fill(chroot, deb_cache, APT, targets)
        names = [dep.split("=", 1)[0] for dep in dependencies]
        result = chroot.run([*APT, "install", *names], timeout=timeout, terminal=True,
                            prompt_timeout=prompt_timeout)
        debcache.keep(chroot, deb_cache)
        if not result.ok:
            log.info("The dependencies did not install on their own; testing without a layer")
            return [], {}
        back = sorted(set(subject.packages) & {p.split(":", 1)[0] for p in installed_packages(chroot)})
        if back:  # a dependency cycle: the layer would hold the packages under test
            log.info("The dependencies pull in %s again; testing without a layer", " ".join(back))
            _remember(backend.cache_dir, resolution, NO_LAYER)
            return [], {}
        tree = store(chroot, backend.cache_dir, name, dependencies, [DEBS_DIR, debcache.ARCHIVES])
        _remember(backend.cache_dir, resolution, name)
    return [tree], {**info, "reused": False, "seconds": round(time.monotonic() - start, 3)}


@contextmanager
def held(stack: Sequence[Path]) -> Iterator[None]:
    """Hold the layers of ``stack`` (their trees) while an instance stacks them:
    a shared lock on each layer's directory, which pruning respects."""
    fds = []
    try:
        for tree in stack:
            fd = os.open(tree.parent, os.O_RDONLY | os.O_DIRECTORY)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_SH)
            if not tree.is_dir():
                raise TestbedError(f"the dependency layer {tree.parent} was removed under this run; run it again")
        yield
    finally:
        for fd in fds:
            os.close(fd)
