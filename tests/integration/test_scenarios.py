"""Scenarios beyond install -> purge: upgrades from an older version apt knows,
install-remove-install, install-purge-install, extra repositories."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.debs import CLEAN, DebSpec, make_repo
from tests.integration.helpers import leaks, piuparts, blame_text, owner_text

pytestmark = [pytest.mark.root, pytest.mark.network]

OLD = DebSpec("pp-upgrade", "1.0-1", files={"/usr/share/pp-upgrade/v": "1\n"})
NEW = DebSpec("pp-upgrade", "2.0-1", files={"/usr/share/pp-upgrade/v": "2\n"})
BAD_OLD = DebSpec("pp-badupgrade", "1.0-1")
BAD_NEW = DebSpec("pp-badupgrade", "2.0-1", scripts={
    "preinst": 'if [ "$1" = upgrade ]; then echo "pp-badupgrade: cannot upgrade from $2" >&2; exit 1; fi'})
# The old version edits its own conffile (a policy violation); the new one
# ships a changed conffile, so dpkg has to ask on the upgrade.
CONF_OLD = DebSpec("pp-conffile", "1.0-1", files={"/etc/pp-conffile.conf": "a=1\n"},
                   conffiles=("/etc/pp-conffile.conf",),
                   scripts={"postinst": 'echo "tweaked=1" >> /etc/pp-conffile.conf'})
CONF_NEW = DebSpec("pp-conffile", "2.0-1", files={"/etc/pp-conffile.conf": "a=2\n"},
                   conffiles=("/etc/pp-conffile.conf",))


def steps(run, scenario: str) -> list[tuple[str, bool]]:
    [found] = [s for s in run.report["scenarios"] if s["name"] == scenario]
    return [(step["name"], step["ok"]) for step in found["steps"]]


def test_upgrade_from_the_older_version_in_an_extra_repo(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(OLD)])
    run = piuparts(cache_dir, tmp_path, "--extra-repo", repo, str(debs(NEW)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [s["verdict"] for s in run.report["scenarios"]] == ["PASS", "PASS"]
    assert steps(run, "install-upgrade-purge") == [("install old", True), ("upgrade", True), ("remove", True),
                                                  ("purge", True)]
    [old] = [s for s in run.report["scenarios"] if s["name"] == "install-upgrade-purge"][0]["steps"][0]["commands"]
    assert old["cmdline"].endswith("apt-get -y install pp-upgrade=1.0-1")
    assert leaks(cache_dir) == []


def test_failing_preinst_on_upgrade_fails_the_upgrade_test(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(BAD_OLD)])
    run = piuparts(cache_dir, tmp_path, "--extra-repo", repo, str(debs(BAD_NEW)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert [(s["name"], s["verdict"]) for s in run.report["scenarios"]] == [
        ("install-purge", "PASS"), ("install-upgrade-purge", "FAIL")]
    assert steps(run, "install-upgrade-purge") == [("install old", True), ("upgrade", False)]
    [finding] = run.findings("steps")
    assert finding["subject"] == "upgrade"
    assert finding["message"] == ("upgrade failed: new pp-badupgrade package pre-installation script subprocess "
                                  "returned error exit status 1")


def test_conffile_prompt_on_upgrade_is_a_failure_naming_the_file(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(CONF_OLD)])
    run = piuparts(cache_dir, tmp_path, "--no-install-purge-test", "--extra-repo", repo, str(debs(CONF_NEW)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert steps(run, "install-upgrade-purge") == [("install old", True), ("upgrade", False)]
    [finding] = run.findings("steps")
    assert finding["message"] == ("upgrade failed: dpkg asked about the conffile /etc/pp-conffile.conf "
                                  "(a conffile prompt)")
    # where piuparts-master's conffile_prompt_error finds it in the piuparts lines at the end
    conf = Path("/usr/share/piuparts/known_problems/conffile_prompt_error.conf")
    pattern = (conf.read_text().split("PATTERN='", 1)[1].split("'", 1)[0] if conf.exists()  # piuparts-common
               else "(EOF|end of file) on stdin at conffile prompt")
    assert re.search(pattern, run.stdout), run.stdout[-2000:]


def test_upgrade_is_skipped_with_a_reason_when_apt_knows_no_older_version(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [(s["name"], s["verdict"], s["skipped"]) for s in run.report["scenarios"]] == [
        ("install-purge", "PASS", None),
        ("install-upgrade-purge", "SKIP", "apt knows no older version of pp-clean")]
    assert "scenario install-upgrade-purge: skipped (apt knows no older version of pp-clean)" in run.stdout


@pytest.mark.parametrize("option, middle", [("--install-remove-install", ["remove"]),
                                            ("--install-purge-install", ["remove", "purge"])])
def test_install_again_variants(cache_dir, debs, tmp_path, option, middle):
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", option, str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [name for name, ok in steps(run, "install-purge")] == [
        "install", *middle, "install again", "remove", "purge"]


def test_contradicting_options_are_a_usage_error(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--install-remove-install", "--install-purge-install", str(debs(CLEAN)))
    assert run.returncode == 2
    assert run.stderr.strip() == ("piuparts: error: --install-remove-install and --install-purge-install "
                                  "contradict each other; pick one")


DEP_LEAVER = DebSpec("pp-depleaver", scripts={
    "postinst": 'if [ "$1" = configure ]; then mkdir -p /etc/pp-depleaver; echo on > /etc/pp-depleaver/state; fi'})
USES_DEP = DebSpec("pp-usesdep", depends="pp-depleaver")
USES_DEP_AND_LEAVES = DebSpec("pp-usesdep-leaves", depends="pp-depleaver", scripts={
    "postinst": 'if [ "$1" = configure ]; then echo mine > /etc/pp-usesdep-leaves.conf; fi'})


@pytest.mark.parametrize("purge_dependencies", [True, False], ids=["purge-dependencies", "layer"])
def test_leftover_of_a_dependency_fails_blamed_on_the_dependency(cache_dir, debs, tmp_path, purge_dependencies):
    repo = make_repo(tmp_path / "repo", [debs(DEP_LEAVER)])
    mode = ["--purge-dependencies"] if purge_dependencies else []
    run = piuparts(cache_dir, tmp_path, "--extra-repo", repo, "--no-upgrade-test", *mode, str(debs(USES_DEP)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert {(f["check"], f["severity"], f["subject"], blame_text(f)) for f in run.findings()} == {
        ("dependency-leftovers", "fail", "/etc/pp-depleaver/", "pp-depleaver"),
        ("dependency-leftovers", "fail", "/etc/pp-depleaver/state", "pp-depleaver")}
    assert "/etc/pp-depleaver/state (not owned): left behind after purge, by a dependency" in run.stdout


def test_leftover_of_a_dependency_warns_with_warn_on_others(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(DEP_LEAVER)])
    run = piuparts(cache_dir, tmp_path, "--extra-repo", repo, "--no-upgrade-test", "--purge-dependencies",
                   "--warn-on-others", str(debs(USES_DEP)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [name for name, _ in steps(run, "install-purge")] == [
        "install dependencies", "install", "remove", "purge"]
    assert {(f["check"], f["severity"], f["subject"], blame_text(f)) for f in run.findings()} == {
        ("dependency-leftovers", "warn", "/etc/pp-depleaver/", "pp-depleaver"),
        ("dependency-leftovers", "warn", "/etc/pp-depleaver/state", "pp-depleaver")}


def test_own_and_dependency_leftovers_are_told_apart(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(DEP_LEAVER)])
    run = piuparts(cache_dir, tmp_path, "--extra-repo", repo, "--no-upgrade-test", "--purge-dependencies",
                   "--severity", "dependency-leftovers=fail", str(debs(USES_DEP_AND_LEAVES)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert {(f["check"], f["subject"], blame_text(f)) for f in run.findings()} == {
        ("leftovers", "/etc/pp-usesdep-leaves.conf", "pp-usesdep-leaves"),
        ("dependency-leftovers", "/etc/pp-depleaver/", "pp-depleaver"),
        ("dependency-leftovers", "/etc/pp-depleaver/state", "pp-depleaver")}


def test_dependencies_come_from_a_cached_layer_and_are_purged_all_the_same(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(DEP_LEAVER)])
    args = ("--extra-repo", repo, "--no-upgrade-test", "--severity", "dependency-leftovers=fail",
            str(debs(USES_DEP_AND_LEAVES)))
    runs = [piuparts(cache_dir, tmp_path / str(n), *args) for n in (1, 2) if (tmp_path / str(n)).mkdir() is None]
    for run in runs:
        assert run.returncode == 1, run.stdout + run.stderr
        assert [name for name, _ in steps(run, "install-purge")] == ["install", "remove", "purge"]
        assert {(f["check"], f["subject"], blame_text(f)) for f in run.findings()} == {
            ("leftovers", "/etc/pp-usesdep-leaves.conf", "pp-usesdep-leaves"),
            ("dependency-leftovers", "/etc/pp-depleaver/", "pp-depleaver"),
            ("dependency-leftovers", "/etc/pp-depleaver/state", "pp-depleaver")}
        [purge] = [s for s in run.report["scenarios"][0]["steps"] if s["name"] == "purge"]
        assert [c["argv"][-2:] for c in purge["commands"]] == [["--purge", "pp-depleaver"],
                                                               ["--purge", "pp-usesdep-leaves"]]
        assert run.report["dependency_layer"]["packages"] == 1
    assert runs[0].report["dependency_layer"]["layer"] == runs[1].report["dependency_layer"]["layer"]
    assert runs[1].report["dependency_layer"]["reused"] is True


def test_a_new_dependency_set_is_built_over_the_largest_cached_layer_inside_it(cache_dir, debs, tmp_path):
    import uuid
    token = uuid.uuid4().hex  # a dependency no earlier run has seen: its layers are new
    common = DebSpec("pp-stack-common", files={"/usr/share/pp-stack-common/token": token + "\n"})
    small = DebSpec("pp-stack-small", depends="pp-stack-common")
    large = DebSpec("pp-stack-large", depends="pp-stack-common, pp-depleaver")
    repo = make_repo(tmp_path / "repo", [debs(common), debs(DEP_LEAVER)])
    runs = {}
    for n, spec in enumerate((small, large, large)):
        (tmp_path / str(n)).mkdir()
        runs[n] = piuparts(cache_dir, tmp_path / str(n), "--extra-repo", repo, "--no-upgrade-test", str(debs(spec)))
    first, second, third = (runs[n].report["dependency_layer"] for n in range(3))
    assert runs[0].returncode == 0 and runs[0].findings() == [], runs[0].stdout
    assert first["packages"] == 1 and first["reused"] is False and "over" not in first
    # Only pp-depleaver is installed, over the layer that holds pp-stack-common.
    assert second["over"] == first["layer"] and second["installed"] == 1 and second["packages"] == 2
    assert second["reused"] is False
    assert f"Dependencies: 1 packages over the cached layer {first['layer']} (1 packages)" in runs[1].stdout
    # The stacked layers are purged like one: the same verdict and findings as without any
    # layer (--purge-dependencies), the unowned leftovers blamed on the dependencies.
    (tmp_path / "3").mkdir()
    without = piuparts(cache_dir, tmp_path / "3", "--extra-repo", repo, "--no-upgrade-test", "--purge-dependencies",
                       "--severity", "dependency-leftovers=fail", str(debs(large)))
    for run in (runs[1], runs[2], without):
        assert run.returncode == 1, run.stdout + run.stderr
        assert {(f["check"], f["subject"], blame_text(f)) for f in run.findings()} == {
            ("dependency-leftovers", "/etc/pp-depleaver/", "pp-depleaver, pp-stack-common"),
            ("dependency-leftovers", "/etc/pp-depleaver/state", "pp-depleaver, pp-stack-common")}
    assert third["layer"] == second["layer"] and third["reused"] is True and third["packages"] == 2
    # Another package with the same dependencies (so another remembered answer) finds that
    # stack by what it holds, though it was stored under the name of the layer it was built over.
    (tmp_path / "4").mkdir()
    twin = piuparts(cache_dir, tmp_path / "4", "--extra-repo", repo, "--no-upgrade-test",
                    str(debs(DebSpec("pp-stack-twin", depends="pp-depleaver, pp-stack-common"))))
    assert twin.returncode == 1, twin.stdout + twin.stderr
    fourth = twin.report["dependency_layer"]
    assert (fourth["layer"], fourth["reused"], fourth["packages"]) == (second["layer"], True, 2)
    assert "Dependencies: 2 packages from the cached layer" in twin.stdout
    assert leaks(cache_dir) == []
