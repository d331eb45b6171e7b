"""One contract, every backend: the same fixtures give the same verdicts and
findings, and nothing is left behind, whichever backend makes the chroot.

The cases live in tests/backend_cases/, one module a backend.  A backend
that cannot run on this machine is skipped with its reason (CI machines
have them all, and there a skip is a failure: see conftest.py).  The LVM
case only runs where device-mapper works: on the CI host that is inside
the VM that tests/integration/test_lvm_vm.py boots.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.backend_cases import BackendCase, modules
from tests.conftest import PIUPARTS
from tests.debs import CLEAN, LEFTOVER, NS_PROBE, SLOW_POSTINST
from tests.integration.helpers import leaks, piuparts, blame_text, owner_text

pytestmark = [pytest.mark.root, pytest.mark.network]


def _params() -> list:
    params = []
    for module in modules():
        name = module.__name__.rsplit(".", 1)[1]
        why_not = module.available()
        if why_not is not None and getattr(module, "ONLY_WHERE_AVAILABLE", False):
            continue  # run elsewhere (the LVM case runs inside a VM)
        marks = [pytest.mark.skip(reason=why_not)] if why_not and not os.environ.get("CI") else []
        params.append(pytest.param(module, id=name, marks=marks))
    return params


@pytest.fixture(scope="session", params=_params())
def case(request, cache_dir, tmp_path_factory) -> BackendCase:
    made: BackendCase = request.param.case(cache_dir, tmp_path_factory)
    return made


def _nothing_left(case: BackendCase, cache_dir: Path) -> None:
    assert leaks(cache_dir) == []
    assert case.leaks() == []
    case.source_unchanged()


def _processes(cmdline: str, ancestor: int | None = None) -> list[int]:
    """PIDs of the processes running ``cmdline`` (descendants of ``ancestor`` if given)."""
    parents: dict[int, int] = {}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip() == cmdline.encode():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    if ancestor is None:
        return found

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == ancestor:
                return True
        return False
    return [pid for pid in found if descends(pid)]


def test_clean_fixture_passes(case, cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, *case.args, str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["verdict"] == "PASS"
    assert run.report["backend"] == case.name
    assert run.findings() == []
    _nothing_left(case, cache_dir)


def test_leftover_fixture_gives_the_same_findings(case, cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, *case.args, str(debs(LEFTOVER)))
    assert run.returncode == 1, run.stdout + run.stderr
    found = sorted((f["check"], f["severity"], f["subject"], owner_text(f), blame_text(f)) for f in run.findings())
    assert found == [("leftovers", "fail", "/etc/x/", "not owned", "pp-leftover"),
                     ("leftovers", "fail", "/etc/x/generated.conf", "not owned", "pp-leftover")]
    _nothing_left(case, cache_dir)


def test_scripts_run_in_namespaces_of_their_own(case, cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "-v", "--no-upgrade-test", *case.args, str(debs(NS_PROBE)))
    assert run.returncode == 0, run.stdout + run.stderr
    inside = dict(re.findall(r"\| pp-ns (\w+) (\S+)", run.stdout + run.stderr))
    host = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "mnt", "uts", "ipc", "net")}
    assert sorted(ns for ns in host if inside.get(ns) != host[ns]) == ["ipc", "mnt", "pid", "uts"], inside
    _nothing_left(case, cache_dir)


def test_exception_inside_the_instance_leaves_nothing(case, cache_dir, debs, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "post_setup_fail").write_text("#!/bin/sh\necho 'setup refused' >&2\nexit 1\n")
    (hooks / "post_setup_fail").chmod(0o755)
    run = piuparts(cache_dir, tmp_path, *case.args, "--scriptsdir", str(hooks), str(debs(CLEAN)))
    assert run.returncode == 3, run.stdout + run.stderr
    assert "piuparts: error: a post_setup hook script failed: post_setup_fail" in run.stderr
    _nothing_left(case, cache_dir)


def test_ctrl_c_during_the_install_leaves_nothing(case, cache_dir, debs, tmp_path):
    proc = subprocess.Popen([*PIUPARTS, "--cache-dir", str(cache_dir), *case.args, str(debs(SLOW_POSTINST))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (sleepers := _processes("sleep 60", ancestor=proc.pid)):  # its postinst runs
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert "piuparts: error: interrupted" in output
    _nothing_left(case, cache_dir)
    assert [pid for pid in sleepers if Path(f"/proc/{pid}").exists()] == []
