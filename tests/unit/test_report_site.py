"""The report site from a synthetic state database: what each page kind shows.

:func:`synthetic` makes a section (a Packages file on a file:// mirror), a
database of results over several days (real rows, as the coordinator
writes them) and small logs; ``bench/report.py`` uses it with 10,000
packages.  No root, no network.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from piuparts.batch import config as config_mod, db as db_mod
from piuparts.batch.db import Database, Record
from piuparts.errors import UsageError
from piuparts.report.html import site as site_mod
from piuparts.report.html.output import MANIFEST

DAY = 86400.0
NOW = 1_780_000_000.0  # a fixed "now" (2026-05-28), so the pages do not depend on the clock
EVIL = '<script>alert("x")</script> Mallory <mallory@example.org>'


def _result_json(package: str, version: str, kind: str, started: float, leftover: str | None) -> dict[str, Any]:
    """A result as RunResult.to_json() makes it: install, remove, purge; a leftover when it failed."""
    root = "/var/cache/piuparts-ng/instances/1-abc/root"

    def step(name: str, argv: str, ok: bool = True) -> dict[str, Any]:
        return {"name": name, "ok": ok, "elapsed": 0.5, "message": "" if ok else f"{name} failed",
                "commands": [{"cmdline": f"chroot {root} {argv}", "argv": ["chroot", root, *argv.split()],
                              "returncode": 0 if ok else 1, "elapsed": 0.5, "timed_out": False}]}
    findings = [{"check": "leftovers", "severity": "fail", "subject": leftover, "message": "left behind after purge",
                 "owners": [], "blame": [package]}] if leftover else []
    verdict = {"pass": "PASS", "fail": "FAIL"}.get(kind, "ERROR")
    return {"version": 1, "verdict": verdict, "kind": kind, "exit_code": {"pass": 0, "fail": 1}.get(kind, 3),
            "error": "mirror unreachable" if kind == "testbed" else None, "subject": f"{package}={version}",
            "packages": [package], "subject_detail": {"label": f"{package}={version}", "packages": [package]},
            "distribution": "bookworm", "distributions": ["bookworm"], "mirror": "http://mirror.invalid/debian",
            "architecture": "amd64", "backend": "debootstrap",
            "base": {"backend": "debootstrap", "identity": "bookworm-amd64-0123", "age_seconds": 7200},
            "dependency_layer": {"layer": "deps-4f2a"}, "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)),
            "elapsed": 12.5, "log_file": None, "tool_version": "0.1.0", "host": "worker-1",
            "scenarios": [{"name": "install-purge", "steps": [step("install", f"apt-get -y install {package}={version}"),
                                                              step("remove", f"apt-get -y remove {package}"),
                                                              step("purge", f"dpkg --purge {package}")],
                           "findings": findings, "timings": {}, "skipped": None},
                          {"name": "install-upgrade-purge", "steps": [], "findings": [], "timings": {},
                           "skipped": "packages named with --apt are not upgraded to anything"}]}


def _packages_file(names: list[str], rng: random.Random, evil: bool) -> tuple[str, dict[str, str]]:
    """A Packages file: a source every three binaries, fifty maintainers, some dependencies."""
    paragraphs, versions = [], {}
    for i, name in enumerate(names):
        version = f"1.{i % 3}-1"
        versions[name] = version
        maintainer = EVIL if evil and i == 1 else f"Team {i % 50} <team-{i % 50}@example.org>"
        lines = [f"Package: {name}", f"Version: {version}", "Architecture: all", f"Maintainer: {maintainer}",
                 f"Source: src-{i // 3:05d}"]
        if i >= 10 and rng.random() < 0.3:
            lines.append(f"Depends: {names[rng.randrange(i)]}")
        elif i % 97 == 5:
            lines.append("Depends: no-such-package")
        description = '<b>bold</b> & <script>alert("d")</script>' if evil and i == 1 else f"package number {i}"
        lines.append(f"Description: {description}\n more text")
        paragraphs.append("\n".join(lines) + "\n")
    return "\n".join(paragraphs), versions


def synthetic(where: Path, packages: int, days: int, seed: int = 1, evil: bool = False) -> config_mod.Config:
    """A configuration whose one section ``sid`` has ``packages`` packages with results over ``days`` days."""
    rng = random.Random(seed)
    names = [f"pkg-{i:05d}" for i in range(packages)]
    text, versions = _packages_file(names, rng, evil)
    index = where / "mirror/dists/bookworm/main/binary-amd64/Packages"
    index.parent.mkdir(parents=True)
    index.write_text(text)
    conf_path = where / "batch.conf"
    conf_path.write_text(f"[global]\nsections = sid\ndb = {where}/state.sqlite\nlogs = {where}/logs\n"
                         f"cache-dir = {where}/cache\n\n[sid]\ndistro = bookworm\nmirror = file://{where}/mirror\n"
                         "arch = amd64\ndescription = Synthetic\n")
    config = config_mod.load(conf_path)
    _fill(config, names, versions, days, rng)
    return config


def _fill(config: config_mod.Config, names: list[str], versions: dict[str, str], days: int,
          rng: random.Random) -> None:
    """Results: every package tested once on a random day, some earlier with an older version
    (and the other verdict), a few test-bed errors; a run a day."""
    start = NOW - days * DAY
    insert = (f"INSERT INTO results ({', '.join(db_mod._COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(db_mod._COLUMNS))})")
    with Database(config.db) as db:
        runs = [db.start_run(1, "coordinator", "0.1.0") for _ in range(days)]
        db.conn.execute("UPDATE runs SET status = 'done'")
        for day, run_id in enumerate(runs):
            db.conn.execute("UPDATE runs SET started = ?, ended = ? WHERE id = ?",
                            (start + day * DAY, start + day * DAY + 3600, run_id))
        rows = []
        for i, name in enumerate(names):
            day = rng.randrange(days)
            kind = "fail" if rng.random() < 0.1 else "pass"
            if day > 0 and i % 4 == 0:  # an older version first, with the other verdict
                earlier = rng.randrange(day)
                rows.append((name, "0.9-1", "pass" if kind == "fail" else "fail", earlier, runs[earlier]))
            if i % 50 == 7:
                rows.append((name, versions[name], "testbed", day, runs[day]))
            rows.append((name, versions[name], kind, day, runs[day]))
        rows.sort(key=lambda r: (r[3], r[0]))
        with db.transaction():
            for n, (name, version, kind, day, run_id) in enumerate(rows):
                started = start + day * DAY + 60 + n % 3000
                leftover = f"/var/lib/{name}/<i>state</i>" if kind == "fail" else None
                log = config.logs / "sid" / kind / f"{name}_{version}_amd64.{n}.log.gz"
                log.parent.mkdir(parents=True, exist_ok=True)
                with gzip.open(log, "wt") as handle:
                    handle.write(f"0m0.0s INFO: Testing {name}\n0m1.0s DEBUG:   | noise\n"
                                 + (f"0m2.0s WARNING:   | {name}: <b>refusing</b>\n" if kind == "fail" else ""))
                record = Record("sid", name, version, "amd64", kind, {"pass": 0, "fail": 1}.get(kind, 3),
                                {"pass": "PASS", "fail": "FAIL"}.get(kind, "ERROR"), started, 12.5, "0.1.0",
                                _result_json(name, version, kind, started, leftover), run_id=run_id,
                                error="mirror unreachable" if kind == "testbed" else None,
                                problems=("unowned_files_after_purge_error",) if kind == "fail" else (),
                                worker="worker-1/w1", log_path=str(log))
                db.conn.execute(insert, record.row())


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[config_mod.Config, Path, site_mod.Written]:
    where = tmp_path_factory.mktemp("synthetic")
    config = synthetic(where, 40, 5, evil=True)
    out = where / "site"
    return config, out, site_mod.generate(config, out, now=NOW)


def test_every_page_kind_is_written(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    _, out, written = made
    for relative in ("index.html", "style.css", "summary.json", "feed.atom", "runs.html", "run/5.html",
                     "run/5.json", "run/5.junit.xml", "maintainers.html", "maintainer/t/team-0@example.org.html",
                     "source/s/src-00000.html", "sid/index.html", "sid/state/failed-testing.html",
                     "sid/problem/unowned_files_after_purge_error.html", "sid/package/p/pkg-00000.html",
                     "sid/package/p/pkg-00000.json"):
        assert (out / relative).is_file(), relative
    assert written.written > 100 and written.unchanged == 0


def test_states_pages_list_their_packages(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    _, out, _ = made
    data = json.loads((out / "summary.json").read_text())
    failed = [s for s, e in data["packages"].items() if e["overall"][0] == "F"]
    assert failed, data
    page = (out / "sid/state/failed-testing.html").read_text()
    for entry in (json.loads(p.read_text()) for p in (out / "sid/package/p").glob("*.json")):
        listed = f'sid/package/p/{entry["package"]}.html"' in page
        assert listed == (entry["state"] == "failed-testing"), entry["package"]


def test_blocked_packages_name_what_blocks_them(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    _, out, _ = made
    page = (out / "sid/state/dependency-does-not-exist.html").read_text()
    assert "no-such-package <small>(not in the section)</small>" in page  # pkg-00005 needs it


def test_a_package_page_shows_each_result_with_steps_findings_and_logs(
        made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    _, out, _ = made
    entry = json.loads((out / "sid/package/p/pkg-00000.json").read_text())
    page = (out / "sid/package/p/pkg-00000.html").read_text()
    assert len(entry["results"]) == len(re.findall(r'<details class="test"', page)) >= 1
    assert "apt-get -y install pkg-00000=1.0-1" in page and "dpkg --purge pkg-00000" in page
    assert "no upgrade tested: packages named with --apt" in page
    assert "debootstrap bookworm-amd64-0123 (built 2 h before)" in page and "worker-1/w1 on worker-1" in page
    for result in entry["results"]:
        log = out / result["log"]
        assert log.is_file() and log.with_suffix(".txt").read_text().startswith("0m0.0s INFO: Testing pkg-00000")


def test_package_strings_are_escaped(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    _, out, _ = made
    page = (out / "sid/package/p/pkg-00001.html").read_text()
    assert "<script" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Mallory" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;" in page
    failed = [p for p in (out / "sid/package/p").glob("*.html") if "/&lt;i&gt;state&lt;/i&gt;" in p.read_text()]
    assert failed and all("<i>state" not in p.read_text() for p in failed)
    assert all("<script" not in p.read_text() for p in out.rglob("*.html"))


def test_history_graph_has_a_point_a_day(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    _, out, _ = made
    index = (out / "index.html").read_text()
    lines = re.findall(r'<polyline points="([^"]+)"', index)
    assert lines and all(len(points.split()) == 6 for points in lines)  # 5 days of results and today
    assert "✓ successfully-tested" in index and "<svg" in index


def test_a_past_day_is_counted_once_and_again_when_a_late_result_lands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from piuparts.batch import states as st
    config = synthetic(tmp_path, 30, 4)
    out = tmp_path / "site"
    site_mod.generate(config, out, now=NOW, processes=1)
    first = (out / "sid/index.html").read_text()
    with Database(config.db) as db:
        kept = db.day_counts("sid")
    assert len(kept) == 4 and all(sum(counts.values()) == 30 for _, counts in kept.values())
    solved: list[int] = []
    compute = st.compute

    def counting(*args: object, **kwargs: object) -> object:
        solved.append(1)
        return compute(*args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(st, "compute", counting)
    site_mod.generate(config, out, now=NOW, processes=1)
    assert len(solved) == 1  # the section's own states (its derive), no past day solved again
    assert (out / "sid/index.html").read_text() == first
    with Database(config.db) as db:  # a result of two days ago arrives late: that day is counted again
        old = next(r for r in db.results() if r.kind == "pass")
        db.record(Record(**{**old.__dict__, "id": None, "started": NOW - 2 * DAY + 5, "kind": "fail",
                            "verdict": "FAIL", "version": old.version}))
    solved.clear()
    site_mod.generate(config, out, now=NOW, processes=1)
    assert len(solved) >= 2  # its derive, and the day the late result landed on (and those after it)
    with Database(config.db) as db:
        again = db.day_counts("sid")
    day = NOW - NOW % DAY - 2 * DAY
    assert again[day][0] != kept[day][0]


def test_feed_has_the_state_changes(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    config, out, _ = made
    verdicts: dict[str, list[str]] = {}
    versions: dict[str, list[str]] = {}
    with Database(config.db) as db:
        for record in db.results():
            if record.verdict != "ERROR":
                verdicts.setdefault(record.package, []).append(record.verdict)
                versions.setdefault(record.package, []).append(record.version)
    changed = {name for name, seen in verdicts.items() if len(set(seen)) > 1}
    uploaded = {name for name, seen in versions.items() if len(set(seen)) > 1}
    atom = "{http://www.w3.org/2005/Atom}"
    entries = ET.parse(out / "feed.atom").getroot().findall(f"{atom}entry")
    titles = [e.findtext(f"{atom}title") or "" for e in entries]
    assert titles and all(re.fullmatch(r"pkg-\d+ [\d.-]+( \(was 0\.9-1\))?: (PASS -> FAIL|FAIL -> PASS) in sid", t)
                          for t in titles)
    assert {t.split()[0] for t in titles} == changed | uploaded
    # Each of the uploads of a new version says the version it replaced.
    assert {t.split()[0] for t in titles if "(was 0.9-1)" in t} == uploaded
    links = [e.find(f"{atom}link").get("href") for e in entries]  # type: ignore[union-attr]
    assert all((out / link.split("#")[0]).is_file() for link in links)


def test_a_run_page_says_what_changed(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    _, out, _ = made
    pages = "".join((out / f"run/{n}.html").read_text() for n in range(1, 6))
    assert "upload: 0.9-1 → 1." in pages and ">new<" in pages
    junit = (out / "run/5.junit.xml").read_text()
    assert junit.startswith("<?xml") and "<testsuite " in junit


def test_generating_again_rewrites_nothing(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    config, out, _ = made
    page = out / "sid/package/p/pkg-00000.html"
    before = page.stat().st_mtime_ns
    again = site_mod.generate(config, out, now=NOW)
    assert again.written == 0 and again.unchanged > 100
    assert page.stat().st_mtime_ns == before


def test_a_new_result_rewrites_only_what_shows_it(tmp_path: Path) -> None:
    config = synthetic(tmp_path, 12, 2)
    out = tmp_path / "site"
    site_mod.generate(config, out, now=NOW)
    with Database(config.db) as db:
        old = next(r for r in db.results() if r.package == "pkg-00003")
        db.record(Record(**{**old.__dict__, "id": None, "started": NOW - 10, "kind": "fail", "verdict": "FAIL"}))
    again = site_mod.generate(config, out, now=NOW)
    assert "sid/package/p/pkg-00003.html" in again.files and "sid/package/p/pkg-00004.html" not in again.files
    assert "feed.atom" in again.files or old.kind == "fail"


def test_a_site_made_again_renders_only_the_pages_whose_inputs_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = synthetic(tmp_path, 30, 3)
    out = tmp_path / "site"
    site_mod.generate(config, out, now=NOW)
    rendered: list[str] = []
    page = site_mod.Generator.page

    def counted(self: site_mod.Generator, template: str, relative: str, *args: object, **context: object) -> None:
        rendered.append(relative)
        page(self, template, relative, *args, **context)  # type: ignore[arg-type]
    monkeypatch.setattr(site_mod.Generator, "page", counted)
    site_mod.generate(config, out, now=NOW)
    assert "sid/package/p/pkg-00003.html" not in rendered and not any("/source/" in r for r in rendered)
    assert "index.html" in rendered  # the pages about the whole site are always made
    with Database(config.db) as db:
        old = next(r for r in db.results() if r.package == "pkg-00003")
        db.record(Record(**{**old.__dict__, "id": None, "started": NOW - 10, "kind": "fail", "verdict": "FAIL",
                            "problems": ("a_new_problem",)}))
    rendered.clear()
    again = site_mod.generate(config, out, now=NOW)
    package = "sid/package/p/pkg-00003.html"
    assert package in rendered and "sid/package/p/pkg-00004.html" not in rendered
    assert package in again.files and "a_new_problem" in (out / package).read_text()
    assert "sid/state/failed-testing.html" in rendered and "sid/problem/a_new_problem.html" in again.files
    # a generation stopped half-way leaves no fingerprints: the next one renders every page
    (out / MANIFEST).unlink()
    rendered.clear()
    site_mod.generate(config, out, now=NOW)
    assert "sid/package/p/pkg-00004.html" in rendered


def test_no_database_is_a_usage_error(tmp_path: Path) -> None:
    config = synthetic(tmp_path, 3, 1)
    config.db.unlink()
    with pytest.raises(UsageError, match="no state database yet; run 'piuparts batch run"):
        site_mod.generate(config, tmp_path / "site")


def test_a_section_that_cannot_be_read_is_named_on_the_index(tmp_path: Path) -> None:
    config = synthetic(tmp_path, 5, 1)
    text = config.path.read_text().replace("sections = sid", "sections = sid gone")
    config.path.write_text(text + f"\n[gone]\ndistro = bookworm\nmirror = file://{tmp_path}/nowhere\narch = amd64\n")
    site_mod.generate(config_mod.load(config.path), tmp_path / "site", now=NOW)
    index = (tmp_path / "site/index.html").read_text()
    assert "[gone] could not be read: [gone] distro bookworm: no Packages file at file://" in index
    assert (tmp_path / "site/sid/index.html").is_file() and not (tmp_path / "site/gone").exists()


def test_several_processes_write_the_same_site(made: tuple[config_mod.Config, Path, site_mod.Written],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, serial, _ = made
    monkeypatch.setattr(site_mod, "PARALLEL_FROM", 1)
    forked = site_mod.generate(config, tmp_path / "site", now=NOW, processes=2)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(Path(f) for f in forked.files) == files
    assert all((tmp_path / "site" / f).read_bytes() == (serial / f).read_bytes() for f in [*files, MANIFEST])


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import PIUPARTS
    config = synthetic(tmp_path, 3, 1)
    (tmp_path / "a-file").write_text("")
    for args, said in (([str(tmp_path / "none.conf"), str(tmp_path / "s")], "cannot read the batch configuration"),
                       ([str(config.path), str(tmp_path / "a-file")], "not a directory")):
        proc = subprocess.run([*PIUPARTS, "report", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and said in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    proc = subprocess.run([*PIUPARTS, "report", str(config.path), str(tmp_path / "s")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("piuparts report: "), proc.stderr


def test_a_package_that_left_the_archive_loses_its_pages(tmp_path: Path) -> None:
    config = synthetic(tmp_path, 12, 2)
    out = tmp_path / "site"
    site_mod.generate(config, out, now=NOW)
    assert (out / "sid/package/p/pkg-00011.html").is_file() and list((out / "sid/log/p/pkg-00011").iterdir())
    index = tmp_path / "mirror/dists/bookworm/main/binary-amd64/Packages"
    index.write_text(index.read_text().split("Package: pkg-00011\n")[0])
    site_mod.generate(config, out, now=NOW)
    assert not (out / "sid/package/p/pkg-00011.html").exists() and not (out / "sid/package/p/pkg-00011.json").exists()
    assert not list((out / "sid/log/p/pkg-00011").iterdir())
    assert (out / "sid/package/p/pkg-00010.html").is_file() and (out / "index.html").is_file()


def test_the_upgrade_path_is_read_from_the_scenarios() -> None:
    from piuparts.report.html import data as loading
    upgrade = _result_json("foo", "2.0-1", "pass", NOW, None)
    upgrade["scenarios"][1] = {"name": "install-upgrade-purge", "skipped": None, "findings": [], "steps": [
        {"name": "install old", "ok": True, "elapsed": 1.0, "message": "",
         "commands": [{"cmdline": "chroot /r eatmydata apt-get -y install foo=1.0-1", "returncode": 0,
                       "elapsed": 1.0, "timed_out": False}]}]}
    distupgrade = {**upgrade, "distributions": ["bookworm", "trixie"],
                   "scenarios": [{"name": "distupgrade", "skipped": None, "steps": [], "findings": []}]}
    texts = [loading.test_of(Record("s", "foo", "2.0-1", "amd64", "pass", 0, "PASS", NOW, 1.0, "0.1.0", data)).details.upgrade
             for data in (upgrade, distupgrade, _result_json("foo", "2.0-1", "pass", NOW, None))]
    assert texts == ["from foo=1.0-1 (bookworm and its extra repositories)",
                     "installed in bookworm -> dist-upgraded to trixie",
                     "no upgrade tested: packages named with --apt are not upgraded to anything"]


def test_the_index_says_what_is_being_tested(tmp_path: Path) -> None:
    config = synthetic(tmp_path, 6, 1)
    with Database(config.db) as db:
        db.mark_in_flight("sid", ("pkg-00002", "1.2-1", "amd64"), 1, "worker-9/w1")
    site_mod.generate(config, tmp_path / "site", now=NOW)
    index = (tmp_path / "site/index.html").read_text()
    assert 'pkg-00002</a> 1.2-1 in sid, on worker-9/w1, since ' in index


def test_each_maintainer_has_a_feed_of_their_packages(made: tuple[config_mod.Config, Path, site_mod.Written]) -> None:
    _, out, _ = made
    atom = "{http://www.w3.org/2005/Atom}"
    whole = {e.findtext(f"{atom}title") for e in ET.parse(out / "feed.atom").getroot().iter(f"{atom}entry")}
    seen: set[str | None] = set()
    for feed in (out / "maintainer").rglob("*.atom"):
        root = ET.parse(feed).getroot()
        page = feed.with_suffix(".html").read_text()
        assert f'href="{feed.name}"' in page
        for entry in root.iter(f"{atom}entry"):
            link = entry.find(f"{atom}link").get("href")  # type: ignore[union-attr]
            package = (feed.parent / link.split("#")[0]).resolve()  # type: ignore[union-attr]
            assert package.is_file() and f"{feed.with_suffix('').name}" in package.read_text()
            seen.add(entry.findtext(f"{atom}title"))
    assert seen == whole


def test_an_upload_is_in_the_feed_even_when_its_verdict_stays() -> None:
    from piuparts.report.html.data import changes
    from piuparts.report.html.model import Test

    def test(id_: int, package: str, version: str, verdict: str) -> Test:
        return Test(id_, "team", package, version, "all", verdict.lower(), verdict, NOW + id_, 1.0, "w", 1,
                    None, (), "0.1", None)
    found = changes([test(1, "rebuilt", "1.0-1", "PASS"), test(2, "same", "2.0-1", "PASS"),
                     test(3, "rebuilt", "1.0-1+b1", "PASS"), test(4, "same", "2.0-1", "PASS"),
                     test(5, "fixed", "3.0-1", "FAIL"), test(6, "fixed", "3.0-2", "PASS")])
    assert [c.title for c in found] == ["fixed 3.0-2 (was 3.0-1): FAIL -> PASS in team",
                                        "rebuilt 1.0-1+b1 (was 1.0-1): PASS -> PASS in team"]
