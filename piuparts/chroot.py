"""A live root filesystem the harness runs commands in.

Backends differ only by how the root comes to be and by the argv prefix
that runs a command in it (``chroot DIR``, ``schroot -r -c SESSION --``).
Whatever the backend, commands get the same clean environment: no host
variables, apt and dpkg non-interactive, and no terminal except the one
the harness gives maintainer-script steps to catch their prompts.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from piuparts import command, inroot
from piuparts.errors import PiupartsError, TestbedError

#: apt as the harness runs it inside: under eatmydata, never asking.
APT = ("eatmydata", "apt-get", "-y")
#: Where the .debs under test are copied inside an instance.
DEBS_DIR = "/tmp/piuparts-debs"

#: The environment every command in a chroot starts with.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}
#: Shown in the logged command line, so that it can be pasted as it is.
SHOWN_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
}


#: The proxy variables apt and other programs inside read.
PROXY_VARIABLES = ("http_proxy", "https_proxy")


def proxy_env(proxy: str | None = None) -> dict[str, str]:
    """The proxy settings commands inside get: the harness's own http_proxy,
    https_proxy and no_proxy (as piuparts passes them on), with ``proxy``
    (``--proxy``) for both http and https when given.  Every Chroot starts
    with them in its ``env``."""
    found = {name: os.environ[name] for name in (*PROXY_VARIABLES, "no_proxy") if os.environ.get(name)}
    if proxy:
        found.update({name: proxy for name in PROXY_VARIABLES})
    return found


@dataclass
class Chroot:
    """A running instance: where it is and how to run things in it.

    ``root`` is the host path of the root when ``host_root`` is true;
    ``upper`` and ``lower`` are the overlay's directories when the backend
    can read changes from them.
    """

    root: Path
    prefix: Sequence[str]
    host_root: bool = True
    upper: Path | None = None
    lower: Path | None = None
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Host PIDs of the backend's own processes inside (a namespace's init).
    helpers: tuple[int, ...] = ()
    #: Cached dependency layers stacked between ``base`` and ``upper``
    #: (topmost first); ``lower`` is then their read-only merged view.
    layers: tuple[Path, ...] = ()
    #: The base alone under the layers (None: no layers).
    base: Path | None = None
    #: The argv prefix that runs a host command (``mount``) in the instance's
    #: mount namespace; empty when it has none of its own.
    mounter: Sequence[str] = ()
    #: With --no-network, the prefix of the commands that may reach the
    #: network (downloads: they run no maintainer script); None otherwise.
    online_prefix: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.env = {**proxy_env(), **self.env}

    @property
    def offline(self) -> bool:
        """True when commands inside have no network but a loopback (--no-network)."""
        return self.online_prefix is not None

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        error: type[PiupartsError] | None = None,
        what: str | None = None,
        level: int | None = None,
        env: dict[str, str] | None = None,
        terminal: bool = False,
        prompt_timeout: float = 60.0,
        network: bool = False,
        stdin: bytes | None = None,
    ) -> command.Result:
        """Run ``argv`` inside; see :func:`piuparts.command.run`.  ``env`` adds
        variables; ``terminal`` runs it under a terminal that catches prompts;
        ``network`` gives it the network even with --no-network (for
        downloads, never for what runs maintainer scripts); ``stdin`` is
        what it reads."""
        shown = {**SHOWN_ENV, **self.env, **(env or {})}
        prefix = self.online_prefix if network and self.online_prefix is not None else self.prefix
        return command.run(
            [*prefix, *argv], env={**BASE_ENV, **shown}, shown_env=shown, timeout=timeout or self.timeout,
            error=error, what=what, level=logging.INFO if level is None else level, terminal=terminal,
            prompt_timeout=prompt_timeout, stdin=stdin, short=f"[{self.root}] {shlex.join(argv)}")

    def path(self, inner: str) -> Path:
        """The host path of ``inner`` (only where ``host_root``), not resolved:
        for reading trees the harness walks itself without following links;
        use the methods below (or :mod:`piuparts.inroot`) to open files."""
        assert self.host_root, "this backend's files are not visible from the host"
        return self.root / inner.lstrip("/")

    def read_text(self, inner: str) -> str:
        """The text of the regular file ``inner`` inside ("" when there is none)."""
        assert self.host_root, "this backend's files are not visible from the host"
        return inroot.read_text(self.root, inner)

    def write_text(self, inner: str, text: str, mode: int = 0o644) -> None:
        """Write ``inner`` inside as a new file (its directory made if need be)."""
        assert self.host_root, "this backend's files are not visible from the host"
        inroot.write_text(self.root, inner, text, mode)

    def remove_tree(self, inner: str) -> None:
        """``rm -rf inner`` inside; a symlink is removed, never followed."""
        assert self.host_root, "this backend's files are not visible from the host"
        inroot.remove_tree(self.root, inner)

    def bind_mount(self, source: Path, readonly: bool) -> None:
        """Mount the host directory ``source`` at the same path inside (in the
        instance's mount namespace, where it has one)."""
        inroot.makedirs(self.root, str(source))
        with inroot.directory(self.root, str(source)) as fd:
            # The directory as resolved inside, pinned: a link cannot send the mount elsewhere.
            target = os.path.realpath(f"/proc/self/fd/{fd}")
        if not target.startswith(str(self.root) + "/"):
            raise TestbedError(f"cannot bind-mount {source}: it does not resolve inside the instance")
        options = "bind,ro" if readonly else "bind"
        command.run([*self.mounter, "mount", "-o", options, str(source), target], error=TestbedError,
                    what=f"bind-mounting {source}", level=logging.DEBUG)

    def copy_in(self, source: Path, inner_dir: str) -> str:
        """Copy a host file into ``inner_dir`` (resolved inside, as the chroot
        sees it); return its path inside."""
        inner = f"{inner_dir.rstrip('/')}/{source.name}"
        inroot.copy_file(source, self.root, inner)
        return inner
