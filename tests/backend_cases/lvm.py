"""Snapshots of an LVM volume (``--lvm-volume VG/LV``).

Only where device-mapper works and $PIUPARTS_TEST_LVM_VOLUME names a volume
that holds a base: on the CI host that is inside the VM that
tests/integration/test_lvm_vm.py boots, which sets it.  Elsewhere the case
is left out (not skipped).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from piuparts.backends.lvm import LvmBackend
from tests.backend_cases import BackendCase

ONLY_WHERE_AVAILABLE = True
VOLUME_ENV = "PIUPARTS_TEST_LVM_VOLUME"


def available() -> str | None:
    why_not = LvmBackend.unavailable()
    if why_not is None and not os.environ.get(VOLUME_ENV):
        why_not = f"${VOLUME_ENV} names no volume (tests/integration/test_lvm_vm.py sets it in its VM)"
    return why_not


def volume() -> str:
    return os.environ[VOLUME_ENV]


def snapshots() -> list[str]:
    """``VG/LV (origin ORIGIN)`` of every snapshot in the test's volume group."""
    vg = volume().split("/")[0]
    lines = subprocess.run(["lvs", "--noheadings", "-o", "lv_name,origin", vg], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    return [f"{vg}/{words[0]} (origin {words[1]})" for words in map(str.split, lines) if len(words) == 2]


def case(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BackendCase:
    return BackendCase("lvm", ["--lvm-volume", volume()], leaks=snapshots)
