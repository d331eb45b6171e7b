"""``piuparts ci`` end to end over a real reprepro repository that the tests make.

One repository, one state directory and one base for the module: the tests
follow the life of the repository in order (first run, nothing new, an
upload that replaces a version, ...), each asserting what the CI job would
show: the exit code, the summary line, the JUnit XML, the JSON report.
reprepro itself calls the notifier (a ``Log:`` line of conf/distributions).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PIUPARTS
from tests.debs import DebSpec
from tests.integration.helpers import leaks
from tests.integration.sitecheck import broken_links, parse

pytestmark = [pytest.mark.root, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
UPGRADE_FAILS = ('if [ "$1" = upgrade ]; then echo "pp-ci-up: refusing to upgrade from $2" >&2; exit 1; fi')

A1 = DebSpec("pp-ci-a", "1.0", files={"/usr/share/pp-ci-a/data": "1\n"})
A2 = DebSpec("pp-ci-a", "2.0", files={"/usr/share/pp-ci-a/data": "2\n"})
B1 = DebSpec("pp-ci-b", "1.0", depends="pp-ci-a")
B2 = DebSpec("pp-ci-b", "2.0", depends="pp-ci-a")
XSS_MAINTAINER = '<script>alert("ci")</script> Evil <evil@example.org>'
UP1 = DebSpec("pp-ci-up", "1.0", maintainer=XSS_MAINTAINER, description="<b>bold</b> & <i>more</i>")
UP2 = DebSpec("pp-ci-up", "2.0", scripts={"preinst": UPGRADE_FAILS})
S1 = DebSpec("pp-ci-s1", "1.0", source="pp-ci-src")
S2 = DebSpec("pp-ci-s2", "1.0", source="pp-ci-src", depends="pp-ci-s1")


@dataclass
class Env:
    """The module's repository, state directory and reports."""

    repo: Path
    state: Path
    out: Path
    cache: Path
    debs: Path

    @property
    def site(self) -> Path:
        """Where ``--html`` writes the report site."""
        return self.out / "site"

    def page(self, relative: str) -> Any:
        """A page of the site, parsed."""
        return parse((self.site / relative).read_text())

    def include(self, spec: DebSpec) -> None:
        """``reprepro includedeb`` as a team does it (the notifier runs inside)."""
        deb = spec.build(self.debs)
        subprocess.run(["reprepro", "-b", str(self.repo), "includedeb", "pp", str(deb)], check=True,
                       capture_output=True, cwd=self.repo.parent)

    def ci(self, *args: str, name: str = "run", command: tuple[str, ...] = (), state: Path | None = None) -> "Ci":
        """``piuparts ci REPO --codename pp`` (or ``command``) with its reports under out/NAME."""
        junit, report = self.out / f"{name}.xml", self.out / f"{name}.json"
        argv = list(command) or [str(self.repo), "--codename", "pp"]
        proc = subprocess.run([*PIUPARTS, "ci", *argv, "--state-dir", str(state or self.state), "--cache-dir",
                               str(self.cache), "--workers", "2", "--junit", str(junit), "--json", str(report),
                               *args], capture_output=True, text=True, timeout=900, cwd=ROOT)
        return Ci(proc, json.loads(report.read_text()) if report.exists() else {},
                  ET.parse(junit) if junit.exists() else None)

    def tested(self) -> dict[str, str]:
        """tested.json: name -> version."""
        doc = json.loads((self.state / "pp" / "tested.json").read_text())
        return {name: b["version"] for name, b in doc["arches"]["amd64"].items()}


@dataclass
class Ci:
    proc: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    junit: ET.ElementTree | None

    @property
    def summary(self) -> str:
        lines = [line for line in self.proc.stdout.splitlines() if line.startswith("piuparts ci: ")]
        return lines[-1] if lines else ""

    def cases(self) -> dict[str, ET.Element]:
        assert self.junit is not None
        return {c.get("name", ""): c for c in self.junit.iter("testcase")}

    def test(self, package: str) -> dict[str, Any]:
        found: dict[str, Any] = next(t for t in self.report["tests"] if t["package"] == package)
        return found


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Env:
    return make_env(tmp_path_factory.mktemp("ci"), cache_dir)


def make_env(top: Path, cache: Path) -> Env:
    """A reprepro repository whose Log: notifier keeps what an upload replaces, under ``top``."""
    repo, state = top / "repo", top / "state"
    (repo / "conf").mkdir(parents=True)
    (repo / "conf" / "distributions").write_text(
        "Codename: pp\nSuite: pp\nComponents: main\nArchitectures: amd64\nLog: pp.log\n piuparts-ci-notify\n")
    notifier = repo / "conf" / "piuparts-ci-notify"
    notifier.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m piuparts.ci.notify "
                        f"--state-dir {state} \"$@\"\n")
    notifier.chmod(0o755)
    (top / "debs").mkdir()
    (top / "out").mkdir()
    return Env(repo, state, top / "out", cache, top / "debs")


def test_first_run_tests_every_package(env: Env) -> None:
    for spec in (A1, B1, UP1):
        env.include(spec)
    run = env.ci("--html", str(env.site), name="first")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    assert run.summary == "piuparts ci: 3 tested, 3 passed, 0 failed, 0 test-bed errors"
    assert {(c["package"], c["kind"]) for c in run.report["changes"]} == \
        {("pp-ci-a", "new"), ("pp-ci-b", "new"), ("pp-ci-up", "new")}
    assert set(run.cases()) == {"pp-ci-a install-purge", "pp-ci-b install-purge", "pp-ci-up install-purge"}
    assert {c.get("classname") for c in run.cases().values()} == {"piuparts.pp.amd64"}
    assert env.tested() == {"pp-ci-a": "1.0", "pp-ci-b": "1.0", "pp-ci-up": "1.0"}
    assert Path(run.test("pp-ci-b")["log_file"]).name == "pp-ci-b_1.0_amd64.log"
    assert leaks(env.cache) == []
    assert run.report["run"] == 1


def test_on_a_terminal_a_bar_counts_the_tests_and_a_line_says_each_verdict(env: Env, tmp_path: Path) -> None:
    """The same repository from a state of its own, in a pseudo-terminal:
    rich's bar (tests ended of all) while it runs, gone at the end, and the
    lines of the verdicts and the summary left on the screen."""
    import pexpect
    child = pexpect.spawn(PIUPARTS[0], [*PIUPARTS[1:], "ci", str(env.repo), "--codename", "pp", "--state-dir",
                                        str(tmp_path / "state"), "--cache-dir", str(env.cache), "--workers", "2"],
                          dimensions=(40, 160), encoding="utf-8", timeout=600, cwd=ROOT,
                          env={"TERM": "xterm", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "testing" in child.before and "0/3" in child.before, child.before  # the bar, before any test ended
    lines = [line.rsplit("\x1b[2K", 1)[-1].strip("\r") for line in child.before.split("\n")]
    assert sorted(line.split(" (")[0] for line in lines if line.startswith("  PASS ")) == \
        ["  PASS pp-ci-a 1.0", "  PASS pp-ci-b 1.0", "  PASS pp-ci-up 1.0"], child.before
    assert "piuparts ci: 3 tested, 3 passed, 0 failed, 0 test-bed errors" in lines, child.before


def test_the_first_runs_site(env: Env) -> None:
    """--html: the index lists the run, its page says what changed and each verdict, links resolve."""
    index = env.page("index.html")
    assert [[r[i] for i in (0, 1, 3, 4, 5, 6)] for r in index.tables["runs"][1:]] == \
        [["1", "ci", "done", "pp (amd64): 3 new", "3", "✓ PASS 3"]]
    assert "piuparts ci: pp" in index.title
    runs = env.page("runs.html").tables["runs"][1:]
    assert [(r[0], r[1], r[4], r[6]) for r in runs] == [("1", "ci", "done", "pp (amd64): 3 new")]
    page = env.page("run/1.html")
    assert page.tables["changes"][1:] == [["new", "pp-ci-a", "1.0", "—"], ["new", "pp-ci-b", "1.0", "—"],
                                          ["new", "pp-ci-up", "1.0", "—"]]
    assert sorted((r[1], r[2], r[4]) for r in page.tables["tests"][1:]) == \
        [("pp-ci-a", "1.0", "✓ PASS"), ("pp-ci-b", "1.0", "✓ PASS"), ("pp-ci-up", "1.0", "✓ PASS")]  # as they ended
    assert {"1.json", "1.junit.xml", "1.ci.json"} <= set(page.links)
    assert (env.site / "run/1.junit.xml").read_bytes() == (env.out / "first.xml").read_bytes()
    assert json.loads((env.site / "run/1.ci.json").read_text()) == json.loads((env.out / "first.json").read_text())
    package = env.page("pp.amd64/package/p/pp-ci-a.html")
    assert "1.0" in package.title + "".join(package.text) and any(link.endswith(".log.txt") for link in package.links)
    up = env.page("pp.amd64/package/p/pp-ci-up.html")  # the maintainer's and description's HTML is text
    assert up.scripts == 0 and "i" not in up.tags and XSS_MAINTAINER in "".join(up.text)
    assert "<b>bold</b> & <i>more</i>" in "".join(up.text)
    pages, broken = broken_links(env.site)
    assert pages > 10 and not broken, "\n".join(broken[:20])


def test_nothing_new_tests_nothing(env: Env) -> None:
    run = env.ci(name="nothing")
    assert run.proc.returncode == 0, run.proc.stderr
    assert "piuparts ci: nothing new in pp (amd64): 3 packages as last tested" in run.proc.stdout
    assert run.summary == "piuparts ci: 0 tested, 0 passed, 0 failed, 0 test-bed errors"
    assert run.report["tests"] == [] and run.cases() == {}


def test_notifier_called_by_reprepro_keeps_the_replaced_deb(env: Env) -> None:
    env.include(UP2)
    assert not (env.repo / "pool/main/p/pp-ci-up/pp-ci-up_1.0_all.deb").exists()  # reprepro deleted it
    kept = env.state / "pp/kept/notifier/pp-ci-up_1.0_all.deb"
    assert kept.is_file()
    assert subprocess.run(["dpkg-deb", "-f", str(kept), "Version"], capture_output=True,
                          text=True).stdout.strip() == "1.0"
    events = [json.loads(p.read_text()) for p in (env.state / "pp/pending").glob("*.json")]
    replace = [e for e in events if e["action"] == "replace"]
    assert [(e["name"], e["new_version"], e["old_version"], e["kept"]) for e in replace] == \
        [("pp-ci-up", "2.0", "1.0", [str(kept)])]
    assert replace[0]["base_dir"] == str(env.repo)


def test_an_upgrade_that_fails_from_our_copy(env: Env) -> None:
    first = (env.site / "run/1.html").read_bytes()
    run = env.ci("--html", str(env.site), name="upfail")
    assert run.proc.returncode == 1, run.proc.stdout + run.proc.stderr
    assert run.summary == "piuparts ci: 1 tested, 0 passed, 1 failed, 0 test-bed errors"
    cases = run.cases()
    assert set(cases) == {"pp-ci-up install-purge", "pp-ci-up install-upgrade-purge"}
    assert cases["pp-ci-up install-purge"].find("failure") is None
    failure = cases["pp-ci-up install-upgrade-purge"].find("failure")
    assert failure is not None
    assert "pp-ci-up" in failure.get("message", "")
    assert "FAIL [steps] upgrade: upgrade failed: new pp-ci-up package pre-installation script subprocess " \
        "returned error exit status 1" in (failure.text or "")
    assert "pp-ci-up: refusing to upgrade from 1.0" in (failure.text or "")  # the script's own words, from the log
    assert "upgraded from pp-ci-up 1.0: our copy, kept by the notifier" in (failure.text or "")
    test = run.test("pp-ci-up")
    kept = str(env.state / "pp/kept/notifier/pp-ci-up_1.0_all.deb")
    assert test["upgrade_from"] == [{"package": "pp-ci-up", "version": "1.0", "from": "notifier", "path": kept}]
    log = Path(test["log_file"]).read_text()
    assert "pp-ci-up=1.0" in log and f"file:{env.state}/pp/upgrade-from" in log
    # a verdict was reached: 2.0 is what was tested now (its failure is recorded), the event is consumed
    assert env.tested()["pp-ci-up"] == "2.0"
    assert list((env.state / "pp/pending").glob("*.json")) == []
    assert (env.state / "pp/kept/tested/pp-ci-up_2.0_all.deb").is_file()
    # the site: a second run page (the run with nothing new is no run), the first kept as it was
    assert (env.site / "run/1.html").read_bytes() == first
    runs = env.page("runs.html").tables["runs"][1:]
    assert [(r[0], r[6]) for r in runs] == [("2", "pp (amd64): 1 upgraded"), ("1", "pp (amd64): 3 new")]
    page = env.page("run/2.html")
    assert page.tables["changes"][1:] == [["upgraded", "pp-ci-up", "2.0", "1.0"]]
    assert [(r[1], r[2], r[4]) for r in page.tables["tests"][1:]] == [("pp-ci-up", "2.0", "✗ FAIL")]
    up = json.loads((env.site / "pp.amd64/package/p/pp-ci-up.json").read_text())
    assert (up["state"], [(r["version"], r["verdict"]) for r in up["results"]]) == \
        ("failed-testing", [("1.0", "PASS"), ("2.0", "FAIL")])
    assert "pp-ci-up: refusing to upgrade from 1.0" in "".join(env.page("pp.amd64/package/p/pp-ci-up.html").text)
    pages, broken = broken_links(env.site)
    assert not broken, "\n".join(broken[:20])


def test_a_clean_upgrade_from_the_previous_runs_copy(env: Env) -> None:
    env.include(A2)
    for path in (env.state / "pp/pending").glob("*.json"):  # as if the repository had no notifier
        path.unlink()
    (env.state / "pp/kept/notifier/pp-ci-a_1.0_all.deb").unlink()
    run = env.ci(name="upclean")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    assert run.summary == "piuparts ci: 1 tested, 1 passed, 0 failed, 0 test-bed errors"
    assert set(run.cases()) == {"pp-ci-a install-purge", "pp-ci-a install-upgrade-purge"}
    assert all(c.find("failure") is None and c.find("skipped") is None for c in run.cases().values())
    (old,) = run.test("pp-ci-a")["upgrade_from"]
    assert (old["version"], old["from"]) == ("1.0", "previous-run")
    assert "our copy, kept by the previous run" in (run.cases()["pp-ci-a install-upgrade-purge"].findtext("system-out")
                                                    or "")


def test_by_source_and_a_removal(env: Env) -> None:
    env.include(S1)
    env.include(S2)
    subprocess.run(["reprepro", "-b", str(env.repo), "remove", "pp", "pp-ci-up"], check=True, capture_output=True)
    run = env.ci("--by-source", name="bysource")
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    assert run.summary == "piuparts ci: 1 tested, 1 passed, 0 failed, 0 test-bed errors"
    assert set(run.cases()) == {"pp-ci-src install-purge"}
    assert run.test("pp-ci-src")["binaries"] == ["pp-ci-s1", "pp-ci-s2"]
    assert run.test("pp-ci-src")["result"]["packages"] == ["pp-ci-s1", "pp-ci-s2"]
    assert {(c["package"], c["kind"]) for c in run.report["changes"]} == \
        {("pp-ci-s1", "new"), ("pp-ci-s2", "new"), ("pp-ci-up", "removed")}
    assert env.tested() == {"pp-ci-a": "2.0", "pp-ci-b": "1.0", "pp-ci-s1": "1.0", "pp-ci-s2": "1.0"}


@pytest.mark.parametrize("args, said", [
    (("/nonexistent/repo", "--codename", "pp"), "/nonexistent/repo: not a reprepro repository"),
    (("REPO", "--codename", "nope"), "no codename nope in conf/distributions (codenames: pp)"),
])
def test_no_such_repository_or_codename(env: Env, args: tuple[str, ...], said: str) -> None:
    argv = [str(env.repo) if a == "REPO" else a for a in args]
    proc = subprocess.run([*PIUPARTS, "ci", *argv, "--state-dir", str(env.state)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and said in proc.stderr, proc.stderr


def test_mirror_unreachable_is_a_testbed_error_then_run_pending_tests_it(env: Env) -> None:
    env.include(B2)
    run = env.ci("-m", "http://127.0.0.1:9/debian", name="nomirror")
    assert run.proc.returncode == 3, run.proc.stdout + run.proc.stderr
    assert run.summary == "piuparts ci: 1 tested, 0 passed, 0 failed, 1 test-bed errors"
    assert run.test("pp-ci-b")["result"]["kind"] == "testbed"
    assert run.test("pp-ci-b")["attempts"] == 2
    error = run.cases()["pp-ci-b install-upgrade-purge"].find("error")
    assert error is not None and "127.0.0.1:9" in error.get("message", "")
    assert env.tested()["pp-ci-b"] == "1.0"  # not the package's failure: it stays untested
    conn = sqlite3.connect(env.state / "pp/results.sqlite")
    kinds = {k for (k,) in conn.execute("SELECT kind FROM results WHERE package = 'pp-ci-b' AND version = '2.0'")}
    conn.close()
    assert kinds == {"testbed"}
    assert list((env.state / "pp/pending").glob("*.json"))  # the event waits
    # run-pending finds the codename from the notifier's events and tests it for real
    again = env.ci(name="pending", command=("run-pending",))
    assert again.proc.returncode == 0, again.proc.stdout + again.proc.stderr
    assert again.summary == "piuparts ci: 1 tested, 1 passed, 0 failed, 0 test-bed errors"
    assert env.tested()["pp-ci-b"] == "2.0"
    assert list((env.state / "pp/pending").glob("*.json")) == []
    assert leaks(env.cache) == []


def test_a_repository_given_as_an_http_url(env: Env, tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0",
                               "--directory", str(env.repo)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        assert server.stdout is not None
        port = server.stdout.readline().split("port ")[1].split()[0]
        url = f"http://127.0.0.1:{port}"
        state = tmp_path / "state"
        run = env.ci(name="url", command=(url, "--codename", "pp"), state=state)
        assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
        assert run.summary == "piuparts ci: 4 tested, 4 passed, 0 failed, 0 test-bed errors"
        assert run.report["repository"] == url
        assert sorted(p.name for p in (state / "pp/downloads").iterdir()) == \
            ["pp-ci-a_2.0_all.deb", "pp-ci-b_2.0_all.deb", "pp-ci-s1_1.0_all.deb", "pp-ci-s2_1.0_all.deb"]
        nope = env.ci(name="url-nope", command=(url, "--codename", "nope"), state=state)
        assert nope.proc.returncode == 2
        assert nope.proc.stderr.strip() == f"piuparts: error: {url}: no codename nope (no dists/nope/Release); " \
            "check --codename"
    finally:
        server.terminate()
        server.wait(10)


def test_ctrl_c_lets_the_running_test_finish_and_starts_nothing_new(env: Env) -> None:
    import signal
    import time
    env.include(DebSpec("pp-ci-slow", "1.0", scripts={"postinst": "sleep 8"}))
    env.include(DebSpec("pp-ci-z", "1.0"))
    junit = env.out / "ctrl-c.xml"
    proc = subprocess.Popen([*PIUPARTS, "ci", str(env.repo), "--codename", "pp", "--state-dir", str(env.state),
                             "--cache-dir", str(env.cache), "--workers", "1", "--junit", str(junit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    db = env.state / "pp/results.sqlite"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait for the first test to be handed to the worker
        conn = sqlite3.connect(db)
        running = conn.execute("SELECT package FROM in_flight").fetchall()
        conn.close()
        if running:
            break
        time.sleep(0.2)
    assert running == [("pp-ci-slow",)]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout + stderr
    assert "Ctrl-C: no new tests" in stdout
    assert stdout.splitlines()[-1] == \
        "piuparts ci: 1 tested, 1 passed, 0 failed, 0 test-bed errors, 1 not run (interrupted)"
    tested = env.tested()
    assert tested["pp-ci-slow"] == "1.0" and "pp-ci-z" not in tested  # z waits for the next run
    cases = {c.get("name"): c for c in ET.parse(junit).iter("testcase")}
    skipped = cases["pp-ci-z install-purge"].find("skipped")
    assert skipped is not None and skipped.get("message") == "not tested: the run was stopped before it"
    assert leaks(env.cache) == []
