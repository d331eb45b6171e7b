"""The schroot backend: sessions of a chroot made by the real ``piuparts schroot-setup``.

The suite's chroot is named after the test cache (``piuparts-ng-test-suite-HASH``)
and kept, entry and directory, between sessions; it is made again once it
is a day old (its apt lists would go stale).  It is the only entry in
/etc/schroot/chroot.d/ that the tests leave behind.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from piuparts import state
from tests.backend_cases import BackendCase
from tests.conftest import PIUPARTS

CHROOT_D = Path("/etc/schroot/chroot.d")
MAX_AGE = 86400


def available() -> str | None:
    if shutil.which("schroot") is None:
        return "schroot is not installed (apt-get install schroot)"
    return None if Path("/usr/share/debootstrap/scripts").is_dir() else "debootstrap is not installed"


def suite_chroot(cache_dir: Path) -> tuple[str, Path]:
    """The suite's schroot chroot (its name and directory), made by schroot-setup if need be."""
    name = "piuparts-ng-test-suite-" + hashlib.sha256(str(cache_dir).encode()).hexdigest()[:8]
    directory = cache_dir / "schroot" / name
    entry = CHROOT_D / name
    try:
        fresh = time.time() - entry.stat().st_mtime < MAX_AGE and (directory / "var/lib/dpkg/status").is_file()
    except OSError:
        fresh = False
    if not fresh:
        entry.unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        made = subprocess.run([*PIUPARTS, "schroot-setup", name, "--directory", str(directory),
                               "--cache-dir", str(cache_dir)],
                               capture_output=True, text=True, timeout=3600, check=False)
        assert made.returncode == 0, made.stdout + made.stderr
    return name, directory


def sessions() -> list[str]:
    """Every schroot session on the machine, one a line."""
    listed = subprocess.run(["schroot", "-l", "--all-sessions"], capture_output=True, text=True, check=True)
    return listed.stdout.split()


def case(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BackendCase:
    name, directory = suite_chroot(cache_dir)
    before = state.snapshot(directory)

    def source_unchanged() -> None:
        changes = state.diff(before, state.snapshot(directory))
        assert not changes, f"the schroot chroot's directory changed: {changes}"

    return BackendCase("schroot", ["--schroot", name], leaks=sessions, source_unchanged=source_unchanged)
