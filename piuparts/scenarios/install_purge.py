"""install -> remove -> purge, then compare the system with how it was before.

The tested .debs are installed through apt, so their dependencies come
from the archive (or a cached layer).  At the end everything is removed,
then the dependencies purged, then the tested packages, as in piuparts
(see :meth:`Runner.remove_and_purge`).  With ``--install-remove-install`` the
packages are installed again after the removal, with
``--install-purge-install`` after a purge, before the final remove and
purge (as in piuparts).
"""

from __future__ import annotations

from piuparts.chroot import Chroot
from piuparts.inputs import TestSubject
from piuparts.scenarios import ScenarioResult
from piuparts.scenarios.runner import Runner, Settings

NAME = "install-purge"


def run(chroot: Chroot, subject: TestSubject, settings: Settings) -> ScenarioResult:
    """Install, remove and purge ``subject`` in ``chroot``; report what changed."""
    runner = Runner(NAME, chroot, subject, settings)
    if not (runner.start() and runner.install_debs("install")):
        return runner.outcome
    runner.observe("after_install")
    if settings.install_remove_install or settings.install_purge_install:
        again_ok = runner.remove() and (not settings.install_purge_install or runner.purge())
        if not (again_ok and runner.install_debs("install again", first=False)):
            return runner.outcome
    return runner.remove_and_purge()
