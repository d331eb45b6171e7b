"""piuparts-ng where Debian runs piuparts, with the clients' own command lines:
debusine's (a base tarball without /dev, a post_chroot_unpack script that
adds apt sources), salsa-ci's (-e CHROOT), jenkins-debian-glue's wrapper and
TAP converter, and a piuparts.debian.org slave's (-b, --apt pkg=ver, -m,
--proxy through a real proxy on 127.0.0.1).

The four share one base tarball (made once from the cached debootstrap
base, everything under /dev left out) and one cache.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from piuparts import cli
from tests.debs import CLEAN, FAILING_POSTINST, LEFTOVER, DebSpec
from tests.integration.helpers import leaks, piuparts, serve, serve_directory

pytestmark = [pytest.mark.root, pytest.mark.network]

WORKTREE = Path(__file__).resolve().parents[2]
EXTRA_DEP = DebSpec("pp-dropin-extra", files={"/usr/share/pp-dropin-extra/data": "extra\n"})
NEEDS_EXTRA = DebSpec("pp-dropin-needs-extra", depends="pp-dropin-extra")


@pytest.fixture(scope="module")
def nodev_tarball(cache_dir: Path, base_root: Path) -> Path:
    """A plain tarball of the base with everything under /dev removed, as
    debusine makes them; kept in the cache for that base generation (the
    others' removed)."""
    name = hashlib.sha256(str(base_root).encode()).hexdigest()[:16]
    tarball = cache_dir / f"dropin-base-nodev-{name}.tar"
    if tarball.exists():
        return tarball
    for old in [*cache_dir.glob("dropin-base-nodev*.tar")]:
        old.unlink()
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "--create", f"--file={partial}", f"--directory={base_root}", "--numeric-owner",
                    "--exclude=./dev/*", "--exclude=./proc/*", "."], check=True)
    os.rename(partial, tarball)
    return tarball


class _Forwarder(http.server.BaseHTTPRequestHandler):
    """A plain HTTP proxy (no CONNECT): forwards GET and HEAD for absolute URLs
    and records them in ``server.seen``."""

    def do_GET(self) -> None:
        self._forward(body=True)

    def do_HEAD(self) -> None:
        self._forward(body=False)

    def _forward(self, body: bool) -> None:
        url = urlsplit(self.path)
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        upstream = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=120)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("proxy-connection", "connection", "keep-alive")}
        upstream.request(self.command, url.path + (f"?{url.query}" if url.query else ""), headers=headers)
        response = upstream.getresponse()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in ("connection", "keep-alive", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            shutil.copyfileobj(response, self.wfile)
        upstream.close()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def extra_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A flat apt repository over HTTP on 127.0.0.1 holding pp-dropin-extra:
    the apt source line that names it."""
    repo = tmp_path_factory.mktemp("extra-repo")
    EXTRA_DEP.build(repo)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=repo, check=True,
                              capture_output=True, text=True).stdout
    (repo / "Packages").write_text(packages)
    digest = hashlib.sha256(packages.encode()).hexdigest()
    (repo / "Release").write_text(f"Origin: pp-dropin\nLabel: pp-dropin\nSuite: ./\n"
                                  f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
                                  f"SHA256:\n {digest} {len(packages.encode())} Packages\n")

    with serve_directory(repo) as server:
        yield f"deb [trusted=yes] http://127.0.0.1:{server.server_address[1]}/ ./"


@pytest.fixture()
def proxy() -> Iterator[http.server.ThreadingHTTPServer]:
    """A real HTTP proxy on 127.0.0.1 that records what went through it."""
    with serve(_Forwarder) as server:
        yield server


def _scriptsdir(tmp_path: Path, scripts: dict[str, str]) -> Path:
    directory = tmp_path / "scripts"
    directory.mkdir()
    for name, body in scripts.items():
        (directory / name).write_text("#!/bin/sh\nset -e\n" + body + "\n")
        (directory / name).chmod(0o755)
    return directory


def test_debusine_command_line_hook_and_base_without_dev(cache_dir, tmp_path, debs, nodev_tarball, extra_repo):
    """debusine's exact command line: its post_chroot_unpack script's apt sources
    are used (apt-get update runs after it), on a base tarball without /dev."""
    url = extra_repo.split()[2]  # the hook as debusine writes it: a deb822 source, then DONE
    scripts = _scriptsdir(tmp_path, {"post_chroot_unpack_debusine": (
        f"printf %s 'Types: deb\nURIs: {url}\nSuites: ./\nTrusted: yes\n' "
        "> /etc/apt/sources.list.d/extra_repository_0.sources\necho DONE")})
    run = piuparts(cache_dir, tmp_path, "--keep-sources-list", "--allow-database", "--warn-on-leftovers-after-purge",
                   f"--basetgz={nodev_tarball}", f"--scriptsdir={scripts}", str(debs(NEEDS_EXTRA)),
                   str(debs(LEFTOVER)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert run.report["verdict"] == "PASS"
    installed = [c["argv"] for s in run.report["scenarios"] for step in s["steps"] for c in step["commands"]
                 if step["name"] == "install dependencies"]
    assert any("pp-dropin-extra" in argv for argv in installed)  # only the hook's apt source has it
    assert sorted((f["severity"], f["subject"]) for f in run.findings("leftovers")) == [
        ("warn", "/etc/x/"), ("warn", "/etc/x/generated.conf")]
    base = Path(run.report["base"]["base"]) / run.report["base"]["generation"] / "root"
    assert sorted(p.name for p in (base / "dev").iterdir()) == []  # the nodes were made in the instances only
    assert leaks(cache_dir) == []


def test_salsa_ci_command_line(cache_dir, tmp_path, debs, base_root):
    """salsa-ci's piuparts job: -e CHROOT, which stays as it was."""
    scripts = _scriptsdir(tmp_path, {"post_setup_salsa": "touch /var/tmp/salsa-was-here"})
    before = sorted(os.listdir(base_root / "var/tmp")), sorted(os.listdir(base_root / "etc"))
    run = piuparts(cache_dir, tmp_path, "-e", str(base_root), "--keep-sources-list", "--allow-database",
                   "--warn-on-leftovers-after-purge", "--scriptsdir", str(scripts), str(debs(LEFTOVER)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert run.report["backend"] == "existing"
    assert [f["severity"] for f in run.findings("leftovers")] == ["warn", "warn"]
    assert (sorted(os.listdir(base_root / "var/tmp")), sorted(os.listdir(base_root / "etc"))) == before
    assert leaks(cache_dir) == []


def _jenkins(cache_dir: Path, tmp_path: Path, deb: Path,
             debian_scripts: bool = False) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """jdg-piuparts-wrapper with ours as ``piuparts`` on PATH, then jdg-tap-piuparts on its log;
    with ``debian_scripts``, the wrapper's default hooks (Debian's /etc/piuparts/scripts)."""
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "piuparts").write_text(f"#!/bin/sh\nPYTHONPATH={WORKTREE} exec {sys.executable} -m piuparts "
                                    f"--cache-dir {cache_dir} \"$@\"\n")
    (shims / "piuparts").chmod(0o755)
    work = tmp_path / "job"
    work.mkdir()
    (tmp_path / "no-scripts").mkdir()
    env = {"PATH": f"{shims}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "SKIP_BASE_TGZ": "1",
           "distribution": cli.config_from_argv([])[0].distribution, "architecture": "amd64",
           **({} if debian_scripts else {"SCRIPTSDIR": str(tmp_path / "no-scripts")})}
    wrapper = subprocess.run(["jdg-piuparts-wrapper", str(deb)], cwd=work, env=env, capture_output=True, text=True,
                             timeout=900)
    tap = subprocess.run(["jdg-tap-piuparts", "piuparts.txt"], cwd=work, capture_output=True, text=True, check=True)
    return wrapper, tap.stdout.splitlines()


def test_jenkins_debian_glue_shows_a_failing_postinst(cache_dir, tmp_path, debs):
    wrapper, tap = _jenkins(cache_dir, tmp_path, debs(FAILING_POSTINST))
    assert wrapper.returncode == 1, wrapper.stdout[-3000:] + wrapper.stderr
    assert "not recent enough" not in wrapper.stdout
    failed = [line for line in tap if line.startswith("not ok")]
    assert any("'install', '/tmp/piuparts-debs/pp-failpostinst_1.0-1_all.deb']" in line for line in failed), tap
    assert any(line.endswith("Installation and purging test.") for line in failed)


def test_jenkins_debian_glue_shows_a_clean_package_green(cache_dir, tmp_path, debs):
    wrapper, tap = _jenkins(cache_dir, tmp_path, debs(CLEAN), debian_scripts=True)
    assert "using default [/etc/piuparts/scripts/]" in wrapper.stdout
    assert wrapper.returncode == 0, wrapper.stdout[-3000:] + wrapper.stderr
    assert "not recent enough" not in wrapper.stdout
    assert [line for line in tap if line.startswith("not ok")] == []
    assert any(line.startswith("ok ") and "pp-clean_1.0-1_all.deb']" in line for line in tap)


def test_piuparts_debian_org_slave_command_line_through_a_proxy(cache_dir, tmp_path, base_root, nodev_tarball,
                                                                proxy):
    """A slave's command line; apt inside downloads through --proxy."""
    madison = subprocess.run(["chroot", str(base_root), "apt-cache", "madison", "hello"], capture_output=True,
                             text=True, check=True).stdout
    version = madison.split("|")[1].strip()
    for cached in (cache_dir / "debs").glob("hello_*.deb"):
        cached.unlink()  # so apt downloads it, through the proxy
    config, _ = cli.config_from_argv([])
    scratch = tmp_path / "t"
    scratch.mkdir()
    log = tmp_path / "piuparts.log"
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    run = piuparts(cache_dir, tmp_path, "--tmpdir", str(scratch), "--arch", "amd64", "-b", str(nodev_tarball),
                   "-d", config.distribution, "--no-upgrade-test", "-m", f"{config.mirror} main",
                   "--proxy", proxy_url, "--update-retries", "2", "-l", str(log), "--apt", f"hello={version}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert [url for url in proxy.seen if "/hello_" in url and url.endswith(".deb")]  # type: ignore[attr-defined]
    lines = [line.split(" ", 1)[1] for line in log.read_text().splitlines() if line[:1].isdigit()]
    assert lines[-2:] == ["INFO: PASS: All tests.", "INFO: piuparts run ends."]
    assert any(line.startswith("DEBUG: Command ok: [") and f"'hello={version}']" in line for line in lines)
    assert not [line for line in lines if line.startswith("ERROR:")]
    assert leaks(cache_dir) == []


INSIDE_CHECKS = DebSpec("pp-dropin-inside", depends="libc6\nRecommends: hello", scripts={"postinst": r'''
if [ "$1" = configure ]; then
    case "${LD_PRELOAD:-}" in *eatmydata*) echo "libeatmydata is preloaded" >&2; exit 1;; esac
    apt-config dump | grep -q '^APT::Install-Recommends "true";' || { echo "apt skips Recommends" >&2; exit 1; }
    grep -qx force-confdef /etc/dpkg/dpkg.cfg.d/piuparts || { echo "dpkg without force-confdef" >&2; exit 1; }
    /usr/sbin/policy-rc.d mariadb start || { echo "mariadb may not start" >&2; exit 1; }
    if /usr/sbin/policy-rc.d apache2 start; then echo "apache2 may start" >&2; exit 1; fi
    command -v less >/dev/null || { echo "the fake essential package is missing" >&2; exit 1; }
fi'''})


def test_options_that_change_the_instance_are_done_inside(cache_dir, tmp_path, debs):
    """--no-eatmydata, --install-recommends, --dpkg-force-confdef, --allow-database and
    --fake-essential-packages, seen by a maintainer script; the base is left as it was."""
    run = piuparts(cache_dir, tmp_path, "--no-eatmydata", "--install-recommends", "--dpkg-force-confdef",
                   "--allow-database", "--fake-essential-packages", "less", str(debs(INSIDE_CHECKS)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    installed = [argv for s in run.report["scenarios"] for step in s["steps"] for c in step["commands"]
                 if step["name"] == "install dependencies" for argv in [c["argv"]]]
    assert any("hello" in argv for argv in installed)  # the Recommends
    assert run.findings("leftovers") == []  # less stays: it was there before the test
    base = Path(run.report["base"]["base"]) / run.report["base"]["generation"] / "root"
    assert not (base / "usr/local/bin/eatmydata").exists()
    assert "mariadb" not in (base / "usr/sbin/policy-rc.d").read_text()


TMP_LEFTOVER = DebSpec("pp-dropin-tmp", scripts={"postinst": 'if [ "$1" = configure ]; then touch /tmp/pp-left; fi'})


def test_pedantic_purge_test_reports_what_is_left_in_tmp(cache_dir, tmp_path, debs):
    run = piuparts(cache_dir, tmp_path, "--pedantic-purge-test", str(debs(TMP_LEFTOVER)))
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    assert [(f["severity"], f["subject"]) for f in run.findings("leftovers")] == [("fail", "/tmp/pp-left")]
