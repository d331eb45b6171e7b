"""Cached dependency layers: "base + this exact set of dependencies", read-only.

Most of a test's time goes to installing the dependencies (python3 and its
byte-compiling, for every OpenStack package), the same ones run after run.
So the dependencies are installed once in an instance of their own, and
that instance's upper directory (whiteouts and opaque directories
included) is kept as a layer that later instances stack between the base
and their own upper directory: overlayfs takes several lower layers.

A layer is named by its content (see :func:`for_subject`): a new version
of any dependency, a dependency rebuilt with the same version, a changed
source, hook or base makes a new key.  A layer is written under a
temporary name and renamed, so runs that go at once either find it whole
or build their own.  It holds no setup artefact (extra sources and their
lists, resolv.conf, bind-mount points): every run sets its own up.

A new set is built over the largest cached layer whose set it contains
(made on the same base, lists and hooks), so that only the difference is
installed: most OpenStack packages share python3 and the oslo libraries.
Such a layer is a stack (itself, then its parents, topmost first), and its
key names its parent, so a layer built over another is never taken for one
built from the base; a stack whose parent is gone is not used (pruning
removes children first, since each use of a stack touches every layer of it).

The test still removes and purges the layer's packages at its end, as
piuparts does (that is only whiteouts in the instance's upper directory),
and compares the result with the base without the layer.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Sequence

from piuparts import command, debcache, inroot, resources
from piuparts.aptplan import deb_checksums, resolve, split_cycles
from piuparts.chroot import APT, DEBS_DIR, Chroot
from piuparts.debcache import Listed
from piuparts.dpkgdb import native_architecture
from piuparts.digests import base_digests, hook_digests, lists_digests, source_digest
from piuparts.errors import TestbedError
from piuparts.log import HEADLINE

if TYPE_CHECKING:
    from piuparts.backends import Backend
    from piuparts.hooks import Hooks
    from piuparts.inputs import TestSubject
    from piuparts.state import UpperState

log = logging.getLogger("piuparts")

#: Changes whenever what a key covers or what a layer holds changes: older keys are not used
#: (3: a layer's key names what it was made on, and the layer it was built over;
#: 4: a stack records the content key of what it holds, an answer what its test fetches;
#: 5: instances name the host in /etc/hosts before the dependencies' scripts run, so netbase's
#: postinst no longer writes one without the host name into the layer;
#: 6: a layer no longer keeps apt's binary package cache).
FORMAT = 6
#: Setup artefacts a layer never keeps, whatever the install did to them.
SETUP_PATHS = ("/etc/resolv.conf", "/etc/hosts", "/etc/apt/sources.list.d/piuparts-extra.list")
#: apt's binary caches: 35 MB in every layer that kept them (a third of a night's
#: layers, most of a small one's), and apt makes them again in a third of a second
#: where they are stale (over a layer, the base's are: its package database changed).
APT_CACHES = ("/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin")
def key(material: Sequence[str]) -> str:
    """A layer's name: the digest of everything it depends on."""
    return hashlib.sha256("\n".join([f"format {FORMAT}", *material]).encode()).hexdigest()[:16]


def find(cache_dir: Path, name: str) -> list[Path] | None:
    """The stack (trees, topmost first: the layer ``name``, then the layers it was built over)
    if all of it is cached; each layer's use is recorded for pruning."""
    layers = cache_dir / "layers"
    names = [name, *_meta(layers / name).get("parents", [])]
    if not all((layers / n / "tree").is_dir() for n in names):
        return None
    for n in names:
        os.utime(layers / n)
    return [layers / n / "tree" for n in names]


def _meta(layer: Path) -> dict[str, Any]:
    try:
        data = json.loads((layer / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def by_content(cache_dir: Path, content: str) -> list[Path] | None:
    """The stack of a cached layer built over another whose whole stack holds what the
    content key ``content`` names (the same dependencies, .debs and ground), as :func:`find`."""
    layers = cache_dir / "layers"
    for layer in sorted(layers.iterdir()) if layers.is_dir() else ():
        if not layer.name.startswith(".") and _meta(layer).get("content") == content:
            stack = find(cache_dir, layer.name)
            if stack is not None:
                return stack
    return None


def parent_for(cache_dir: Path, ground: str, dependencies: Sequence[str]) -> tuple[str, list[str]] | None:
    """The cached layer made on the same ``ground`` (base, lists and hooks) whose dependency set
    is the largest one strictly inside ``dependencies``, and that set; None when there is none."""
    wanted, best = set(dependencies), None
    layers = cache_dir / "layers"
    for layer in sorted(layers.iterdir()) if layers.is_dir() else ():
        if layer.name.startswith(".") or layer.name == "resolved" or _meta(layer).get("ground") != ground:
            continue
        try:
            held_deps = (layer / "dependencies").read_text().split()
        except OSError:
            continue
        if held_deps and set(held_deps) < wanted and (best is None or len(held_deps) > len(best[1])):
            best = (layer.name, held_deps)
    return best


def store(chroot: Chroot, cache_dir: Path, name: str, dependencies: Sequence[str],
          scratch: Sequence[str], setup: "UpperState | None" = None, ground: str = "",
          parents: Sequence[str] = (), content: str = "") -> Path:
    """Keep the instance's upper directory as the layer ``name`` and return
    its tree, without the .debs in the ``scratch`` directories and without
    what the run's setup made (``setup``: the upper directory once set up):
    every run sets its own sources, resolver and mounts up.  ``ground``
    names what it was made on, ``parents`` the layers under it (topmost first),
    ``content`` the key of what the stack holds (ground, dependencies and
    their .debs, whatever it was built over: :func:`by_content`)."""
    assert chroot.upper is not None, "only overlay instances make layers"
    start = time.monotonic()
    for inner in scratch:  # the upper directory is no root: no symlink in it is followed
        for item, info in inroot.listdir(chroot.upper, inner, follow=False):
            if item.endswith(".deb"):
                inroot.unlink(chroot.upper, f"{inner}/{item}", follow=False)
    layer = cache_dir / "layers" / name
    with resources.building(layer, replace=False) as tmp:  # a run storing the same layer first wins
        command.run(["cp", "-a", "--", f"{chroot.upper}/.", str(tmp / "tree")], error=TestbedError,
                    what="keeping the dependency layer", level=logging.DEBUG)
        left_out = drop_setup(tmp / "tree", chroot.lower or chroot.root, setup)
        (tmp / "dependencies").write_text("".join(f"{dep}\n" for dep in dependencies))
        (tmp / "meta.json").write_text(json.dumps({"ground": ground, "parents": list(parents),
                                                   "content": content or name}) + "\n")
    log.info("Stored dependency layer %s in %.2f s (without %d setup paths)", name, time.monotonic() - start,
             left_out, extra=HEADLINE)
    return layer / "tree"


def drop_setup(tree: Path, lower: Path, setup: "UpperState | None") -> int:
    """Remove from a layer ``tree`` what setting the instance up made there
    and the install left as it was (``setup``: the upper directory then),
    the :data:`SETUP_PATHS` and :data:`APT_CACHES` in any case, and the directories setup made
    that are empty then; return how many paths went."""
    from piuparts.state import entry_of

    removed = 0
    for path in (*SETUP_PATHS, *APT_CACHES):
        target = tree / path.lstrip("/")
        if target.is_symlink() or target.exists():
            target.unlink()
            removed += 1
    entries = setup.entries if setup is not None else {}
    for path in sorted(entries, key=lambda p: p.count("/"), reverse=True):
        target, entry = tree / path.lstrip("/"), entries[path]
        try:
            current = entry_of(target)
        except FileNotFoundError:
            continue
        if entry is not None and entry.type == "dir":
            if not (lower / path.lstrip("/")).is_dir() and not any(target.iterdir()):
                target.rmdir()
                removed += 1
        elif current == entry or entry is None and current.type == "char":
            target.unlink()
            removed += 1
    return removed


def _resolution_key(lower: Path, subject: "TestSubject", sources: Sequence[str],
                    hooks: "Hooks | None" = None) -> str | None:
    """What apt's answer for ``subject`` depends on: the base's content and
    sources, the extra sources' content, the hooks, the subjects' relations;
    None when an extra source's content cannot be read from here."""
    extra = [source_digest(line) for line in sources]
    if any(digest is None for digest in extra):
        return None
    parts = [*base_digests(lower), *sorted(d for d in extra if d), *hook_digests(hooks)]
    parts += [f"{deb.package} {deb.architecture}\n{deb.relations}" for deb in subject.debs]
    parts += subject.apt_names
    return key(parts)


def _cached_layer(cache_dir: Path, resolution: str) -> tuple[list[Path], list[str], list[Listed] | None] | None:
    """The stack an earlier run resolved the same subject to, if it is still cached, its
    dependencies, and what the test fetches over it (see :class:`Layered`) if that was known."""
    try:
        lines = (cache_dir / "layers" / "resolved" / resolution).read_text().splitlines()
    except OSError:
        return None
    name = lines[0].strip() if lines else ""
    if name == NO_LAYER:
        return [], [], None
    stack = find(cache_dir, name) if name else None
    if stack is None:
        return None
    fetch = [(uri, file, size, digest) for uri, file, size, digest in
             (line.split(" ") for line in lines[1:] if line.count(" ") == 3)]
    return stack, (stack[0].parent / "dependencies").read_text().split(), fetch if len(lines) > 1 else None


#: What _remember writes for a subject that needs nothing besides the base.
NO_LAYER = "-"


def _remember(cache_dir: Path, resolution: str | None, name: str, fetch: Sequence[Listed] | None = None) -> None:
    """Keep apt's answer for a subject: the name of its layer and, when known, what the test
    fetches over it (one ``URI FILE SIZE HASH`` line each; those apt reads in place left out)."""
    if resolution is None:
        return  # an extra source's content is unknown here: nothing to key the answer on
    directory = cache_dir / "layers" / "resolved"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{resolution}.{os.getpid()}"
    listed = [" ".join(entry) for entry in fetch or () if entry[3] and " " not in "".join(entry)]
    tmp.write_text("".join(f"{line}\n" for line in [name, *([] if fetch is None else listed or ["-"])]))
    os.rename(tmp, directory / resolution)


class Layered(NamedTuple):
    """What :func:`for_subject` found: the ``stack`` (topmost first; empty: no layer), what
    the report says of it (``info``) and, when known, apt's listing of what the test fetches
    over it (``fetch``: the tested packages, and what needs them back), for the .deb cache."""

    stack: list[Path]
    info: dict[str, Any]
    fetch: list[Listed] | None = None


def for_subject(backend: "Backend", subject: "TestSubject", setup: Callable[[Chroot], None],
                deb_cache: Path, timeout: float, prompt_timeout: float,
                sources: Sequence[str] = (), hooks: "Hooks | None" = None,
                origins: "debcache.Origins | None" = None) -> "Layered":
    """The layers an instance for testing ``subject`` should stack (none, or
    a stack topmost first), and what the report says about them.

    In a throwaway instance (made ready by ``setup``: extra repositories,
    bind mounts; not the hooks, whose effects belong to each test) apt
    resolves the dependencies; their layer is used if cached, else built:
    over the largest cached layer whose set this one contains (only the
    difference installed, when apt would install exactly that there), else
    in that instance.  When apt cannot resolve or install them, no layer:
    the test itself then fails and says why.

    A layer is keyed by its content: the base (its package database and
    its sources' Release files), the extra sources' content, the hook
    scripts, the exact .debs it holds (names, versions and apt's
    checksums), and the layer it was built over.  apt's answer is
    remembered under the same kind of key (``sources`` being the extra apt
    sources, read from here), so the same subject again (a rebuilt .deb
    whose relations did not change) needs no instance to find its layer,
    and a repository whose content changed gets a new answer.  The layer
    keeps none of the setup's artefacts.  What the test fetches over the
    layer is remembered with the answer (:class:`Layered`).  The .debs the
    cache lacks are downloaded into it from ``origins`` (:func:`debcache.fetch`).
    """
    from piuparts.state import snapshot_upper

    if not subject.apt_names and not any(deb.relations for deb in subject.debs):
        return Layered([], {})  # nothing to depend on
    start = time.monotonic()
    base = getattr(backend, "root")
    resolution = _resolution_key(base, subject, sources, hooks)
    known = _cached_layer(backend.cache_dir, resolution) if resolution else None
    if known is not None:
        stack, remembered, fetch = known
        if not remembered:
            return Layered([], {})
        log.info("Dependencies: %d packages from the cached layer %s", len(remembered), stack[0].parent.name,
                 extra=HEADLINE)
        return Layered(stack, {"layer": stack[0].parent.name, "packages": len(remembered), "reused": True,
                               "seconds": round(time.monotonic() - start, 3)}, fetch)
    build = _Build(backend, subject, setup, deb_cache, timeout, prompt_timeout, APT, DEBS_DIR, origins)
    with backend.instance() as chroot:
        setup(chroot)
        assert chroot.upper is not None and chroot.lower is not None
        set_up = snapshot_upper(chroot.upper)
        targets = [chroot.copy_in(deb.path, DEBS_DIR) for deb in subject.debs] + list(subject.apt_names)
        build.native = native_architecture(chroot)
        resolved = resolve(chroot, APT, targets, subject.packages, build.native)
        dependencies, alone = resolved.items if resolved else None, None
        if dependencies:
            dependencies, alone = split_cycles(chroot, APT, dependencies, subject.packages, build.native)
        if dependencies == []:
            _remember(backend.cache_dir, resolution, NO_LAYER)
        names = [dep.split("=", 1)[0] for dep in dependencies or ()]
        if alone is not None and alone.items == dependencies:
            checksums = alone.checksums  # what deb_checksums would say
        else:
            checksums = deb_checksums(chroot, APT, names) if names else None
        if not dependencies or checksums is None:
            return Layered([], {})
        fetch = None if resolved is None or resolved.listed is None else \
            [*resolved.tested.values(), *(resolved.listed[i] for i in sorted(set(resolved.items) - set(dependencies)))]
        # Dependencies' scripts ran without the host's network or with it (--no-network, the
        # modes' default): the same packages can come out otherwise, so it is part of the key.
        offline = ["scripts without the host's network"] if backend.no_network else []
        ground = key([*base_digests(base), *lists_digests(chroot.path("/var/lib/apt/lists")), *hook_digests(hooks),
                      *offline])
        name = key([ground, *dependencies, *checksums])
        info: dict[str, Any] = {"layer": name, "packages": len(dependencies)}
        found = find(backend.cache_dir, name) or by_content(backend.cache_dir, name)
        if found is not None:
            _remember(backend.cache_dir, resolution, found[0].parent.name, fetch)
            log.info("Dependencies: %d packages from the cached layer %s", len(dependencies), found[0].parent.name,
                     extra=HEADLINE)
            return Layered(found, {**info, "layer": found[0].parent.name, "reused": True,
                                   "seconds": round(time.monotonic() - start, 3)}, fetch)
        parent = parent_for(backend.cache_dir, ground, dependencies)
        built: list[Path] | str = _Build.FAILED
        if parent is None:
            built = build.install(chroot, targets, set_up, name, dependencies, ground,
                                  listing=alone.listing if alone else None)  # apt's answer for just those
    if parent is not None:
        over = key([name, f"over {parent[0]}"])
        info = {**info, "layer": over, "over": parent[0], "installed": len(dependencies) - len(parent[1])}
        built = build.over(parent, over, dependencies, ground, content=name)
        if built == _Build.NOT_THERE:  # apt would do otherwise over it: from the base, as without it
            info = {"layer": name, "packages": len(dependencies)}
            with backend.instance() as chroot:
                setup(chroot)
                assert chroot.upper is not None
                set_up = snapshot_upper(chroot.upper)
                targets = [chroot.copy_in(deb.path, DEBS_DIR) for deb in subject.debs] + list(subject.apt_names)
                built = build.install(chroot, targets, set_up, name, dependencies, ground)
    if built == _Build.CYCLE:
        _remember(backend.cache_dir, resolution, NO_LAYER)
    if isinstance(built, str) or not built:
        return Layered([], {})
    _remember(backend.cache_dir, resolution, built[0].parent.name, fetch)
    return Layered(built, {**info, "reused": False, "seconds": round(time.monotonic() - start, 3)}, fetch)


class _Build:
    """Installing a dependency set and keeping it as a layer (see :func:`for_subject`)."""

    #: Outcomes without a layer: the install failed; the set pulls in a tested
    #: package again; over a parent, apt would not install exactly the difference.
    FAILED, CYCLE, NOT_THERE = "failed", "cycle", "not there"

    def __init__(self, backend: "Backend", subject: "TestSubject", setup: Callable[[Chroot], None],
                 deb_cache: Path, timeout: float, prompt_timeout: float, apt: Sequence[str], debs_dir: str,
                 origins: "debcache.Origins | None" = None) -> None:
        self.backend, self.subject, self.setup = backend, subject, setup
        self.deb_cache, self.timeout, self.prompt_timeout = deb_cache, timeout, prompt_timeout
        self.apt, self.debs_dir = list(apt), debs_dir
        self.native = ""  # the instances' architecture, once an instance told it
        #: Where the harness may download the .debs the cache lacks itself (debcache.fetch).
        self.origins = origins

    def over(self, parent: tuple[str, list[str]], name: str, dependencies: Sequence[str],
             ground: str, content: str) -> list[Path] | str:
        """The set built over the layer ``parent`` (its name and set) as the layer ``name``
        (``content``: the key of what it holds, see :func:`store`)."""
        from piuparts.state import snapshot_upper
        parent_stack = find(self.backend.cache_dir, parent[0])
        if parent_stack is None:
            return self.NOT_THERE
        names = [dep.split("=", 1)[0] for dep in dependencies]
        with held(parent_stack), self.backend.instance(parent_stack) as chroot:
            self.setup(chroot)
            assert chroot.upper is not None
            set_up = snapshot_upper(chroot.upper)
            planned = resolve(chroot, self.apt, names, (), self.native)
            if planned is None or set(planned.items) != set(dependencies) - set(parent[1]):
                log.info("Over the cached layer %s apt would not install just the %d packages more; "
                         "building the dependencies from the base", parent[0], len(dependencies) - len(parent[1]))
                return self.NOT_THERE
            log.info("Dependencies: %d packages over the cached layer %s (%d packages)",
                     len(planned.items), parent[0], len(parent[1]), extra=HEADLINE)
            built = self.install(chroot, names, set_up, name, dependencies, ground,
                                 parents=[p.parent.name for p in parent_stack], listing=planned.listing,
                                 content=content)
        return [*built, *parent_stack] if isinstance(built, list) else built

    def install(self, chroot: Chroot, targets: Sequence[str], set_up: "UpperState", name: str,
                dependencies: Sequence[str], ground: str, parents: Sequence[str] = (),
                listing: Sequence[Listed] | None = None, content: str = "") -> list[Path] | str:
        """Install ``dependencies`` in ``chroot`` and keep its upper directory as the layer ``name``
        (``targets``: what to take from the .deb cache for it, unless apt's ``listing`` for
        this instance is known already: see :class:`piuparts.aptplan.Plan`)."""
        from piuparts.dpkgdb import installed_packages
        names = [dep.split("=", 1)[0] for dep in dependencies]
        filled = debcache.fill(chroot, self.deb_cache, self.apt, targets, listing=listing, origins=self.origins)
        # With apt's own answer for installing ``names`` here all in the instance, apt downloads nothing.
        exact = listing is not None and filled.complete
        if not exact:
            debcache.download(chroot, [*self.apt, "install", *names], self.timeout)
        install = [*self.apt, "install", *names]
        result = chroot.run(install, timeout=self.timeout, terminal=True, prompt_timeout=self.prompt_timeout)
        if exact and not result.ok and debcache.NOT_FETCHED.search(result.output):
            debcache.download(chroot, install, self.timeout)  # apt wanted more after all: nothing was unpacked
            result = chroot.run(install, timeout=self.timeout, terminal=True, prompt_timeout=self.prompt_timeout)
        debcache.keep(chroot, self.deb_cache)
        if not result.ok:
            log.info("The dependencies did not install on their own; testing without a layer")
            return self.FAILED
        back = sorted(set(self.subject.packages) & {p.split(":", 1)[0] for p in installed_packages(chroot)})
        if back:  # a dependency cycle: the layer would hold the packages under test
            log.info("The dependencies pull in %s again; testing without a layer", " ".join(back))
            return self.CYCLE
        return [store(chroot, self.backend.cache_dir, name, dependencies, [self.debs_dir, debcache.ARCHIVES],
                      set_up, ground, parents, content or name)]


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
