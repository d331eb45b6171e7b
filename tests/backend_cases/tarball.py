"""The tarball backend (``-b TARBALL``) on a tarball our own ``-s`` code wrote
from the suite's debootstrap base.

The tarball is kept in the test cache and written again once it is a day
old.  :func:`debootstrap_base` is also how the -e cases get their tree.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from piuparts import aptsources
from piuparts.backends.base import BaseSpec
from piuparts.backends.debootstrap import DebootstrapBackend
from piuparts.options import host_architecture
from tests.backend_cases import BackendCase, made_once

MAX_AGE = 86400


def available() -> str | None:
    if shutil.which("tar") is None:
        return "tar is not installed"
    return None if Path("/usr/share/debootstrap/scripts").is_dir() else "debootstrap is not installed"


def host_spec() -> BaseSpec:
    """The base the command makes by default on this host (so the suite shares one)."""
    distribution, mirror = aptsources.default_distribution_and_mirror(
        aptsources.read_host_sources(), aptsources.host_codename())
    return BaseSpec(distribution, mirror, host_architecture(), ("main",))


@contextmanager
def debootstrap_base(cache_dir: Path) -> Iterator[DebootstrapBackend]:
    """The suite's debootstrap base, prepared, held (shared lock) while the block runs."""
    backend = DebootstrapBackend(host_spec(), cache_dir)
    try:
        backend.prepare()
        yield backend
    finally:
        backend.close()


@made_once("debootstrap-tarball")
def saved_tarball(cache_dir: Path) -> Path:
    """The debootstrap base saved by DebootstrapBackend.save (what ``-s`` runs)."""
    path = cache_dir / "test-inputs" / "debootstrap-base.tgz"
    if path.is_file() and time.time() - path.stat().st_mtime < MAX_AGE:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with debootstrap_base(cache_dir) as backend:
        backend.save(path)
    return path


def case(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BackendCase:
    return BackendCase("tarball", ["-b", str(saved_tarball(cache_dir))])
