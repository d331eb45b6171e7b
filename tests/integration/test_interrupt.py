"""Ctrl-C or SIGTERM in the middle of an install: the run unwinds and leaves nothing."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from piuparts import resources
from piuparts.backends import pids
from tests.conftest import PIUPARTS
from tests.debs import SLOW_POSTINST
from tests.integration.helpers import leaks

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_install_cleans_up(cache_dir, debs, signum):
    proc = subprocess.Popen([*PIUPARTS, "--cache-dir", str(cache_dir), str(debs(SLOW_POSTINST))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "apt-get -y install" in line:
            break
    deadline = time.monotonic() + 60
    # Wait until the postinst's sleep runs inside the instance, then interrupt.
    while not any("sleep" in cmd for _, cmd in resources.processes_under(cache_dir / "instances")):
        assert time.monotonic() < deadline, "".join(seen)
        time.sleep(0.2)
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, "".join(seen) + output
    assert "piuparts: error: interrupted" in output
    assert leaks(cache_dir) == []
    assert resources.processes_under(cache_dir) == []


def test_sigkilled_run_is_reaped_by_cleanup(cache_dir, debs):
    proc = subprocess.Popen([*PIUPARTS, "--cache-dir", str(cache_dir), str(debs(SLOW_POSTINST))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any("sleep" in cmd for _, cmd in resources.processes_under(cache_dir / "instances")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert leaks(cache_dir) != []  # SIGKILL cannot be caught: the instance is still there
    cleanup = subprocess.run([*PIUPARTS, "cleanup", "--cache-dir", str(cache_dir)], capture_output=True, text=True)
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
    assert "Removed 1 leftover directory" in cleanup.stdout
    assert leaks(cache_dir) == []
    # The killed run's pids cgroup goes too (cleanup's, or the next instance's reap, whichever comes first).
    assert [g for g in pids.dead_groups() if g.name.startswith(f"{proc.pid}-")] == []
    assert resources.processes_under(cache_dir) == []
