"""The end of every scenario in piuparts' order: remove the tested packages
and everything they pulled in (the dependency layer's packages too), purge
the dependencies, then purge the tested packages; the cron and logrotate
checks run with the package removed and its dependencies gone; what is left
is compared with the system before the test, and blamed on whoever did it."""

from __future__ import annotations

import pytest

from tests.debs import DebSpec, make_repo
from tests.integration.helpers import blame_text, leaks, owner_text, piuparts

pytestmark = [pytest.mark.root, pytest.mark.network]

HELPER = DebSpec("pp-helper", files={"/usr/bin/pp-helper": "#!/bin/sh\necho helped \"$@\"\n"},
                 executables=("/usr/bin/pp-helper",))
# Policy: postrm purge may rely on essential packages only.  This one calls
# its (non-essential) dependency, which piuparts has purged by then.
PURGE_NEEDS_DEP = DebSpec("pp-purge-needs-dep", depends="pp-helper", scripts={
    "postrm": 'if [ "$1" = purge ]; then pp-helper cleanup; fi'})
# A cron job that needs the dependency without checking for it.
CRON_NEEDS_DEP = DebSpec("pp-cron-needs-dep", depends="pp-helper",
                         files={"/etc/cron.daily/pp-cron-needs-dep": "#!/bin/sh\npp-helper nightly\n"},
                         conffiles=("/etc/cron.daily/pp-cron-needs-dep",),
                         executables=("/etc/cron.daily/pp-cron-needs-dep",))
# Its own purge leaves a file: blamed on it, though its dependency is purged before it.
PURGE_LEAVES = DebSpec("pp-purge-leaves", depends="pp-helper", scripts={
    "postrm": 'if [ "$1" = purge ]; then mkdir -p /srv/pp-purge-leaves; touch /srv/pp-purge-leaves/stamp; fi'})
# A dependency whose own purge leaves a file: blamed on it.
DEP_PURGE_LEAVES = DebSpec("pp-dep-purge-leaves", scripts={
    "postrm": 'if [ "$1" = purge ]; then touch /srv/pp-dep-purge-leaves.stamp; fi'})
USES_DEP_PURGE_LEAVES = DebSpec("pp-uses-dep-purge-leaves", depends="pp-dep-purge-leaves")
NEEDS_SUDO = DebSpec("pp-needs-sudo", depends="sudo")
# A daemon busy renaming a file: a snapshot taken while it runs would see
# the file come and go.
BUSY_DAEMON = DebSpec("pp-busy-daemon", scripts={"postinst": """\
if [ "$1" = configure ]; then
  setsid sh -c 'while :; do echo x > /srv/pp-busy.new; mv /srv/pp-busy.new /srv/pp-busy; done' \
    </dev/null >/dev/null 2>&1 &
fi"""})

MODES = pytest.mark.parametrize("mode", [[], ["--purge-dependencies"]], ids=["layer", "purge-dependencies"])


def steps(run) -> list[tuple[str, bool]]:
    return [(step["name"], step["ok"]) for step in run.report["scenarios"][0]["steps"]]


def commands(run, step_name: str) -> list[list[str]]:
    [step] = [s for s in run.report["scenarios"][0]["steps"] if s["name"] == step_name]
    return [c["argv"][c["argv"].index("dpkg"):] for c in step["commands"] if "dpkg" in c["argv"]]


@MODES
def test_postrm_purge_that_needs_its_dependency_fails(cache_dir, debs, tmp_path, mode):
    repo = make_repo(tmp_path / "repo", [debs(HELPER)])
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", repo, *mode, str(debs(PURGE_NEEDS_DEP)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert steps(run)[-2:] == [("remove", True), ("purge", False)]
    assert commands(run, "remove") == [["dpkg", "--remove", "pp-purge-needs-dep"], ["dpkg", "--remove", "pp-helper"]]
    assert commands(run, "purge") == [["dpkg", "--purge", "pp-helper"], ["dpkg", "--purge", "pp-purge-needs-dep"]]
    [finding] = run.findings("steps")
    assert finding["subject"] == "purge"
    assert "pp-purge-needs-dep package post-removal script subprocess returned error exit status 127" \
        in finding["message"]
    assert blame_text(finding) == "pp-purge-needs-dep"
    assert leaks(cache_dir) == []


@MODES
def test_cron_job_runs_with_the_dependencies_gone(cache_dir, debs, tmp_path, mode):
    repo = make_repo(tmp_path / "repo", [debs(HELPER)])
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", repo, *mode, str(debs(CRON_NEEDS_DEP)))
    assert run.returncode == 1, run.stdout + run.stderr
    [finding] = run.findings()
    assert (finding["check"], finding["subject"], blame_text(finding)) == (
        "cron-logrotate", "/etc/cron.daily/pp-cron-needs-dep", "pp-cron-needs-dep")
    assert finding["message"].startswith("cron.daily script exited 127 with the package removed")


@MODES
def test_own_purge_leftover_is_the_package_s(cache_dir, debs, tmp_path, mode):
    repo = make_repo(tmp_path / "repo", [debs(HELPER)])
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", repo, *mode, str(debs(PURGE_LEAVES)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert {(f["check"], f["subject"], owner_text(f), blame_text(f)) for f in run.findings()} == {
        ("leftovers", "/srv/pp-purge-leaves/", "not owned", "pp-purge-leaves"),
        ("leftovers", "/srv/pp-purge-leaves/stamp", "not owned", "pp-purge-leaves")}


@MODES
def test_dependency_purge_leftover_is_the_dependency_s(cache_dir, debs, tmp_path, mode):
    repo = make_repo(tmp_path / "repo", [debs(DEP_PURGE_LEAVES)])
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", repo, *mode,
                   str(debs(USES_DEP_PURGE_LEAVES)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert {(f["check"], f["severity"], f["subject"], blame_text(f)) for f in run.findings()} == {
        ("dependency-leftovers", "fail", "/srv/pp-dep-purge-leaves.stamp", "pp-dep-purge-leaves")}
    warned = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", repo, *mode, "--warn-on-others",
                      str(debs(USES_DEP_PURGE_LEAVES)))
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert [f["severity"] for f in warned.findings()] == ["warn"]


def test_sudo_as_a_dependency_is_removed_without_complaint(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(NEEDS_SUDO)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    assert ["dpkg", "--purge", "sudo"] in commands(run, "purge")
    assert "Refusing to remove sudo" not in run.stdout


def test_last_snapshot_is_taken_once_leftover_processes_are_ended(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(BUSY_DAEMON)))
    assert run.returncode == 1, run.stdout + run.stderr
    found = {(f["check"], f["subject"]) for f in run.findings()}
    assert ("processes", "sh -c while :; do echo x > /srv/pp-busy.new; mv /srv/pp-busy.new /srv/pp-busy; done") \
        in found
    assert ("leftovers", "/srv/pp-busy") in found
    assert leaks(cache_dir) == []


# A dependency that leaves everything a check looks at: a process, an
# alternative, a diversion, a user.
DEP_MESSY = DebSpec("pp-dep-messy", scripts={"postinst": """\
if [ "$1" = configure ]; then
  update-alternatives --install /usr/bin/pp-messy-alt pp-messy-alt /usr/bin/true 10
  dpkg-divert --package pp-dep-messy --add --divert /etc/issue.pp-messy /etc/issue
  useradd --system --no-create-home pp-messy
  setsid sleep 600 </dev/null >/dev/null 2>&1 &
fi"""})
USES_DEP_MESSY = DebSpec("pp-uses-dep-messy", depends="pp-dep-messy")


def test_with_purge_dependencies_what_a_dependency_leaves_is_blamed_on_it(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(DEP_MESSY)])
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--purge-dependencies", "--extra-repo", repo,
                   str(debs(USES_DEP_MESSY)))
    assert run.returncode == 1, run.stdout + run.stderr
    found = {(f["check"], f["subject"]) for f in run.findings()}
    assert {("processes", "sleep 600"), ("alternatives", "pp-messy-alt"), ("diversions", "/etc/issue"),
            ("users", "user pp-messy")} <= found
    assert {blame_text(f) for f in run.findings()} == {"pp-dep-messy"}
    assert not any(f["check"] == "leftovers" for f in run.findings())
    assert leaks(cache_dir) == []
