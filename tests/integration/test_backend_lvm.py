"""What only the LVM backend does: its usage error, and the snapshot of a
SIGKILLed run, which lives outside the cache directory, removed by cleanup.

Collected only where the LVM case is available (inside the VM of
tests/integration/test_lvm_vm.py); elsewhere the module holds no tests,
so that CI, where a skip is a failure, does not see them skipped.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from piuparts import resources
from tests.backend_cases import lvm as lvm_case
from tests.conftest import PIUPARTS
from tests.debs import CLEAN, SLOW_POSTINST
from tests.integration.helpers import leaks, piuparts

__test__ = lvm_case.available() is None  # pytest collects nothing from the module otherwise

pytestmark = [pytest.mark.root]


def test_missing_volume_is_a_one_line_usage_error(cache_dir, debs, tmp_path):
    vg = lvm_case.volume().split("/")[0]
    run = piuparts(cache_dir, tmp_path, "--lvm-volume", f"{vg}/no-such-volume", str(debs(CLEAN)))
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.splitlines() == [(
        f"piuparts: error: --lvm-volume {vg}/no-such-volume: no such logical volume; make one that holds "
        f"a base with 'piuparts lvm-setup {vg}/no-such-volume'")]
    assert leaks(cache_dir) == [] and lvm_case.snapshots() == []


def test_sigkilled_run_leaves_a_snapshot_that_cleanup_removes(cache_dir, debs):
    proc = subprocess.Popen([*PIUPARTS, "--cache-dir", str(cache_dir), "--lvm-volume", lvm_case.volume(),
                             str(debs(SLOW_POSTINST))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not any("sleep 60" in cmd for _, cmd in resources.processes_under(cache_dir / "instances")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    [snapshot] = lvm_case.snapshots()  # SIGKILL cannot be caught: the snapshot is still there
    [instance] = (cache_dir / "instances").iterdir()
    vg, lv = lvm_case.volume().split("/")
    assert snapshot == f"{vg}/{lv}-piuparts-{instance.name} (origin {lv})"  # named after its instance
    cleanup = subprocess.run([*PIUPARTS, "cleanup", "--cache-dir", str(cache_dir)], capture_output=True,
                             text=True, timeout=300, check=False)
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
    assert "Removed 1 leftover directory" in cleanup.stdout
    assert lvm_case.snapshots() == []
    assert leaks(cache_dir) == []
    assert resources.processes_under(cache_dir) == []


def test_lvm_setup_without_the_volume_group_is_a_usage_error(cache_dir):
    run = subprocess.run([*PIUPARTS, "lvm-setup", "no-such-vg/base", "--cache-dir", str(cache_dir)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.splitlines() == [
        "piuparts: error: lvm-setup: no volume group no-such-vg; make one with 'vgcreate no-such-vg DEVICE'"]
