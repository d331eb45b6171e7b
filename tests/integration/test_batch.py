"""``piuparts batch`` end to end: a reprepro repository of fixture packages
tested on top of the host's distribution, real tests through the real api.

One cache (and base) for all, two workers; each test has a repository and a
database of its own so they do not depend on each other's order.
"""

from __future__ import annotations

import gzip
import json
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from piuparts import aptsources
from tests.conftest import PIUPARTS
from tests.debs import DebSpec, reprepro
from tests.integration.helpers import leaks

pytestmark = [pytest.mark.root, pytest.mark.network]

FAILING = 'echo "pp-bt-fail: refusing to configure" >&2; exit 1'


def specs() -> list[DebSpec]:
    """The packages of the main repository."""
    return [
        DebSpec("pp-bt-clean", files={"/usr/share/pp-bt-clean/data": "x\n"}),
        DebSpec("pp-bt-fail", scripts={"postinst": FAILING}),
        DebSpec("pp-bt-needs-fail", depends="pp-bt-fail"),
        DebSpec("pp-bt-needs-missing", depends="pp-bt-nowhere"),
        DebSpec("pp-bt-top", depends="pp-bt-mid"),
        DebSpec("pp-bt-mid", depends="pp-bt-base"),
        DebSpec("pp-bt-base"),
        DebSpec("pp-bt-cyc-a", depends="pp-bt-cyc-b"),
        DebSpec("pp-bt-cyc-b", depends="pp-bt-cyc-a"),
    ]


@pytest.fixture(scope="module")
def host() -> tuple[str, str]:
    """The host's distribution and mirror, as the tests' base uses them."""
    return aptsources.default_distribution_and_mirror(aptsources.read_host_sources(), aptsources.host_codename())


def write_config(tmp_path: Path, cache_dir: Path, host: tuple[str, str], repo_line: str,
                 flags: str = "", name: str = "batch.conf", extra: str = "") -> Path:
    distro, mirror = host
    path = tmp_path / name
    path.write_text(f"""\
[global]
sections = team
db = {tmp_path}/state/batch.sqlite
logs = {tmp_path}/logs
cache-dir = {cache_dir}
workers = 2

[team]
distro = {distro}
mirror = {mirror}
repository = "{repo_line}"
piuparts-flags = {flags}
testbed-retry-delay = 3600
{extra}
""")
    return path


def batch(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIUPARTS, "batch", *args], capture_output=True, text=True, timeout=timeout)


def status(conf: Path) -> dict[str, Any]:
    proc = batch("status", str(conf), "--json")
    assert proc.returncode == 0, proc.stderr
    packages: dict[str, Any] = json.loads(proc.stdout)["sections"]["team"]["packages"]
    return packages


def rows(db: Path, query: str = "SELECT * FROM results ORDER BY id") -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(query).fetchall()
    except sqlite3.OperationalError as err:  # the coordinator has not made its tables yet
        if "no such table" in str(err):
            return []
        raise
    finally:
        conn.close()


def test_states_order_history_and_new_upload(tmp_path: Path, cache_dir: Path, host: tuple[str, str]) -> None:
    debs = [spec.build(tmp_path) for spec in specs()]
    line = reprepro(tmp_path / "repo", debs)
    known = tmp_path / "known_problems"
    known.mkdir()
    (known / "refuses_to_configure_error.conf").write_text(
        "PATTERN='refusing to configure'\nWHERE='fail'\nHEADER='Packages that refuse'\n")
    conf = write_config(tmp_path, cache_dir, host, line, extra=f"known-problem-directory = {known}")
    db = tmp_path / "state/batch.sqlite"

    first = batch("run", str(conf))
    assert first.returncode == 1, first.stdout + first.stderr  # a package failed
    assert "piuparts batch: 7 tests" in first.stdout and "6 passed, 1 failed" in first.stdout
    states = status(conf)
    assert {name: (p["state"], p["blocked_by"]) for name, p in states.items()} == {
        "pp-bt-base": ("successfully-tested", []), "pp-bt-mid": ("successfully-tested", []),
        "pp-bt-top": ("successfully-tested", []), "pp-bt-clean": ("successfully-tested", []),
        "pp-bt-cyc-a": ("successfully-tested", []), "pp-bt-cyc-b": ("successfully-tested", []),
        "pp-bt-fail": ("failed-testing", []),
        "pp-bt-needs-fail": ("dependency-failed-testing", ["pp-bt-fail"]),
        "pp-bt-needs-missing": ("dependency-does-not-exist", ["pp-bt-nowhere"]),
    }
    assert states["pp-bt-fail"]["problems"] == ["post_installation_script_error", "refuses_to_configure_error"]
    assert states["pp-bt-clean"]["version"] == "1.0-1"

    results = {r["package"]: r for r in rows(db)}
    assert "pp-bt-needs-fail" not in results and "pp-bt-needs-missing" not in results  # never run
    # the chain: each dependency tested (and its result in) before what needs it started
    for lower, upper in (("pp-bt-base", "pp-bt-mid"), ("pp-bt-mid", "pp-bt-top")):
        assert results[lower]["started"] + results[lower]["duration"] <= results[upper]["started"] + 0.01
    fail = results["pp-bt-fail"]
    assert (fail["kind"], fail["exit_code"], fail["verdict"]) == ("fail", 1, "FAIL")
    with gzip.open(fail["log_path"], "rt") as log:
        assert "pp-bt-fail: refusing to configure" in log.read()
    assert json.loads(fail["result_json"])["kind"] == "fail" and "--extra-repo" in json.loads(fail["flags"])
    assert fail["worker"].endswith(("/w1", "/w2")) and fail["tool_version"]
    assert fail["base_age"] is not None and fail["base_age"] >= 0
    text = batch("status", str(conf))
    assert "failed-testing     pp-bt-fail 1.0-1: post_installation_script_error" in text.stdout

    summary = json.loads((tmp_path / "logs/summary.json").read_text())
    assert summary["packages"]["pp-bt-fail"]["team"][:2] == ["F", 1]
    assert summary["packages"]["pp-bt-needs-fail"]["overall"][0] == "X"
    assert summary["packages"]["pp-bt-clean"]["overall"][0] == "P"

    newer = DebSpec("pp-bt-clean", "1.0-2", files={"/usr/share/pp-bt-clean/data": "y\n"}).build(tmp_path)
    reprepro(tmp_path / "repo", [newer])
    second = batch("run", str(conf))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "piuparts batch: 1 tests" in second.stdout
    clean = [(r["version"], r["kind"]) for r in rows(db) if r["package"] == "pp-bt-clean"]
    assert clean == [("1.0-1", "pass"), ("1.0-2", "pass")]  # the old result kept as history
    assert status(conf)["pp-bt-clean"] == {"version": "1.0-2", "state": "successfully-tested",
                                           "problems": [], "blocked_by": []}

    third = batch("run", str(conf))
    assert third.returncode == 0 and "piuparts batch: 0 tests" in third.stdout

    asked = batch("reschedule", str(conf), "--state", "failed-testing")
    assert asked.returncode == 0 and "1 packages will be tested again" in asked.stdout
    fourth = batch("run", str(conf))
    assert fourth.returncode == 1 and "piuparts batch: 1 tests" in fourth.stdout
    assert [r["kind"] for r in rows(db) if r["package"] == "pp-bt-fail"] == ["fail", "fail"]
    assert batch("run", str(conf)).returncode == 0  # the request was answered
    assert leaks(cache_dir) == []


def test_testbed_failure_is_retried_never_failed(tmp_path: Path, cache_dir: Path, host: tuple[str, str]) -> None:
    line = reprepro(tmp_path / "repo", [DebSpec("pp-bt-tb").build(tmp_path)])
    down = write_config(tmp_path, cache_dir, host, line, flags="--extra-repo 'deb [trusted=yes] http://127.0.0.1:9/ ./'")
    first = batch("run", str(down))
    assert first.returncode == 3, first.stdout + first.stderr
    assert "1 test-bed errors (retried later)" in first.stdout
    assert status(down)["pp-bt-tb"]["state"] == "waiting-to-be-tested"
    up = write_config(tmp_path, cache_dir, host, line)
    second = batch("run", str(up))
    assert second.returncode == 0, second.stdout + second.stderr
    db = tmp_path / "state/batch.sqlite"
    assert [(r["kind"], r["exit_code"]) for r in rows(db)] == [("testbed", 3), ("pass", 0)]
    assert "127.0.0.1:9" in rows(db)[0]["error"]
    assert status(up)["pp-bt-tb"]["state"] == "successfully-tested"

    unreachable = write_config(tmp_path, cache_dir, ("bookworm", "http://127.0.0.1:9/debian"), line, name="down.conf")
    third = batch("run", str(unreachable))
    assert third.returncode == 3, third.stdout + third.stderr
    assert "[team] is not tested in this run: cannot read http://127.0.0.1:9/debian/dists/bookworm/main/" \
        in third.stdout
    assert "piuparts batch: 0 tests" in third.stdout and len(rows(db)) == 2  # nothing recorded


def _workers_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"piuparts.batch.worker" in argv and str(pid).encode() in argv:
            found.append(int(entry.name))
    return found


def _wait_for(what: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(message)


def test_kill_9_loses_nothing_and_tests_nothing_twice(tmp_path: Path, cache_dir: Path,
                                                      host: tuple[str, str]) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    slow = DebSpec("pp-bt-slow", scripts={"postinst": f"i=0; while [ ! -e {gate}/go ] && [ $i -lt 600 ]; "
                                                      "do sleep 0.2; i=$((i+1)); done"})
    line = reprepro(tmp_path / "repo", [slow.build(tmp_path), DebSpec("pp-bt-quick").build(tmp_path)])
    conf = write_config(tmp_path, cache_dir, host, line, flags=f"--bindmount {gate}")
    db = tmp_path / "state/batch.sqlite"
    coordinator = subprocess.Popen([*PIUPARTS, "batch", "run", str(conf)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: db.exists() and rows(db, "SELECT * FROM results WHERE package = 'pp-bt-quick'"), 300,
                  "pp-bt-quick was never recorded")
        assert [r["package"] for r in rows(db, "SELECT * FROM in_flight")] == ["pp-bt-slow"]
        second = batch("run", str(conf), timeout=60)
        assert second.returncode == 2
        assert second.stderr.strip() == (f"piuparts: error: {db}: another piuparts batch run (PID "
                                         f"{coordinator.pid}) is using this database; wait for it to end, "
                                         "or stop it first")
        workers = _workers_of(coordinator.pid)
        assert len(workers) == 2
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(30)
        _wait_for(lambda: not any(Path(f"/proc/{w}").exists() for w in workers), 120,
                  "the workers outlived their coordinator")
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
        coordinator.communicate()
    assert leaks(cache_dir) == []
    (gate / "go").touch()
    again = batch("run", str(conf))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 tests left in flight by a run that died wait again: team/pp-bt-slow" in again.stdout
    assert sorted((r["package"], r["kind"]) for r in rows(db)) == [("pp-bt-quick", "pass"), ("pp-bt-slow", "pass")]
    assert [r["status"] for r in rows(db, "SELECT status FROM runs ORDER BY id")] == ["killed", "done"]
    assert rows(db, "SELECT * FROM in_flight") == []


def test_ctrl_c_once_finishes_running_twice_and_sigterm_stop_them(tmp_path: Path, cache_dir: Path,
                                                        host: tuple[str, str]) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    wait = f"i=0; while [ ! -e {gate}/go ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done"
    debs = [DebSpec("pp-bt-gate-a", scripts={"postinst": wait}).build(tmp_path),
            DebSpec("pp-bt-gate-b", scripts={"postinst": wait}).build(tmp_path),
            DebSpec("pp-bt-z-later").build(tmp_path)]
    line = reprepro(tmp_path / "repo", debs)
    for phase, presses in (("once", 1), ("twice", 2), ("sigterm", 0)):
        home = tmp_path / phase
        home.mkdir()
        conf = write_config(home, cache_dir, host, line, flags=f"--bindmount {gate}")
        db = home / "state/batch.sqlite"
        (gate / "go").unlink(missing_ok=True)
        coordinator = subprocess.Popen([*PIUPARTS, "batch", "run", str(conf)], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
        try:
            _wait_for(lambda: db.exists() and len(rows(db, "SELECT * FROM in_flight")) == 2, 300,
                      "the two gated packages never ran together")
            workers = _workers_of(coordinator.pid)
            for _ in range(presses):
                coordinator.send_signal(signal.SIGINT)
                time.sleep(0.5)
            if presses == 0:
                coordinator.send_signal(signal.SIGTERM)
            if presses == 1:
                (gate / "go").touch()
            output, _ = coordinator.communicate(timeout=180)
        finally:
            if coordinator.poll() is None:
                coordinator.kill()
                coordinator.communicate()
        assert coordinator.returncode == (143 if presses == 0 else 130), output
        recorded = sorted(r["package"] for r in rows(db))
        if presses == 0:
            assert recorded == [] and "piuparts: error: interrupted by signal 15" in output
        elif presses == 1:
            assert "Ctrl-C: no new tests; the 2 running finish and are recorded" in output
            assert recorded == ["pp-bt-gate-a", "pp-bt-gate-b"]  # pp-bt-z-later never started
        else:
            assert "Ctrl-C again: stopping the 2 running tests" in output
            assert recorded == [] and "2 stopped (waiting again)" in output
        assert rows(db, "SELECT * FROM in_flight") == []
        assert [r["status"] for r in rows(db, "SELECT status FROM runs")] == ["interrupted"]
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
        assert leaks(cache_dir) == []


def test_maintainer_scripts_reach_no_host_service_unless_the_section_says_so(tmp_path: Path, cache_dir: Path,
                                                                             host: tuple[str, str]) -> None:
    # A service on the coordinator's loopback (its broker, a repository's web
    # server): a batch run's scripts do not reach it by default; a section
    # with --scripts-network in its piuparts-flags gives them the host's network.
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0)
        port = server.getsockname()[1]
        probe = DebSpec("pp-bt-caller", scripts={"postinst": f"""\
if [ "$1" = configure ]; then
    perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr => "127.0.0.1:{port}", Timeout => 5) and
        die "pp-bt-caller: reached the host\\n"'
fi"""})
        line = reprepro(tmp_path / "repo", [probe.build(tmp_path)])
        isolated = write_config(tmp_path, cache_dir, host, line)
        first = batch("run", str(isolated))
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody called
        (tmp_path / "open").mkdir()
        networked = write_config(tmp_path / "open", cache_dir, host, line, flags="--scripts-network")
        second = batch("run", str(networked))
        called, _ = server.accept()
        called.close()
    assert first.returncode == 0, first.stdout + first.stderr
    assert status(isolated)["pp-bt-caller"]["state"] == "successfully-tested"
    assert second.returncode == 1, second.stdout + second.stderr
    assert status(networked)["pp-bt-caller"]["state"] == "failed-testing"
    logs = "".join(gzip.open(p, "rt").read() for p in (tmp_path / "open/logs/team/fail").glob("pp-bt-caller_*.log.gz"))
    assert "pp-bt-caller: reached the host" in logs
    assert leaks(cache_dir) == []
