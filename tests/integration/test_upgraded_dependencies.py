"""A dependency the test upgrades (a .deb built against a newer library, a
point release since the base was made) is a dependency: its changed files
are never the tested package's; as piuparts does, the purge brings the
version before the test back when apt still has it."""

from __future__ import annotations

import pytest

from tests.debs import DebSpec, make_repo
from tests.integration.helpers import blame_text, leaks, piuparts

pytestmark = [pytest.mark.root, pytest.mark.network]

LIB_OLD = DebSpec("pp-lib", "1.0-1", files={"/usr/share/pp-lib/version": "1\n"})
LIB_NEW = DebSpec("pp-lib", "2.0-1", files={"/usr/share/pp-lib/version": "2\n"})
NEEDS_NEW_LIB = DebSpec("pp-needs-new-lib", depends="pp-lib (>= 2.0)")


def hooks_installing_the_old_lib(directory, how: str):
    """A post_setup hook that puts pp-lib 1.0 on the system before the test (the system is
    recorded after the setup hooks, before pre_test and pre_install, as in piuparts)."""
    directory.mkdir()
    script = directory / "post_setup_old_lib"
    script.write_text(f"#!/bin/sh\nset -e\n{how}\n")
    script.chmod(0o755)
    return str(directory)


def test_upgraded_dependency_is_brought_back_and_not_blamed(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(LIB_OLD), debs(LIB_NEW)])
    hooks = hooks_installing_the_old_lib(tmp_path / "hooks", "apt-get -y install pp-lib=1.0-1")
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--purge-dependencies", "--extra-repo", repo,
                   "--scriptsdir", hooks, str(debs(NEEDS_NEW_LIB)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    assert "The dependencies upgrade pp-lib" in run.stdout
    [purge] = [s for s in run.report["scenarios"][0]["steps"] if s["name"] == "purge"]
    assert any(c["cmdline"].endswith("apt-get -y install --allow-downgrades pp-lib=1.0-1")
               for c in purge["commands"])
    assert leaks(cache_dir) == []


def test_upgrade_that_cannot_be_undone_is_the_dependency_s(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(LIB_NEW)])
    old = tmp_path / "old"
    old.mkdir()
    deb = debs(LIB_OLD)
    (old / deb.name).write_bytes(deb.read_bytes())
    hooks = hooks_installing_the_old_lib(tmp_path / "hooks", f"dpkg -i {old}/{deb.name}")
    args = ("--no-upgrade-test", "--purge-dependencies", "--extra-repo", repo, "--bindmount", str(old),
            "--scriptsdir", hooks, str(debs(NEEDS_NEW_LIB)))
    run = piuparts(cache_dir, tmp_path, *args)
    assert run.returncode == 1, run.stdout + run.stderr
    assert {(f["check"], f["subject"], blame_text(f), f["message"]) for f in run.findings()} == {
        ("dependency-leftovers", "/usr/share/pp-lib/version", "pp-lib",
         "modified: content changed, by the upgrade of pp-lib (from 1.0-1, not brought back)")}
    warned = piuparts(cache_dir, tmp_path, "--warn-on-others", *args)
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert [(f["check"], f["severity"]) for f in warned.findings()] == [("dependency-leftovers", "warn")]


def test_refreshing_the_lists_brings_the_base_up_to_date(cache_dir, debs, tmp_path):
    from tests.debs import CLEAN
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--lists-max-age", "0.0001", str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Refreshing the apt lists of the base" in run.stdout
    lines = run.stdout.splitlines()
    [at] = [n for n, line in enumerate(lines) if line.endswith("dist-upgrade") and "apt-get -y" in line]
    assert "exit 0 in" in lines[at + 1]
