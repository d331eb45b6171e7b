"""The report site from a real ``piuparts batch run``: a reprepro repository of
fixture packages (clean, failing, one whose Maintainer, Description and
leftover path hold HTML), two runs (a new upload in between), the site made
by ``--report`` and by ``piuparts report``, read back as a user would: the
files, a link checker, and headless Chromium over a local HTTP server.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from piuparts import aptsources
from tests.conftest import PIUPARTS
from tests.debs import DebSpec, reprepro
from tests.integration.sitecheck import broken_links, parse

pytestmark = [pytest.mark.root, pytest.mark.network]

XSS_MAINTAINER = '<script>alert("maint")</script> Evil <evil@example.org>'
XSS_DESCRIPTION = '<script>alert("desc")</script> sneaky & <b>bold</b>'
XSS_FILE = '<img src=x onerror=alert(1)>'
FAILING = 'echo "pp-rp-fail: refusing to configure" >&2; exit 1'


def first_upload() -> list[DebSpec]:
    """The repository at the first run."""
    return [
        DebSpec("pp-rp-clean", files={"/usr/share/pp-rp-clean/data": "x\n"}),
        DebSpec("pp-rp-fail", scripts={"postinst": FAILING}, maintainer="Team <team@example.org>"),
        DebSpec("pp-rp-needs-fail", depends="pp-rp-fail", maintainer="Team <team@example.org>"),
        DebSpec("pp-rp-xss", maintainer=XSS_MAINTAINER, description=XSS_DESCRIPTION, scripts={
            "postinst": f'mkdir -p /var/lib/pp-rp-xss; echo x > "/var/lib/pp-rp-xss/{XSS_FILE}"'}),
        DebSpec("pp-rp-needs-xss", depends="pp-rp-xss"),  # never tested: its dependency failed
        DebSpec("pp-rp-needs-missing", depends="pp-rp-nowhere"),  # never tested: no such dependency
    ]


def second_upload() -> list[DebSpec]:
    """The new uploads before the second run: the failing package fixed, the clean one broken."""
    return [
        DebSpec("pp-rp-fail", version="1.0-2", maintainer="Team <team@example.org>"),
        DebSpec("pp-rp-clean", version="1.1-1", scripts={"postinst": 'echo "now broken" >&2; exit 1'}),
    ]


def write_config(where: Path, cache_dir: Path, repo_line: str) -> Path:
    """A one-section batch configuration over the repository, on the host's distribution."""
    distro, mirror = aptsources.default_distribution_and_mirror(aptsources.read_host_sources(),
                                                                aptsources.host_codename())
    path = where / "batch.conf"
    path.write_text(f"""\
[global]
sections = team
db = {where}/state/batch.sqlite
logs = {where}/logs
cache-dir = {cache_dir}
workers = 2

[team]
description = "The team's repository"
distro = {distro}
mirror = {mirror}
repository = "{repo_line}"
testbed-retry-delay = 3600
""")
    return path


def piuparts(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIUPARTS, *args], capture_output=True, text=True, timeout=timeout)


class Site:
    """The state a test reads: the configuration, the two runs' output, the site directory."""

    def __init__(self, conf: Path, out: Path, runs: list[subprocess.CompletedProcess[str]]) -> None:
        self.conf, self.out, self.runs = conf, out, runs

    def read(self, relative: str) -> str:
        return (self.out / relative).read_text()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Site:
    """Two real batch runs over the fixture repository, the second with --report."""
    where = tmp_path_factory.mktemp("report")
    debs = where / "debs"
    debs.mkdir()
    line = reprepro(where / "repo", [spec.build(debs) for spec in first_upload()])
    conf = write_config(where, cache_dir, line)
    first = piuparts("batch", "run", str(conf))
    assert first.returncode == 1, first.stdout + first.stderr
    reprepro(where / "repo", [spec.build(debs) for spec in second_upload()])
    out = where / "site"
    second = piuparts("batch", "run", str(conf), "--report", str(out))
    assert second.returncode == 1, second.stdout + second.stderr
    return Site(conf, out, [first, second])


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on 127.0.0.1 (python's http.server in a thread), ended at the end; its URL."""
    handler = functools.partial(Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[str]:
    """The site of the batch runs, served."""
    with serving(site.out) as url:
        yield url


class Quiet(http.server.SimpleHTTPRequestHandler):
    """No line on stderr per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium (a new empty profile each time); its standard output."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    proc = subprocess.run(["chromium", *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_runs_and_what_the_pages_say(site: Site) -> None:
    assert "3 tests" in site.runs[0].stdout and "3 tests" in site.runs[1].stdout, site.runs[1].stdout
    assert re.search(r"piuparts report: \d+ files written, 0 unchanged", site.runs[1].stdout), site.runs[1].stdout
    failed = site.read("team/state/failed-testing.html")
    assert "pp-rp-clean</a></td><td>1.1-1" in failed and "pp-rp-xss</a></td><td>1.0-1" in failed
    blocked = site.read("team/state/dependency-failed-testing.html")
    assert "pp-rp-needs-xss" in blocked and "pp-rp-xss</a> <small>(failed-testing, blocks 1)</small>" in blocked
    missing = site.read("team/state/dependency-does-not-exist.html")
    assert "pp-rp-nowhere <small>(not in the section)</small>" in missing
    fixed = json.loads(site.read("team/package/p/pp-rp-fail.json"))
    assert fixed["state"] == "successfully-tested"
    assert [(r["version"], r["verdict"]) for r in fixed["results"]] == [("1.0-1", "FAIL"), ("1.0-2", "PASS")]
    assert fixed["results"][0]["problems"] == ["post_installation_script_error"]
    page = site.read("team/package/p/pp-rp-fail.html")
    assert "pp-rp-fail: refusing to configure" in page  # the end of the failed version's log
    assert "eatmydata apt-get -y install pp-rp-fail=1.0-2" in page
    for result in fixed["results"]:
        assert gzip_text(site.out / result["log"]) == (site.out / result["log"]).with_suffix(".txt").read_text()
    problem = site.read("team/problem/unowned_files_after_purge_error.html")
    assert "Files owned by no package left behind after purge" in problem and "pp-rp-xss" in problem
    summary = json.loads(site.read("summary.json"))["packages"]
    assert summary["pp-rp-clean"]["team"][0] == "F" and summary["pp-rp-fail"]["team"][0] == "P"
    assert summary["pp-rp-xss"]["team"][:2] == ["F", 1]
    run = site.read("run/2.html")
    assert "upload: 1.0-1 → 1.0-2" in run and "upload: 1.0-1 → 1.1-1" in run
    team = site.read("maintainer/t/team@example.org.html")
    assert all(name in team for name in ("pp-rp-fail", "pp-rp-needs-fail"))


def gzip_text(path: Path) -> str:
    import gzip
    with gzip.open(path, "rt") as handle:
        return handle.read()


def test_the_feed_has_pass_to_fail_and_fail_to_pass(site: Site) -> None:
    import xml.etree.ElementTree as ET
    atom = "{http://www.w3.org/2005/Atom}"
    titles = [e.findtext(f"{atom}title") for e in ET.parse(site.out / "feed.atom").getroot().iter(f"{atom}entry")]
    assert sorted(titles) == ["pp-rp-clean 1.1-1 (was 1.0-1): PASS -> FAIL in team",
                              "pp-rp-fail 1.0-2 (was 1.0-1): FAIL -> PASS in team"]


def test_generating_again_rewrites_only_what_changed(site: Site, tmp_path: Path) -> None:
    from piuparts.report.html.output import MANIFEST  # the fingerprints, saved anew by each generation
    pages = {p: p.stat().st_mtime_ns for p in site.out.rglob("*") if p.is_file() and p.name != MANIFEST}
    again = piuparts("report", str(site.conf), str(site.out))
    assert again.returncode == 0, again.stderr
    written = int(re.search(r"(\d+) files written", again.stdout)[1])  # type: ignore[index]
    assert written <= 1, again.stdout  # index.html, when the minute of "last updated" changed
    changed = [p for p, mtime in pages.items() if p.stat().st_mtime_ns != mtime]
    assert changed in ([], [site.out / "index.html"])
    fresh = piuparts("report", str(site.conf), str(tmp_path / "fresh"))
    assert fresh.returncode == 0 and " 0 unchanged" in fresh.stdout, fresh.stdout + fresh.stderr
    same = [p.relative_to(site.out) for p in pages if p.name != "index.html" or p.parent != site.out]
    assert all((tmp_path / "fresh" / p).read_bytes() == (site.out / p).read_bytes() for p in same)


def test_every_link_resolves(site: Site) -> None:
    pages, broken = broken_links(site.out)
    assert pages > 20
    assert not broken, "\n".join(broken[:20])


def test_pages_have_a_language_title_headings_and_no_script(site: Site) -> None:
    for path in site.out.rglob("*.html"):
        page = parse(path.read_text())
        assert page.lang == "en" and page.title.strip() and page.headings, path
        assert page.scripts == 0 and not page.duplicates, path


def test_html_from_packages_is_shown_as_text(site: Site, server: str, tmp_path: Path) -> None:
    for relative in ("team/package/p/pp-rp-xss.html", "team/state/failed-testing.html",
                     "maintainer/e/evil@example.org.html", "team/problem/unowned_files_after_purge_error.html"):
        dom = chromium(tmp_path, "--dump-dom", server + relative)
        page = parse(dom)
        assert page.scripts == 0 and "img" not in page.tags and "onerror" not in page.attributes, relative
        text = "".join(page.text)
        assert '<script>alert("maint")</script> Evil <evil@example.org>' in text, relative
        if relative.startswith("team/package"):
            assert XSS_DESCRIPTION in text
            assert f"/var/lib/pp-rp-xss/{XSS_FILE}" in text


SHOTS = {
    "index": ("index.html", "1280,1100"),
    "section": ("team/index.html", "1280,1000"),
    "package": ("team/package/p/pp-rp-xss.html", "1280,1500"),
    "run": ("run/2.html", "1280,800"),
    "package-phone": ("team/package/p/pp-rp-fail.html", "390,1400"),
}


def test_screenshots(site: Site, server: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Screenshots of the main page kinds (kept under the test's tmp dir; with PIUPARTS_SCREENSHOTS=DIR
    also copied there, as the README's are)."""
    shots = tmp_path_factory.mktemp("screenshots")
    for name, (relative, size) in SHOTS.items():
        target = shots / f"{name}.png"
        chromium(shots, f"--window-size={size}", f"--screenshot={target}", server + relative)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000, name
    keep(shots)


def keep(shots: Path) -> None:
    """Copy the screenshots to $PIUPARTS_SCREENSHOTS, when it is set (the README's come from there)."""
    where = os.environ.get("PIUPARTS_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        for shot in shots.glob("*.png"):
            shutil.copy(shot, Path(where) / f"report-{shot.name}")


def test_screenshot_of_a_month(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The index of a synthetic section tested over four weeks: the graph has a point a day."""
    from piuparts.report.html import site as site_mod
    from tests.unit.test_report_site import NOW, synthetic
    where = tmp_path_factory.mktemp("month")
    config = synthetic(where, 300, 28, seed=3)
    site_mod.generate(config, where / "site", now=NOW)
    shots = tmp_path_factory.mktemp("month-screenshots")
    with serving(where / "site") as url:
        dom = chromium(shots, "--dump-dom", url + "index.html")
        chromium(shots, "--window-size=1100,900", f"--screenshot={shots / 'month.png'}", url + "index.html")
    assert len(re.findall(r"<polyline", dom)) >= 2 and "28" not in parse(dom).title
    assert (shots / "month.png").stat().st_size > 10_000
    keep(shots)
