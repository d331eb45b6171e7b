"""Instances that are sessions of a schroot chroot (``--schroot NAME``).

schroot makes the throwaway copy: a ``type=directory`` chroot with
``union-type=overlay`` gets an overlay over its directory for each
session, so the chroot itself never changes.  Everything else is done as
for the other backends: the commands run in the session's directory, in
namespaces of the instance's own and with the same capabilities dropped
(see piuparts.backends.overlay.booted), with proc of that PID namespace, a
private devpts and /dev/shm mounted by us.  (``schroot --run-session``
would chroot with every capability kept, so it is not used to enter.)

The chroots Debian developers already have work as they are:

* ``sbuild-createchroot`` writes ``union-type=none``: a session would
  write into the chroot's directory.  Such a chroot is not used through
  schroot at all: each test gets an overlay instance of its own over the
  directory (as ``-e DIR`` does), and the directory is never written.
* Its ``profile=sbuild`` (and schroot's ``default``) bind-mount host
  directories into every session (/proc, /sys, /dev, /home, /tmp,
  /build...).  Right after the session begins, every mount its profile
  made inside it is taken away again, so the maintainer scripts, and the
  harness's own file operations, see the chroot's own (empty) directories
  there and never the host's; ``schroot -e`` finds nothing of them left to
  unmount.  ``piuparts schroot-setup NAME`` writes a chroot whose profile
  mounts nothing in the first place.

The session is written down as an undo record in the run's owned
directory before it is begun, so ``piuparts cleanup`` ends the session of
a run that was killed.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager

from piuparts import aptsources, command, resources
from piuparts.backends.base import Backend, BaseSpec, Capabilities, Option
from piuparts.backends.debootstrap import DebootstrapBackend
from piuparts.backends.existing import ExistingBackend
from piuparts.backends.overlay import booted, owned_instance_dir
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from piuparts.config import RunConfig

log = logging.getLogger("piuparts")

SCHROOT_ETC = Path("/etc/schroot")
#: The profile ``schroot-setup`` writes: nothing of the host is mounted or copied in
#: but resolv.conf; piuparts-ng mounts proc, devpts and /dev/shm itself.
PROFILE = "piuparts-ng"
PROFILE_FILES = {
    "fstab": "# piuparts-ng: nothing of the host is mounted into a session.  piuparts-ng\n"
             "# mounts proc (of the test's own PID namespace), devpts and /dev/shm itself.\n",
    "copyfiles": "# piuparts-ng: files copied from the host into a session\n/etc/resolv.conf\n",
    "nssdatabases": "# piuparts-ng: the chroot keeps its own users and groups\n",
}
#: schroot's mount directory (compiled in as /var/run/schroot/mount).
MOUNT_DIR = Path("/var/run/schroot/mount")
DEFAULT_DIRECTORY = Path("/srv/piuparts-ng/chroots")
SESSION_PREFIX = "piuparts-ng-"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
END_ATTEMPTS = 5


def _parse_info(text: str) -> dict[str, str]:
    """``schroot -i`` output as key -> value (``Filesystem Union Type`` -> ``overlay``)."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition("  ")
        if key and not key.startswith("─"):
            info.setdefault(key, value.strip())
    return info


def schroot_info(name: str) -> dict[str, str] | None:
    """What ``schroot -i -c NAME`` says, None when schroot knows no such chroot or session."""
    result = command.run(["schroot", "-i", "-c", name], timeout=60, level=logging.DEBUG)
    return _parse_info(result.output) if result.ok else None


def kernel_has(filesystem: str) -> bool:
    """True when /proc/filesystems lists ``filesystem``."""
    try:
        lines = Path("/proc/filesystems").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[-1:] == [filesystem] for line in lines)


def check_chroot(name: str) -> dict[str, str]:
    """The chroot's ``schroot -i`` data, or a one-line UsageError saying what to fix."""
    flag = f"--schroot {name}"
    if ":" in name and not name.startswith("chroot:"):
        raise UsageError(f"{flag}: give the name of a chroot, not of a session or a source chroot")
    info = schroot_info(name)
    if info is None:
        raise UsageError(f"{flag}: no such schroot chroot (schroot -l lists them; "
                         f"'piuparts schroot-setup {name}' makes one)")
    kind, union = info.get("Type", ""), union_type(info)
    if kind != "directory":
        raise UsageError(f"{flag}: a type={kind or '?'} chroot is not supported; the schroot backend needs "
                         "type=directory ('piuparts schroot-setup' makes one)")
    if union == "aufs" and not kernel_has("aufs"):
        raise UsageError(f"{flag}: union-type=aufs, but this kernel has no aufs (see /proc/filesystems); "
                         "set union-type=overlay in its entry in /etc/schroot/chroot.d/")
    if union not in ("none", "overlay", "aufs"):
        raise UsageError(f"{flag}: union-type={union} is not supported; set union-type=overlay "
                         "in its entry in /etc/schroot/chroot.d/")
    if not Path(info.get("Directory", "")).is_dir():
        raise UsageError(f"{flag}: its directory {info.get('Directory') or '(none)'} does not exist")
    return info


def union_type(info: dict[str, str]) -> str:
    """The chroot's union type as ``schroot -i`` says it (``none`` when it has none)."""
    return info.get("Filesystem Union Type", "none") or "none"


def _overlay_upper(root: Path) -> Path | None:
    """The upper directory of the overlay mounted at ``root``, if its options let it alone
    say what changed (no redirects, no metadata-only copies)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[4] != str(root) or fields[sep + 1] != "overlay":
            continue
        options = dict(o.partition("=")[::2] for o in fields[sep + 3].split(","))
        if options.get("redirect_dir") == "on" or options.get("metacopy") == "on" or "upperdir" not in options:
            log.info("The session's overlay has redirect_dir or metacopy on: taking full snapshots")
            return None
        return Path(options["upperdir"])
    return None


def _session_exists(session: str) -> bool:
    return command.run(["schroot", "-i", "-c", f"session:{session}"], timeout=60, level=logging.DEBUG).ok


def end_session(session: str) -> bool:
    """``schroot -e``, retried while it fails and the session is still there; True once it is gone."""
    for attempt in range(1, END_ATTEMPTS + 1):
        result = command.run(["schroot", "-e", "-c", session], timeout=300, level=logging.DEBUG)
        if result.ok or not _session_exists(session):
            return True
        log.info("Ending the schroot session %s failed (%s); attempt %d of %d",
                 session, result.tail(1).strip(), attempt, END_ATTEMPTS)
        time.sleep(1)
    log.warning("Could not end the schroot session %s; 'piuparts cleanup' tries again", session)
    return False


class SchrootBackend(Backend, name="schroot"):
    """Sessions of an existing schroot chroot with a union type; overlay
    instances of our own over the directory of one without."""

    capabilities = Capabilities(host_root=True, upper_dir=True)
    options = (
        Option(("--schroot",), "schroot", "this schroot's directory chroot: its sessions with "
               "union-type=overlay, else overlays of our own over it (see 'piuparts schroot-setup')",
               metavar="NAME"),
    )

    def __init__(self, spec: BaseSpec, cache_dir: Path, chroot: str = "", lists_max_age: float = 86400,
                 tmpfs_size: str | None = "50%") -> None:
        super().__init__(spec, cache_dir)
        self.chroot = chroot
        self.info: dict[str, str] = {}
        self.lists_max_age = lists_max_age
        self.tmpfs_size = tmpfs_size
        #: For a chroot without a union type: our own overlays over its directory.
        self.own: ExistingBackend | None = None
        self.fitter: ExistingBackend | None = None
        self._said_unmounted = False

    @classmethod
    def from_options(cls, spec: BaseSpec, options: RunConfig) -> SchrootBackend:
        name = cls.setting(options, "schroot")
        if not name:
            raise UsageError("the schroot backend needs --schroot NAME")
        return cls(spec, options.cache_dir, chroot=name, lists_max_age=options.lists_max_age,
                   tmpfs_size=options.tmpfs_size).isolated(options)

    @classmethod
    def unavailable(cls) -> str | None:
        if shutil.which("schroot") is None:
            return "schroot is not installed (apt-get install schroot)"
        return None

    @property
    def directory(self) -> Path:
        """The chroot's own directory (the sessions' lower layer)."""
        return Path(self.info["Directory"]).resolve()

    def _do_prepare(self) -> None:
        resources.reap(self.cache_dir / "instances")
        self.info = check_chroot(self.chroot)
        codename = aptsources.host_codename(self.directory / "etc/os-release")
        if codename and codename != self.spec.distribution:
            log.warning("The schroot chroot %s holds %s, not %s (-d)", self.chroot, codename,
                        self.spec.distribution)
        if not (self.directory / "var/lib/dpkg/status").is_file():
            raise UsageError(f"--schroot {self.chroot}: its directory {self.directory} is not a Debian system "
                             "(no var/lib/dpkg/status in it)")
        # What -e DIR does to make an instance fit for the harness (policy-rc.d, eatmydata,
        # fresh apt lists) is done in each session too: a user's chroot may lack all of it.
        self.fitter = ExistingBackend(self.spec, self.cache_dir, self.directory, self.lists_max_age,
                                      self.tmpfs_size)
        self.fitter.no_network = self.no_network
        self.fitter.prepare()
        if union_type(self.info) == "none":
            log.info("The schroot chroot %s has no union type: its sessions would write into %s. Its sessions "
                     "are not used; each test runs in an overlay instance of its own over that directory, "
                     "which is never written (as with -e %s)", self.chroot, self.directory, self.directory)
            self.own = self.fitter
            return
        log.info("Using the schroot chroot %s (%s, union-type=%s)", self.chroot, self.directory,
                 union_type(self.info))

    def _do_instance(self, layers: Sequence[Path] = ()) -> ContextManager[Chroot]:
        if self.own is not None:
            return self.own.instance(layers)
        return self._session()

    def _hide_profile_mounts(self, root: Path) -> None:
        """Take away every mount the profile made in the session (deepest first), so that
        nothing of the host shows inside; say so once."""
        mounted = sorted((m for m in resources.mounts_under(root) if m != str(root)), key=len, reverse=True)
        if not mounted:
            return
        if not self._said_unmounted:
            inside = " ".join(sorted(m[len(str(root)):] for m in mounted))
            log.info("The profile of the schroot chroot %s mounts host directories into its sessions (%s); "
                     "they are unmounted from each test's session, so maintainer scripts see the chroot's "
                     "own directories there, never the host's", self.chroot, inside)
            self._said_unmounted = True
        for target in mounted:
            command.run(["umount", "--lazy", target], error=TestbedError, what=f"unmounting {target} from the session",
                        level=logging.DEBUG)

    @contextmanager
    def _session(self) -> Iterator[Chroot]:
        start = time.monotonic()
        with owned_instance_dir(self.cache_dir) as top:
            session = SESSION_PREFIX + top.name
            with resources.signals_deferred():
                record = resources.record_undo(top, ["schroot", "-e", "-c", session],
                                               exists=["schroot", "-i", "-c", f"session:{session}"],
                                               root=MOUNT_DIR.resolve() / session)
            try:
                with resources.signals_deferred():
                    command.run(["schroot", "-b", "-c", self.chroot, "-n", session], timeout=300,
                                error=TestbedError, what=f"beginning a session of the schroot chroot {self.chroot}",
                                level=logging.DEBUG)
                info = schroot_info(f"session:{session}")
                if info is None or not info.get("Path"):
                    raise TestbedError(f"schroot began the session {session} but cannot describe it")
                root = Path(info["Path"]).resolve()
                with resources.signals_deferred():
                    self._hide_profile_mounts(root)
                upper = _overlay_upper(root) if union_type(info) == "overlay" else None
                with booted(root, upper=upper, lower=self.directory if upper else None,
                            no_network=self.no_network) as chroot:
                    assert self.fitter is not None
                    self.fitter._fit(chroot)
                    log.info("Instance %s (schroot session %s) started in %.3f s", root, session,
                             time.monotonic() - start)
                    yield chroot
            finally:
                with resources.signals_deferred():
                    if end_session(session):
                        resources.forget_undo(record)

    def describe(self) -> dict[str, str]:
        """What the report says about the base."""
        return {"backend": self.name, "schroot": self.chroot, "directory": self.info.get("Directory", ""),
                "sessions": "no (an overlay of our own: the chroot has no union type)" if self.own else "yes"}


# ---------------------------------------------------------------- schroot-setup

def setup_parser() -> argparse.ArgumentParser:
    """The parser of ``piuparts schroot-setup``."""
    p = argparse.ArgumentParser(
        prog="piuparts schroot-setup",
        description="Make a schroot chroot for 'piuparts --schroot NAME': a base built as the debootstrap "
                    f"backend builds it, copied to DIR, an /etc/schroot/chroot.d/NAME entry (type=directory, "
                    f"union-type=overlay) and the profile /etc/schroot/{PROFILE}/ that mounts nothing of the host.")
    p.add_argument("name", metavar="NAME", help="the chroot's name")
    p.add_argument("-d", "--distribution", metavar="NAME", help="codename (default: the host's)")
    p.add_argument("-m", "--mirror", metavar="'URL [COMPONENT...]'",
                   help="Debian mirror (default: the one the host's apt sources name)")
    p.add_argument("--arch", help="architecture (default: the host's)")
    p.add_argument("--directory", metavar="DIR", help=f"where the chroot goes (default: {DEFAULT_DIRECTORY}/NAME)")
    p.add_argument("--cache-dir", metavar="DIR", help="where the debootstrap base is cached "
                   "(default: piuparts' cache directory)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` by renaming a hidden file (schroot skips dot files in its directories)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def write_profile() -> Path:
    """Write the piuparts-ng schroot profile; return its directory."""
    profile = SCHROOT_ETC / PROFILE
    profile.mkdir(parents=True, exist_ok=True)
    for name, text in PROFILE_FILES.items():
        _write_atomically(profile / name, text)
    return profile


def chroot_entry(name: str, directory: Path, spec: BaseSpec) -> str:
    """The text of /etc/schroot/chroot.d/NAME."""
    return (f"[{name}]\n"
            f"description=piuparts-ng {spec.distribution}/{spec.architecture} base, made by 'piuparts schroot-setup'\n"
            "type=directory\n"
            f"directory={directory}\n"
            "union-type=overlay\n"
            f"profile={PROFILE}\n"
            "root-users=root\n")


def schroot_setup(argv: list[str]) -> int:
    """``piuparts schroot-setup NAME ...``: make a chroot the schroot backend can use."""
    from piuparts import log as logsetup
    args = setup_parser().parse_args(argv)
    logsetup.setup(args.verbose)
    if os.geteuid() != 0:
        raise UsageError("schroot-setup must run as root: it runs debootstrap and writes /etc/schroot")
    if SchrootBackend.unavailable():
        raise UsageError(f"schroot-setup: {SchrootBackend.unavailable()}")
    name = args.name
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"schroot-setup {name!r}: a chroot name is letters, digits and . _ + - "
                         "(starting with a letter or digit)")
    entry = SCHROOT_ETC / "chroot.d" / name
    if entry.exists() or schroot_info(name) is not None:
        raise UsageError(f"schroot-setup {name}: schroot already has a chroot of that name; choose "
                         f"another or remove its entry ({entry}) and its directory first")
    directory = Path(args.directory or DEFAULT_DIRECTORY / name).absolute()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"schroot-setup: {directory} already exists and is not empty; "
                         "remove it or choose another --directory")
    mirror, components = aptsources.mirror_and_components(args.mirror, ("main",))
    distribution = args.distribution
    if distribution is None or mirror is None:
        host_dist, host_mirror = aptsources.default_distribution_and_mirror(
            aptsources.read_host_sources(), aptsources.host_codename())
        distribution, mirror = distribution or host_dist, mirror or host_mirror
    spec = BaseSpec(distribution, mirror, args.arch or aptsources.host_architecture(), components)
    base = DebootstrapBackend(spec, Path(args.cache_dir or aptsources.DEFAULT_CACHE_DIR).absolute())
    try:
        base.prepare()
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        try:
            command.run(["cp", "-a", "--reflink=auto", str(base.root), str(tmp)], timeout=3600,
                        error=TestbedError, what=f"copying the base to {tmp}")
            os.rename(tmp, directory)
        except BaseException:
            with resources.signals_deferred():
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        base.close()
    profile = write_profile()
    _write_atomically(entry, chroot_entry(name, directory, spec))
    if schroot_info(name) is None:
        raise TestbedError(f"schroot does not read the entry {entry} that was just written")
    log.info("Made the schroot chroot %s: %s, entry %s, profile %s", name, directory, entry, profile)
    print(f"schroot chroot {name} is ready: piuparts --schroot {name} PACKAGE.deb", flush=True)
    return 0


Backend.subcommands["schroot-setup"] = schroot_setup
