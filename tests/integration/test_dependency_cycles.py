"""Dependency cycles (OpenStack has them: python3-oslo.log needs
python3-oslo.config): the tested package is installed from the given .deb
alone, never from a repository, and the members of its cycle with it."""

from __future__ import annotations

import pytest

from tests.debs import DebSpec, make_repo
from tests.integration.helpers import blame_text, leaks, owner_text, piuparts

pytestmark = [pytest.mark.root, pytest.mark.network]

CYCLE_A = DebSpec("pp-cycle-a", "1.0-1", depends="pp-cycle-b", scripts={
    "postinst": 'if [ "$1" = configure ]; then touch /srv/pp-cycle-a.stamp; fi'})
# The same package, older, in the repository: apt must not take it.
CYCLE_A_OLD = DebSpec("pp-cycle-a", "0.9-1", depends="pp-cycle-b")
CYCLE_B = DebSpec("pp-cycle-b", depends="pp-cycle-a")


@pytest.mark.parametrize("mode", [[], ["--purge-dependencies"]], ids=["layer", "purge-dependencies"])
@pytest.mark.parametrize("repo_has_a", [False, True], ids=["b-only", "older-a-too"])
def test_cycle_member_is_installed_with_the_tested_deb(cache_dir, debs, tmp_path, mode, repo_has_a):
    repo = make_repo(tmp_path / "repo", [debs(CYCLE_B)] + ([debs(CYCLE_A_OLD)] if repo_has_a else []))
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", repo, *mode, str(debs(CYCLE_A)))
    assert run.returncode == 1, run.stdout + run.stderr
    [scenario] = run.report["scenarios"]
    assert [(s["name"], s["ok"]) for s in scenario["steps"]] == [("install", True), ("remove", True),
                                                                 ("purge", True)]
    install = scenario["steps"][0]["commands"][0]["argv"]
    assert install[-1] == "/tmp/piuparts-debs/pp-cycle-a_1.0-1_all.deb"
    assert {(f["check"], f["subject"], owner_text(f), blame_text(f)) for f in run.findings()} == {
        ("leftovers", "/srv/pp-cycle-a.stamp", "not owned", "pp-cycle-a")}
    assert "Installed 2 packages: pp-cycle-a pp-cycle-b" in run.stdout
    assert "0.9-1" not in " ".join(c["cmdline"] for s in scenario["steps"] for c in s["commands"])
    assert leaks(cache_dir) == []
