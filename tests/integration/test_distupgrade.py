"""The distupgrade scenario (``-d bookworm -d trixie``): install in the first
distribution, dist-upgrade, purge, and compare with a cached reference that
made the same dist-upgrade without the packages.

Each run costs a dist-upgrade (under a minute once the .debs are cached).
The acceptance run and the leftover run are module fixtures with the same
options, so the second reuses the reference of the first; the runs with
hooks, bind mounts or extra repositories get references of their own, which
they remove afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from piuparts import api, cli, options as opts
from piuparts.hooks import distupgrade_env
from piuparts.scenarios import distupgrade
from tests.debs import CLEAN, DebSpec, make_repo
from tests.integration.helpers import (Run, blame_text, forget_references, leaks, owner_text, piuparts,
                                       reference_leaks)

CHAIN = ("-d", "bookworm", "-d", "trixie")
NAME = "distupgrade bookworm -> trixie"

# Named after a package both distributions have, so that the archive's
# version is installed first and upgraded by the dist-upgrade; its postinst
# leaves a file only when it upgrades an installed version.
UPGRADE_LEFTOVER = DebSpec("hello", "99.0-1", scripts={
    "postinst": 'if [ "$1" = configure ] && [ -n "$2" ]; then echo "$2" > /etc/pp-upgraded-from; fi'})
# Only in an extra repository (version 1) and on the command line (version 2).
EXTRA_OLD = DebSpec("pp-distupgrade", "1.0-1", files={"/usr/share/pp-distupgrade/v": "1\n"})
EXTRA_NEW = DebSpec("pp-distupgrade", "2.0-1", files={"/usr/share/pp-distupgrade/v": "2\n"})
# The old version edits its own conffile; the new one, in the same extra
# repository, ships a changed one: the dist-upgrade brings a conffile prompt.
CONF_OLD = DebSpec("pp-duconf", "1.0-1", files={"/etc/pp-duconf.conf": "a=1\n"}, conffiles=("/etc/pp-duconf.conf",),
                   scripts={"postinst": 'echo "tweaked=1" >> /etc/pp-duconf.conf'})
CONF_NEW = DebSpec("pp-duconf", "2.0-1", files={"/etc/pp-duconf.conf": "a=2\n"}, conffiles=("/etc/pp-duconf.conf",))


def scenario(run: Run) -> dict:
    [found] = run.report["scenarios"]
    return found


def steps(run: Run) -> list[tuple[str, bool]]:
    return [(step["name"], step["ok"]) for step in scenario(run)["steps"]]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distupgrade")


@pytest.fixture(scope="module")
def oslo_run(cache_dir: Path, workdir: Path) -> tuple[Run, float]:
    """The acceptance run, and how long it took."""
    (workdir / "oslo").mkdir()
    start = time.monotonic()
    run = piuparts(cache_dir, workdir / "oslo", *CHAIN, "--apt", "python3-oslo.config", timeout=1800)
    return run, time.monotonic() - start


@pytest.fixture(scope="module")
def leftover_run(cache_dir: Path, workdir: Path, oslo_run: tuple[Run, float]) -> Run:
    """A .deb tested with the same options as the acceptance run: its reference is reused."""
    (workdir / "leftover").mkdir()
    deb = UPGRADE_LEFTOVER.build(workdir / "leftover")
    return piuparts(cache_dir, workdir / "leftover", *CHAIN, str(deb), timeout=1800)


@pytest.mark.parametrize("text, expected, count", [
    ("deb file:///srv/mirror bookworm main\n", "deb file:///srv/mirror trixie main\n", 1),
    ("deb [arch=amd64] file:///srv/m bookworm-updates main contrib\n# deb x bookworm main\n",
     "deb [arch=amd64] file:///srv/m trixie-updates main contrib\n# deb x bookworm main\n", 1),
    ("deb file:///srv/m bookworm-backportsx main\ndeb-src file:///srv/m bookworm main\n",
     "deb file:///srv/m trixie-backportsx main\ndeb-src file:///srv/m trixie main\n", 2),
    ("deb file:///srv/m bookwormish main\n", "deb file:///srv/m bookwormish main\n", 0),
])
def test_sources_are_renamed_to_the_next_distribution(text, expected, count):
    assert distupgrade.rewrite_sources(text, "bookworm", "trixie") == (expected, count)


def test_hook_environment_of_a_dist_upgrade():
    assert distupgrade_env("bookworm", "trixie", done=False) == {
        "PIUPARTS_DISTRIBUTION": "bookworm", "PIUPARTS_DISTRIBUTION_NEXT": "trixie"}
    assert distupgrade_env("bookworm", "trixie", done=True) == {
        "PIUPARTS_DISTRIBUTION": "trixie", "PIUPARTS_DISTRIBUTION_PREV": "bookworm"}


@pytest.mark.parametrize("args, chosen", [(["-d", "bookworm", "-d", "trixie"], [distupgrade]),
                                          (["-d", "bookworm"], [api.install_purge, api.install_upgrade_purge])])
def test_more_than_one_distribution_runs_only_the_distupgrade_test(args, chosen):
    options = opts.from_args(cli.parser().parse_args([*args, "-m", "file:///srv/mirror", "--arch", "amd64", "x.deb"]))
    assert api._scenarios(options) == chosen


@pytest.mark.root
@pytest.mark.network
def test_acceptance_python3_oslo_config_passes(oslo_run, cache_dir):
    run, seconds = oslo_run
    print(f"the acceptance run took {seconds:.0f} s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert scenario(run)["name"] == NAME and scenario(run)["verdict"] == "PASS"
    assert run.report["distributions"] == ["bookworm", "trixie"]
    assert steps(run) == [("install dependencies", True), ("install", True), ("dist-upgrade to trixie", True),
                          ("install again in trixie", True), ("remove", True), ("purge", True)]
    assert [f for f in run.findings() if f["severity"] == "fail"] == []
    assert f"scenario {NAME}: passed" in run.stdout
    assert leaks(cache_dir) == [] and reference_leaks(cache_dir) == []


@pytest.mark.root
@pytest.mark.network
def test_leftover_of_an_upgrade_across_distributions_fails(leftover_run, cache_dir):
    run = leftover_run
    assert run.returncode == 1, run.stdout + run.stderr
    assert steps(run) == [("install", True), ("dist-upgrade to trixie", True), ("install again in trixie", True),
                          ("upgrade", True), ("remove", True), ("purge", True)]
    [install] = scenario(run)["steps"][0]["commands"]
    assert install["cmdline"].endswith("apt-get -y install hello")  # the archive's version first
    assert [(f["check"], f["severity"], f["subject"], f["message"], owner_text(f), blame_text(f)) for f in run.findings()] == [
        ("leftovers", "fail", "/etc/pp-upgraded-from", "left behind after purge", "not owned", "hello")]
    assert leaks(cache_dir) == [] and reference_leaks(cache_dir) == []


@pytest.mark.root
@pytest.mark.network
def test_the_reference_is_reused_by_the_next_run(oslo_run, leftover_run):
    assert "Using cached reference" in leftover_run.stdout, leftover_run.stdout
    assert "Building the reference" not in leftover_run.stdout
    assert scenario(leftover_run)["timings"]["reference"] < 5
    first = oslo_run[0]
    if "Building the reference" in first.stdout:  # made by this session: it took far longer
        assert scenario(first)["timings"]["reference"] > 5 * scenario(leftover_run)["timings"]["reference"]


@pytest.mark.root
@pytest.mark.network
def test_the_next_releases_debs_come_from_the_deb_cache_not_from_apt(leftover_run):
    # The reference and the acceptance run kept trixie's .debs; what this run's dist-upgrade
    # needs besides is downloaded into the cache by the harness: apt has nothing to fetch.
    [step] = [s for s in scenario(leftover_run)["steps"] if s["name"] == "dist-upgrade to trixie"]
    commands = [c["cmdline"] for c in step["commands"]]
    assert len(commands) == 2 and commands[0].endswith("apt-get update"), commands
    assert commands[1].endswith("apt-get -y dist-upgrade"), commands  # no --download-only pass first


@pytest.mark.root
@pytest.mark.network
def test_hooks_see_the_distributions_of_each_dist_upgrade(cache_dir, debs, tmp_path):
    record = 'echo "${0##*/} $PIUPARTS_DISTRIBUTION ${PIUPARTS_DISTRIBUTION_PREV:--} ' \
             '${PIUPARTS_DISTRIBUTION_NEXT:--} $PIUPARTS_TEST ${PIUPARTS_PHASE:--}" >> ' + str(tmp_path / "bind/env")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in ("pre_distupgrade_record", "post_distupgrade_record", "post_test_record"):
        (hooks / name).write_text(f"#!/bin/sh\n{record}\n")
        (hooks / name).chmod(0o755)
    (tmp_path / "bind").mkdir()
    repo = make_repo(tmp_path / "repo", [debs(EXTRA_OLD)])
    try:
        run = piuparts(cache_dir, tmp_path, *CHAIN, "--scriptsdir", str(hooks), "--bindmount",
                       str(tmp_path / "bind"), "--extra-repo", repo, str(debs(EXTRA_NEW)), timeout=1800)
    finally:  # no later run has this key
        forget_references(cache_dir, str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert steps(run) == [("install", True), ("dist-upgrade to trixie", True), ("install again in trixie", True),
                          ("upgrade", True), ("remove", True), ("purge", True)]
    assert run.findings() == []
    # The hooks and bind mount make a reference of this run's own; its hooks run with an empty phase.
    assert (tmp_path / "bind/env").read_text().splitlines() == [
        "pre_distupgrade_record bookworm - trixie distupgrade -",
        "post_distupgrade_record trixie bookworm - distupgrade -",
        "pre_distupgrade_record bookworm - trixie distupgrade install",
        "post_distupgrade_record trixie bookworm - distupgrade distupgrade",
        "post_test_record trixie - - distupgrade upgrade",
    ]
    assert leaks(cache_dir) == [] and reference_leaks(cache_dir) == []


@pytest.mark.root
@pytest.mark.network
def test_a_distribution_the_mirror_does_not_have_is_a_usage_error(cache_dir, tmp_path):
    run = piuparts(cache_dir, tmp_path, "-d", "bookworm", "-d", "nosuchdist", "--apt", "hello")
    for lock in (cache_dir / "references").glob("bookworm-nosuchdist-*.lock"):
        lock.unlink()
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip() == ("piuparts: error: -d nosuchdist: the mirror has no distribution of that name "
                                  "(apt-get update found no Release file for it)")
    assert leaks(cache_dir) == [] and reference_leaks(cache_dir) == []


@pytest.mark.root
@pytest.mark.network
def test_conffile_prompt_in_the_dist_upgrade_fails_that_step(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(CONF_OLD), debs(CONF_NEW)])
    try:
        run = piuparts(cache_dir, tmp_path, *CHAIN, "--extra-repo", repo, "--apt", "pp-duconf=1.0-1", timeout=1800)
    finally:
        forget_references(cache_dir, str(tmp_path))
    assert run.returncode == 1, run.stdout + run.stderr
    assert steps(run) == [("install", True), ("dist-upgrade to trixie", False)]
    assert [(f["check"], f["subject"], f["message"]) for f in run.findings()] == [
        ("steps", "dist-upgrade to trixie",
         "dist-upgrade to trixie failed: dpkg asked about the conffile /etc/pp-duconf.conf (a conffile prompt)")]
    assert leaks(cache_dir) == [] and reference_leaks(cache_dir) == []


@pytest.mark.root
@pytest.mark.network
def test_a_deb_the_first_distribution_does_not_have_is_skipped_with_the_reason(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, *CHAIN, str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    reason = "apt knows no version of pp-clean in bookworm to install before the dist-upgrade"
    assert [(s["name"], s["verdict"], s["skipped"]) for s in run.report["scenarios"]] == [(NAME, "SKIP", reason)]
    assert f"scenario {NAME}: skipped ({reason})" in run.stdout
    assert "reference" not in run.stdout  # no reference is made for a skipped test
