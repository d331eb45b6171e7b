"""-d NAME through a distros.conf, for real: the base is the chain's first
release, the instance's apt sources the whole chain, and the target
release is what apt installs from (piuparts' -t), here a team repository
whose hello is older than bookworm's; and a later -d naming a chain (as
piuparts.debian.org's sid2experimental or stretch2bpo): dist-upgraded to
with its sources written whole, installed from its target release once
there, its hooks told its name."""

from __future__ import annotations

import pytest

from tests.debs import DebSpec, reprepro
from tests.integration.helpers import forget_references, leaks, piuparts, reference_leaks, serve_directory

pytestmark = [pytest.mark.root, pytest.mark.network]

#: Older than bookworm's hello (2.10-3): only the target release makes apt take it.
TEAM_HELLO = DebSpec("hello", "1.0-0pp1", files={"/usr/share/doc/hello/pp-team": "from the team's repository\n"})


def test_a_distros_conf_chain_with_a_target_release(cache_dir, debs, tmp_path):
    repo = tmp_path / "repo"
    reprepro(repo, [debs(TEAM_HELLO)])
    conf = tmp_path / "distros.conf"
    with serve_directory(repo) as server:  # over HTTP on the host's loopback, as a team's archive is served
        conf.write_text(f"[bookworm-team]\nuri = http://127.0.0.1:{server.server_port}\ndistribution = pp\n"
                        "depends = bookworm\ntarget-release = pp\n")
        # Unsigned, as reprepro made it: --do-not-verify-signatures, as piuparts users give it.
        run = piuparts(cache_dir, tmp_path, "-d", "bookworm-team", "--distros-conf", str(conf),
                       "--do-not-verify-signatures", "-v", "--apt", "hello")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"-d bookworm-team: {conf} makes it bookworm + pp, installing from pp" in run.stdout
    assert run.report["distribution"] == "bookworm"
    assert "Unpacking hello (1.0-0pp1)" in run.stdout  # the target release's, not bookworm's 2.10-3
    assert leaks(cache_dir) == []


#: Newer than bookworm's, in a NotAutomatic suite (as experimental): only its target release installs it.
EXPERIMENTAL_HELLO = DebSpec("hello", "99.0-0pp1", files={"/usr/share/doc/hello/pp-exp": "from experimental\n"})


def test_a_later_d_that_distros_conf_makes_a_chain(cache_dir, debs, tmp_path):
    repo = tmp_path / "repo"
    (repo / "conf").mkdir(parents=True)
    (repo / "conf/distributions").write_text("Codename: pp\nSuite: pp\nComponents: main\nArchitectures: amd64\n"
                                             "NotAutomatic: yes\nButAutomaticUpgrades: no\n")
    reprepro(repo, [debs(EXPERIMENTAL_HELLO)])
    hooks, bind = tmp_path / "hooks", tmp_path / "bind"
    hooks.mkdir()
    bind.mkdir()
    record = 'echo "${0##*/} $PIUPARTS_DISTRIBUTION ${PIUPARTS_DISTRIBUTION_PREV:--} ' \
             '${PIUPARTS_DISTRIBUTION_NEXT:--} ${PIUPARTS_PHASE:--}" >> ' + str(bind / "env")
    for name in ("pre_distupgrade_record", "post_distupgrade_record"):
        (hooks / name).write_text(f"#!/bin/sh\n{record}\n")
        (hooks / name).chmod(0o755)
    conf = tmp_path / "distros.conf"
    with serve_directory(repo) as server:
        url = f"http://127.0.0.1:{server.server_port}"
        conf.write_text(f"[bookworm-pp]\nuri = {url}\ndistribution = pp\ndepends = bookworm\ntarget-release = pp\n")
        try:
            run = piuparts(cache_dir, tmp_path, "-d", "bookworm", "-d", "bookworm-pp", "--distros-conf", str(conf),
                           "--do-not-verify-signatures", "--scriptsdir", str(hooks), "--bindmount", str(bind),
                           "-v", "--apt", "hello", timeout=1800)
        finally:  # no later run has this key (the server's port is in it)
            forget_references(cache_dir, url)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"-d bookworm-pp: {conf} makes it bookworm + pp, installing from pp" in run.stdout
    [scenario] = run.report["scenarios"]
    assert [(step["name"], step["ok"]) for step in scenario["steps"]] == [("install", True), ("dist-upgrade to bookworm-pp", True),
                          ("install again in bookworm-pp", True), ("remove", True), ("purge", True)]
    # The dist-upgrade left the NotAutomatic suite alone; the install once there took its target release.
    assert "Unpacking hello (2.10-3)" in run.stdout
    assert "Unpacking hello (99.0-0pp1) over (2.10-3)" in run.stdout
    assert run.findings() == []
    # The reference's hooks (empty phase), then the test's: the chain's name as piuparts gives it (the suite's).
    assert (bind / "env").read_text().splitlines() == [
        "pre_distupgrade_record bookworm - pp -", "post_distupgrade_record pp bookworm - -",
        "pre_distupgrade_record bookworm - pp install", "post_distupgrade_record pp bookworm - distupgrade"]
    assert leaks(cache_dir) == [] and reference_leaks(cache_dir) == []
