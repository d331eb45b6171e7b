"""Hook scripts (``--scriptsdir DIR``), with piuparts' names and environment.

The scripts of every directory (later ones override same-named scripts of
earlier ones) are copied into ``/tmp/scripts`` in each instance and run
there, sorted, at their phase: ``post_chroot_unpack_``, ``post_setup_``,
``is_testable_``, ``pre_test_``, ``pre_install_``, ``post_install_``,
``pre_remove_``, ``post_remove_``, ``post_purge_``, ``post_test_``,
``pre_distupgrade_``, ``post_distupgrade_``.  They see
``PIUPARTS_OBJECTS`` (the tested packages), ``PIUPARTS_TEST`` (install,
upgrade), ``PIUPARTS_PHASE`` (install, upgrade) and
``PIUPARTS_DISTRIBUTION`` (with ``_PREV`` and ``_NEXT`` in dist-upgrades,
see :func:`distupgrade_env`), as with Debian's piuparts, so its hook
directories run unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from piuparts import inroot
from piuparts.chroot import Chroot
from piuparts.command import Result
from piuparts.errors import UsageError

log = logging.getLogger("piuparts")

PHASES = ("post_chroot_unpack", "post_setup", "is_testable", "pre_test", "pre_install", "post_install",
          "pre_remove", "post_remove", "post_purge", "post_test", "pre_distupgrade", "post_distupgrade")
INSIDE = "/tmp/scripts"


def collect(directories: tuple[Path, ...]) -> dict[str, Path]:
    """Script name -> host file, later directories overriding earlier ones."""
    scripts: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            raise UsageError(f"--scriptsdir {directory}: no such directory")
        for path in sorted(directory.iterdir()):
            if path.is_file() and ".dpkg-" not in path.name and path.name.startswith(tuple(PHASES)):
                scripts[path.name] = path
    return scripts


@dataclass
class Hooks:
    """The hook scripts of a run and the environment they see."""

    scripts: dict[str, Path]
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dirs(cls, directories: tuple[Path, ...], objects: list[str], distribution: str) -> "Hooks":
        """Hooks from ``--scriptsdir`` directories for testing ``objects`` on ``distribution``."""
        return cls(collect(directories), {"PIUPARTS_OBJECTS": " ".join(objects),
                                          "PIUPARTS_DISTRIBUTION": distribution})

    def install(self, chroot: Chroot) -> None:
        """Copy the scripts into the instance."""
        if not self.scripts:
            return
        for name, source in self.scripts.items():
            inroot.copy_file(source, chroot.root, f"{INSIDE}/{name}", mode=0o755)

    def run(self, chroot: Chroot, phase: str, **env: str) -> list[tuple[str, Result]]:
        """Run the scripts of ``phase`` in order; return each one's name and result."""
        assert phase in PHASES, phase
        names = sorted(n for n in self.scripts if n.startswith(phase))
        if names:
            log.info("Running %s scripts: %s", phase, " ".join(names))
        return [(name, chroot.run([f"{INSIDE}/{name}"], env={**self.env, **env})) for name in names]


def distupgrade_env(current: str, target: str, done: bool) -> dict[str, str]:
    """What the dist-upgrade hooks see of an upgrade from ``current`` to ``target``.

    Before it (``pre_distupgrade_``), PIUPARTS_DISTRIBUTION is still
    ``current`` and PIUPARTS_DISTRIBUTION_NEXT is ``target``; once ``done``
    (``post_distupgrade_``), PIUPARTS_DISTRIBUTION is ``target`` and
    PIUPARTS_DISTRIBUTION_PREV is ``current``, as piuparts documents it.
    """
    if done:
        return {"PIUPARTS_DISTRIBUTION": target, "PIUPARTS_DISTRIBUTION_PREV": current}
    return {"PIUPARTS_DISTRIBUTION": current, "PIUPARTS_DISTRIBUTION_NEXT": target}


def failures(results: list[tuple[str, Result]]) -> list[str]:
    """One line for each script that failed."""
    return [f"{name} exited with {result.returncode}" + (f": {result.tail(1).strip()}" if result.output.strip()
                                                         else "")
            for name, result in results if not result.ok]
