"""A test bed that fails while a test runs: one line, exit 3, nothing left.

Mistakes in the command line and the machine's set-up are catalogued in
test_bad_input.py.
"""

from __future__ import annotations

import pytest

from tests.debs import CLEAN, DebSpec
from tests.integration.helpers import leaks, piuparts

pytestmark = [pytest.mark.root, pytest.mark.network]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_instance_out_of_space_is_a_testbed_failure(cache_dir, tmp_path):
    big = DebSpec("pp-big", files={"/usr/share/pp-big/blob": "x" * (4 * 1024 * 1024)}).build(tmp_path)
    run = piuparts(cache_dir, tmp_path, "--tmpfs-size", "2m", "--no-upgrade-test", str(big))
    assert run.returncode == 3, run.stdout + run.stderr
    line = one_error_line(run.stderr)
    assert line.startswith("piuparts: error: install: the instance ran out of space (")
    assert line.endswith("); give it more with --tmpfs-size or keep it on disk with --no-tmpfs")
    assert leaks(cache_dir) == []


def test_instance_on_disk_with_no_tmpfs(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--no-tmpfs", "--no-upgrade-test", str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert leaks(cache_dir) == []


# Prints what a network failure looks like, and fails: its own failure, not the mirror's.
LICENSE_SERVER = DebSpec("pp-license", scripts={"postinst": """\
echo "Could not connect to the license server license.example.org"
echo "Temporary failure resolving license.example.org"
exit 1"""})


def test_a_postinst_that_prints_network_errors_fails_the_package(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(LICENSE_SERVER)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.report["verdict"] == "FAIL"
    assert [f["message"] for f in run.findings("steps")] == [
        "install failed: installed pp-license package post-installation script subprocess returned error "
        "exit status 1"]
    assert "mirror or network" not in run.stdout + run.stderr
    assert leaks(cache_dir) == []
