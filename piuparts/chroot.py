"""A live root filesystem the harness runs commands in.

Backends differ only by how the root comes to be and by the argv prefix
that runs a command in it (``chroot DIR``, ``schroot -r -c SESSION --``).
Whatever the backend, commands get the same clean environment: no host
variables, apt and dpkg non-interactive, and no terminal except the one
the harness gives maintainer-script steps to catch their prompts.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from piuparts import command
from piuparts.errors import PiupartsError, TestbedError

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
    ) -> command.Result:
        """Run ``argv`` inside; see :func:`piuparts.command.run`.  ``env`` adds
        variables; ``terminal`` runs it under a terminal that catches prompts."""
        shown = {**SHOWN_ENV, **self.env, **(env or {})}
        return command.run(
            [*self.prefix, *argv], env={**BASE_ENV, **shown}, shown_env=shown, timeout=timeout or self.timeout,
            error=error, what=what, level=logging.INFO if level is None else level, terminal=terminal,
            prompt_timeout=prompt_timeout)

    def path(self, inner: str) -> Path:
        """The host path of ``inner`` (only where ``host_root``)."""
        assert self.host_root, "this backend's files are not visible from the host"
        return self.root / inner.lstrip("/")

    def bind_mount(self, source: Path, readonly: bool) -> None:
        """Mount the host directory ``source`` at the same path inside."""
        target = self.path(str(source))
        target.mkdir(parents=True, exist_ok=True)
        what = f"bind-mounting {source}"
        command.run(["mount", "--bind", str(source), str(target)], error=TestbedError, what=what,
                    level=logging.DEBUG)
        if readonly:
            command.run(["mount", "-o", "remount,bind,ro", str(target)], error=TestbedError, what=what,
                        level=logging.DEBUG)

    def copy_in(self, source: Path, inner_dir: str) -> str:
        """Copy a host file into ``inner_dir``; return its path inside."""
        target = self.path(inner_dir)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)
        return f"{inner_dir.rstrip('/')}/{source.name}"
