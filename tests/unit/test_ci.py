"""The pure parts of ``piuparts ci``: change detection, grouping, the notifier's arguments,
conf/distributions, the JUnit names and elements, the exit code and summary line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from piuparts.api import RunResult
from piuparts.ci import changes as ch, junit, notify
from piuparts.ci.repository import Binary, parse_distributions, parse_packages
from piuparts.ci.run import Outcome, Report
from piuparts.ci.state import FROM_NOTIFIER, OldDeb, State


def binary(name: str, version: str, source: str = "", sha: str = "") -> Binary:
    return Binary(name, version, "all", source or name, version, "main", f"pool/main/{name}_{version}_all.deb",
                  sha or f"sha-{name}-{version}")


def test_detect_new_changed_rebuilt_removed() -> None:
    tested = {"same": binary("same", "1"), "up": binary("up", "1"), "gone": binary("gone", "3"),
              "rebuilt": binary("rebuilt", "1", sha="old")}
    current = {"same": binary("same", "1"), "up": binary("up", "2"), "fresh": binary("fresh", "1"),
               "rebuilt": binary("rebuilt", "1", sha="new")}
    found = {(c.kind, c.name, c.old_version) for c in ch.detect(tested, current)}
    assert found == {("new", "fresh", None), ("changed", "up", "1"), ("rebuilt", "rebuilt", None),
                     ("removed", "gone", "3")}


def test_the_notifier_says_which_version_was_replaced() -> None:
    # 1 was tested, 2 came and went before a run, 3 replaced 2: the upgrade starts from 2
    changes = ch.detect({"p": binary("p", "1")}, {"p": binary("p", "3")}, {"p": ("3", "2")})
    assert [(c.kind, c.old_version) for c in changes] == [("changed", "2")]
    # never tested at all, but reprepro replaced a version: still an upgrade
    assert [(c.kind, c.old_version) for c in ch.detect({}, {"p": binary("p", "3")}, {"p": ("3", "2")})] == \
        [("changed", "2")]
    # an old event about a version already tested changes nothing
    assert ch.detect({"p": binary("p", "3")}, {"p": binary("p", "3")}, {"p": ("3", "2")}) == []


def test_units_per_binary_and_by_source() -> None:
    changes = ch.detect({"lib": binary("lib", "1", "src")},
                        {"lib": binary("lib", "2", "src"), "tool": binary("tool", "2", "src"),
                         "other": binary("other", "1")})
    assert [(u.name, u.version, u.upgrade) for u in ch.units(changes)] == \
        [("lib", "2", True), ("other", "1", False), ("tool", "2", False)]
    grouped = ch.units(changes, by_source=True)
    assert [(u.name, [b.name for b in u.binaries], u.upgrade) for u in grouped] == \
        [("other", ["other"], False), ("src", ["lib", "tool"], True)]


def test_notifier_arguments_as_reprepro_passes_them() -> None:
    env = {"REPREPRO_BASE_DIR": "/srv/repo", "REPREPRO_OUT_DIR": "/srv/repo"}
    event = notify.parse(["replace", "pp", "deb", "main", "amd64", "foo", "2.0", "1.0", "--",
                          "pool/main/f/foo/foo_2.0_all.deb", "--", "pool/main/f/foo/foo_1.0_all.deb"], env)
    assert (event.action, event.name, event.new_version, event.old_version) == ("replace", "foo", "2.0", "1.0")
    assert event.new_keys == ("pool/main/f/foo/foo_2.0_all.deb",)
    assert event.old_keys == ("pool/main/f/foo/foo_1.0_all.deb",)
    added = notify.parse(["add", "pp", "deb", "main", "amd64", "foo", "1.0", "--", "pool/x.deb"], env)
    assert (added.new_version, added.old_version, added.new_keys, added.old_keys) == ("1.0", None, ("pool/x.deb",), ())
    removed = notify.parse(["remove", "pp", "deb", "main", "amd64", "foo", "1.0", "--", "pool/x.deb"], env)
    assert (removed.new_version, removed.old_version, removed.old_keys) == (None, "1.0", ("pool/x.deb",))


def test_notifier_never_fails_and_records(tmp_path: Path, capsys: object, monkeypatch: object) -> None:
    assert notify.main(["--state-dir", str(tmp_path), "bogus"]) == 0
    assert not (tmp_path / "pp").exists()
    pool = tmp_path / "repo/pool"
    pool.mkdir(parents=True)
    (pool / "foo_1.0_all.deb").write_bytes(b"old")
    import os
    os.environ["REPREPRO_OUT_DIR"] = str(tmp_path / "repo")
    try:
        assert notify.main([f"--state-dir={tmp_path}/state", "replace", "pp", "deb", "main", "amd64", "foo", "2.0",
                            "1.0", "--", "pool/foo_2.0_all.deb", "--", "pool/foo_1.0_all.deb"]) == 0
    finally:
        del os.environ["REPREPRO_OUT_DIR"]
    (path, event), = State(tmp_path / "state", "pp").pending()
    assert event.kept == (str(tmp_path / "state/pp/kept/notifier/foo_1.0_all.deb"),)
    assert Path(event.kept[0]).read_bytes() == b"old"
    assert json.loads(path.read_text())["old_version"] == "1.0"


def test_conf_distributions_and_packages() -> None:
    dists = parse_distributions("Codename: a\nComponents: main contrib\nArchitectures: amd64 source\n\n"
                                "Codename: b\nComponents: main\nArchitectures: i386\nLog: x\n notify\n")
    assert dists["a"].components == ("main", "contrib") and dists["a"].architectures == ("amd64",)
    assert dists["b"].architectures == ("i386",)
    packages = parse_packages("Package: libfoo1\nVersion: 2-1\nArchitecture: amd64\nSource: foo (2)\n"
                              "Filename: pool/main/f/foo/libfoo1_2-1_amd64.deb\nSHA256: abc\n\n", "main")
    assert packages["libfoo1"].source == "foo" and packages["libfoo1"].source_version == "2"
    assert packages["libfoo1"].filename.endswith("libfoo1_2-1_amd64.deb")


def _report(*outcomes: Outcome) -> Report:
    return Report("file:///srv/repo", "bookworm-openstack", "amd64", ("main",), outcomes=list(outcomes))


def _outcome(kind: str, scenarios: list[Any], upgrade: bool = True, error: str | None = None) -> Outcome:
    change = ch.Change("changed" if upgrade else "new", "nova", binary("nova", "2:27.0-1"),
                       "2:26.0-1" if upgrade else None)
    result = RunResult(kind=kind, subject={"label": "nova_2:27.0-1", "packages": ["nova"]},
                       scenarios=scenarios, error=error)
    olds = [OldDeb("nova", "2:26.0-1", FROM_NOTIFIER, Path("/state/kept/nova.deb"))] if upgrade else []
    return Outcome(ch.Unit("nova", "2:27.0-1", (change,)), olds, result, "/state/logs/nova.log", 1)


def test_junit_names_are_stable_and_the_version_is_in_the_text() -> None:
    failing = {"name": "install-upgrade-purge", "skipped": None,
               "steps": [{"name": "upgrade", "ok": False, "message": "dpkg failed"}],
               "findings": [{"check": "steps", "severity": "fail", "subject": "upgrade",
                             "message": "nova.preinst failed", "owners": None, "blame": ["nova"]}]}
    passing: dict[str, Any] = {"name": "install-purge", "skipped": None, "steps": [], "findings": []}
    tree = junit.document(_report(_outcome("fail", [passing, failing])))
    assert list(junit.names(tree)) == [("piuparts.bookworm-openstack.amd64", "nova install-purge"),
                                       ("piuparts.bookworm-openstack.amd64", "nova install-upgrade-purge")]
    failure = tree.find(".//testcase[@name='nova install-upgrade-purge']/failure")
    assert failure is not None
    assert failure.get("message") == "nova: steps: upgrade: nova.preinst failed"
    assert "FAIL [steps] upgrade: nova.preinst failed" in (failure.text or "")
    assert "nova 2:27.0-1 (all)" in (failure.text or "")
    assert "upgraded from nova 2:26.0-1: our copy, kept by the notifier" in (failure.text or "")
    suite = tree.find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")


def test_junit_testbed_error_and_skipped() -> None:
    tree = junit.document(_report(_outcome("testbed", [], error="the mirror is unreachable")))
    errors = tree.findall(".//testcase/error")
    assert len(errors) == 2 and errors[0].get("message") == "test-bed error: the mirror is unreachable"
    skipped = {"name": "install-upgrade-purge", "skipped": "apt knows no older version of nova", "steps": [],
               "findings": []}
    tree = junit.document(_report(_outcome("pass", [{"name": "install-purge", "skipped": None, "steps": [],
                                                     "findings": []}, skipped])))
    element = tree.find(".//testcase[@name='nova install-upgrade-purge']/skipped")
    assert element is not None and element.get("message") == "apt knows no older version of nova"


def test_exit_code_and_summary_line() -> None:
    report = _report(_outcome("pass", []), _outcome("fail", []))
    assert report.exit_code() == 1
    assert report.summary() == "piuparts ci: 2 tested, 1 passed, 1 failed, 0 test-bed errors"
    report.outcomes.append(_outcome("testbed", [], error="x"))
    assert report.exit_code() == 3
    report.outcomes.append(_outcome("internal", [], error="y"))
    assert report.exit_code() == 4
    assert _report().exit_code() == 0


def test_the_report_says_what_the_upgrade_really_started_from() -> None:
    from piuparts.ci.run import upgraded_from
    ours = OldDeb("nova", "2:26.0-1", FROM_NOTIFIER, Path("/state/kept/nova.deb"))
    result = RunResult(kind="pass", subject={}, scenarios=[{"name": "install-upgrade-purge", "steps": [
        {"name": "install old", "commands": [{"argv": ["apt-get", "-y", "install", "nova=2:26.5-1"]}]}]}])
    assert upgraded_from(result, [ours]) == [OldDeb("nova", "2:26.5-1", "archive", None)]
    result.scenarios[0]["steps"][0]["commands"][0]["argv"][-1] = "nova=2:26.0-1"
    assert upgraded_from(result, [ours]) == [ours]


def test_the_notifier_loads_the_standard_library_only(tmp_path: Path) -> None:
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    probe = (f"import sys, runpy\nsys.argv = ['notify', '--state-dir', {str(tmp_path)!r}, 'add', 'pp', 'deb', 'main', "
             "'amd64', 'x', '1', '--', 'pool/x.deb']\n"
             "try:\n    runpy.run_module('piuparts.ci.notify', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('piuparts', 'debian', 'apt'))))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert proc.stdout.strip().splitlines()[-1] == "['piuparts', 'piuparts.ci']", proc.stderr  # (it ran as __main__)
    assert len(list((tmp_path / "pp/pending").glob("*.json"))) == 1
