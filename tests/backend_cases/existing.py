"""The existing backend (``-e DIR``): overlay instances over a tree that must stay unchanged.

The tree is a copy of the suite's debootstrap base made plain again: the
harness's own files (policy-rc.d, apt and dpkg settings) and eatmydata are
taken out, so the backend has to supply them in each instance.  It is kept
in the test cache and copied again once it is half a day old (before its
apt lists count as stale).  ``source_unchanged`` compares a snapshot of it
(type, mode, owner, size, link target, SHA-256 of every path) with the one
taken before the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from piuparts import resources, state
from piuparts.backends.common import HARNESS_FILES
from tests.backend_cases import BackendCase, made_once
from tests.backend_cases.tarball import debootstrap_base

MAX_AGE = 12 * 3600


def available() -> str | None:
    return None if Path("/usr/share/debootstrap/scripts").is_dir() else "debootstrap is not installed"


@made_once("plain-tree")
def plain_tree(cache_dir: Path, name: str) -> Path:
    """``CACHE/test-inputs/NAME``: a plain Debian tree, made when missing or old."""
    directory = cache_dir / "test-inputs" / name
    stamp = directory.with_name(f"{name}.made")
    if directory.is_dir() and stamp.is_file() and time.time() - stamp.stat().st_mtime < MAX_AGE:
        return directory
    partial = directory.with_name(f".{name}.{os.getpid()}")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with debootstrap_base(cache_dir) as backend:
        subprocess.run(["cp", "-a", "--one-file-system", str(backend.root), str(partial)], check=True)
    for inner in HARNESS_FILES:
        (partial / inner).unlink()
    subprocess.run(["chroot", str(partial), "dpkg", "--purge", "eatmydata", "libeatmydata1"],
                   check=True, capture_output=True)
    assert not (partial / "usr/bin/eatmydata").exists()
    if directory.exists():
        assert resources.mounts_under(directory) == [], f"{directory} is in use"
        shutil.rmtree(directory)
    os.rename(partial, directory)
    stamp.touch()
    return directory


def unchanged_check(directory: Path) -> Callable[[], None]:
    """A function that fails when ``directory`` is not as it is now."""
    before = state.snapshot(directory)

    def source_unchanged() -> None:
        changes = state.diff(before, state.snapshot(directory))
        assert not changes, f"the -e directory {directory} changed: {changes}"
    return source_unchanged


def case(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BackendCase:
    directory = plain_tree(cache_dir, "existing-tree")
    return BackendCase("existing", ["-e", str(directory)], source_unchanged=unchanged_check(directory))
