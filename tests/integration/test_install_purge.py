"""End to end: the real command on a real debootstrap base with fixture .debs."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET

import pytest

from piuparts import resources
from tests.debs import DebSpec, ASKING_POSTINST, CLEAN, DAEMON, FAILING_POSTINST, LEFTOVER, PIDNS_PROBE, SLOW_POSTINST
from tests.integration.helpers import leaks, piuparts, blame_text, owner_text

pytestmark = [pytest.mark.root, pytest.mark.network]


def test_clean_package_passes(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS: pp-clean_1.0-1" in run.stdout
    assert run.report["verdict"] == "PASS"
    assert run.findings() == []
    steps = [s["name"] for s in run.report["scenarios"][0]["steps"]]
    assert steps == ["install", "remove", "purge"]
    assert leaks(cache_dir) == []


def test_a_cache_directory_given_through_a_symbolic_link(cache_dir, debs, tmp_path):
    # /var/cache a link to a bigger disk: the kernel names the instance's root
    # resolved, and the harness must find it (and its processes, its mounts) so.
    link = tmp_path / "cache-link"
    link.symlink_to(cache_dir)
    run = piuparts(link, tmp_path, str(debs(LEFTOVER)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert {f["subject"] for f in run.findings()} == {"/etc/x/", "/etc/x/generated.conf"}
    assert leaks(cache_dir) == [] and resources.processes_under(cache_dir) == []


def test_leftover_is_reported_with_exactly_its_paths(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(LEFTOVER)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.report["verdict"] == "FAIL"
    found = {(f["subject"], owner_text(f), blame_text(f)) for f in run.findings()}
    assert found == {("/etc/x/", "not owned", "pp-leftover"),
                     ("/etc/x/generated.conf", "not owned", "pp-leftover")}
    assert "/etc/x/generated.conf (not owned): left behind after purge" in run.stdout
    assert "FAIL: pp-leftover_1.0-1" in run.stdout
    assert leaks(cache_dir) == []


def test_failing_postinst_fails_the_install_step(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(FAILING_POSTINST)))
    assert run.returncode == 1, run.stdout + run.stderr
    steps = run.report["scenarios"][0]["steps"]
    assert [(s["name"], s["ok"]) for s in steps] == [("install", False)]
    message = steps[0]["message"]
    assert message.startswith("install failed:")
    assert "pp-failpostinst package post-installation script subprocess returned error exit status 1" in message
    assert [f["subject"] for f in run.findings("steps")] == ["install"]
    assert leaks(cache_dir) == []


def test_archive_package_passes(cache_dir, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--apt", "--purge-dependencies", "python3-oslo.i18n")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["verdict"] == "PASS"
    steps = run.report["scenarios"][0]["steps"]
    assert [s["name"] for s in steps] == ["install dependencies", "install", "remove", "purge"]
    install = steps[1]
    assert install["commands"][0]["cmdline"].endswith("apt-get -y install python3-oslo.i18n")
    assert install["commands"][0]["returncode"] == 0
    assert leaks(cache_dir) == []


def test_log_shows_commands_timings_and_instance_start(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "-l", str(tmp_path / "full.log"), str(debs(CLEAN)))
    lines = run.stdout.splitlines()
    # the terminal: the command inside the instance; -l: the whole line, its confinement included
    assert any(re.search(r"^\d+m[\d.]+s INFO: \$ \[/\S+/instances/[^/ ]+/root\] eatmydata apt-get -y install "
                         r"/tmp/piuparts-debs/pp-clean_1\.0-1_all\.deb$", line) for line in lines), run.stdout
    assert not any("nsenter" in line for line in lines)
    full = (tmp_path / "full.log").read_text()
    assert re.search(r"INFO: \$ DEBIAN_FRONTEND=noninteractive .*nsenter .* -- eatmydata apt-get -y install "
                     r"/tmp/piuparts-debs/pp-clean_1\.0-1_all\.deb$", full, re.M), full
    assert any("INFO:   exit 0 in" in line for line in lines)
    assert any("Instance " in line and " started in " in line for line in lines)
    assert any("Snapshots took" in line for line in lines)


def test_process_left_running_is_reported_and_ended(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(DAEMON)))
    assert run.returncode == 1, run.stdout + run.stderr
    found = [(f["subject"], f["message"].split(" (pid")[0], blame_text(f)) for f in run.findings()]
    assert found == [("sleep 600", "still running after purge", "pp-daemon")]
    assert resources.processes_under(cache_dir) == []
    assert leaks(cache_dir) == []


# Leaves a daemon that keeps making and deleting files while the snapshots walk the tree.
CHURNING_DAEMON = DebSpec("pp-churn", scripts={"postinst": """\
mkdir -p /var/lib/pp-churn
cd /var/lib/pp-churn
setsid sh -c 'while :; do i=0; while [ $i -lt 300 ]; do : > f$i; i=$((i+1)); done; rm -f f*; done' \
    </dev/null >/dev/null 2>&1 &"""})


def test_files_vanishing_during_a_snapshot_are_absent_not_an_error(cache_dir, debs, tmp_path):
    for _ in range(3):  # each run gives the race many chances; three runs make a miss unlikely
        run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(CHURNING_DAEMON)))
        assert run.returncode == 1, run.stdout + run.stderr
        assert "internal error" not in run.stderr
        found = {(f["check"], f["subject"]) for f in run.findings()}
        assert ("leftovers", "/var/lib/pp-churn/") in found
        assert any(check == "processes" and subject.startswith("sh -c while") for check, subject in found), found
    assert resources.processes_under(cache_dir) == []
    assert leaks(cache_dir) == []


@pytest.mark.parametrize("spec, failures", [(LEFTOVER, "1"), (CLEAN, "0")])
def test_junit_report(cache_dir, debs, tmp_path, spec, failures):
    junit = tmp_path / "junit.xml"
    run = piuparts(cache_dir, tmp_path, "--junit", str(junit), str(debs(spec)))
    assert run.returncode == int(failures)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", failures, "1")
    case, upgrade = suite.iter("testcase")
    assert (case.get("classname"), case.get("name")) == ("piuparts.install-purge", spec.name)
    assert (upgrade.get("classname"), upgrade.get("name")) == ("piuparts.install-upgrade-purge", spec.name)
    assert upgrade.find("skipped").get("message") == f"apt knows no older version of {spec.name}"
    failure = case.find("failure")
    if failures == "0":
        assert failure is None
        return
    assert failure.get("message") == "leftovers: /etc/x/ (not owned): left behind after purge"
    assert failure.text.splitlines() == [
        "FAIL [leftovers] /etc/x/ (not owned): left behind after purge",
        "FAIL [leftovers] /etc/x/generated.conf (not owned): left behind after purge"]


def test_hung_postinst_is_killed_at_the_time_limit(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--max-command-runtime", "5", str(debs(SLOW_POSTINST)))
    assert run.returncode == 1, run.stdout + run.stderr
    [step] = run.report["scenarios"][0]["steps"]
    assert (step["name"], step["ok"], step["commands"][0]["timed_out"]) == ("install", False, True)
    assert step["message"].startswith("install did not finish within 5 s and was killed")
    assert 5 <= step["elapsed"] < 20
    assert resources.processes_under(cache_dir) == []
    assert leaks(cache_dir) == []


def test_postinst_asking_on_the_terminal_fails_fast_quoting_the_question(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--prompt-timeout", "3", str(debs(ASKING_POSTINST)))
    assert run.returncode == 1, run.stdout + run.stderr
    [step] = run.report["scenarios"][0]["steps"]
    assert (step["name"], step["ok"], step["commands"][0]["timed_out"]) == ("install", False, False)
    assert step["message"] == ("install waited for an answer on the terminal and was killed; "
                               "the question: 'Really configure pp-askpostinst? [y/N]'")
    assert 3 <= step["elapsed"] < 15
    assert "FAIL: pp-askpostinst_1.0-1" in run.stdout
    assert resources.processes_under(cache_dir) == []
    assert leaks(cache_dir) == []


# Other ways a postinst waits for an answer; the i386 runs see the 32-bit system call numbers.
ASKING = {
    "dev-tty": DebSpec("pp-ask-tty", scripts={
        "postinst": 'if [ "$1" = configure ]; then printf "Really configure? [y/N] "; read answer </dev/tty; fi'}),
    "select": DebSpec("pp-ask-select", scripts={
        "postinst": 'if [ "$1" = configure ]; then perl -e \'$| = 1; print "Really configure? [y/N] "; '
                    'vec($r, 0, 1) = 1; select($r, undef, undef, undef)\'; fi'}),
    "stdin": dataclasses.replace(ASKING_POSTINST, name="pp-ask-stdin"),
    "whiptail": DebSpec("pp-ask-whiptail", depends="whiptail", scripts={
        "postinst": 'if [ "$1" = configure ]; then TERM=xterm whiptail --yesno "Really configure?" 8 40; fi'}),
}


@pytest.mark.parametrize("arch, how", [("amd64", "dev-tty"), ("amd64", "select"), ("amd64", "whiptail"),
                                       ("i386", "stdin"),
                                       ("i386", "dev-tty"), ("i386", "select")])
def test_postinst_asking_any_way_fails_within_the_prompt_timeout(cache_dir, debs, tmp_path, arch, how):
    spec = ASKING[how]
    run = piuparts(cache_dir, tmp_path, "--arch", arch, "--prompt-timeout", "2", "--max-command-runtime", "240",
                   "--no-upgrade-test", str(debs(spec)))
    assert run.returncode == 1, run.stdout + run.stderr
    [step] = run.report["scenarios"][0]["steps"]
    assert (step["name"], step["ok"], step["commands"][0]["timed_out"]) == ("install", False, False)
    question = {"stdin": "Really configure pp-askpostinst? [y/N]",
                "whiptail": "Really configure? <Yes> <No>"}.get(how, "Really configure? [y/N]")
    assert step["message"] == f"install waited for an answer on the terminal and was killed; the question: {question!r}"
    assert resources.processes_under(cache_dir) == []
    assert leaks(cache_dir) == []


def test_maintainer_scripts_run_in_their_own_pid_namespace(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(PIDNS_PROBE)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []


def test_a_check_can_be_made_a_warning(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--severity", "leftovers=warn", str(debs(LEFTOVER)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert {(f["subject"], f["severity"]) for f in run.findings()} == {("/etc/x/", "warn"),
                                                                       ("/etc/x/generated.conf", "warn")}
    assert "WARN: /etc/x/generated.conf (not owned): left behind after purge" in run.stdout


def test_a_check_can_be_skipped(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--severity", "leftovers=skip", str(debs(LEFTOVER)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []


def test_archive_package_again_downloads_nothing_and_reuses_its_dependency_layer(cache_dir, tmp_path):
    first = piuparts(cache_dir, tmp_path, "--apt", "python3-oslo.i18n")
    assert first.returncode == 0, first.stdout + first.stderr
    again = piuparts(cache_dir, tmp_path, "-v", "--apt", "python3-oslo.i18n")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [s["name"] for s in again.report["scenarios"][0]["steps"]] == ["install", "remove", "purge"]
    assert again.report["dependency_layer"]["reused"] is True
    assert again.report["dependency_layer"]["layer"] == first.report["dependency_layer"]["layer"]
    assert "Took 1 of 1 packages from the .deb cache" in again.stdout
    assert re.findall(r"\| Get:\d+ \S+", again.stdout) == []  # apt fetched nothing
    # nor was apt asked what to fetch: the remembered answer says it along with the layer,
    # and with all of it in the instance no --download-only pass goes before the install
    assert "--print-uris" not in again.stdout and "--simulate" not in again.stdout
    assert "--download-only" not in again.stdout
    assert leaks(cache_dir) == []


def test_a_deb_the_cache_lacks_is_downloaded_by_the_harness_from_the_runs_mirror(cache_dir, tmp_path):
    first = piuparts(cache_dir, tmp_path, "--apt", "python3-oslo.i18n")
    assert first.returncode == 0, first.stdout + first.stderr
    removed = {deb.name: deb.read_bytes() for deb in (cache_dir / "debs").glob("python3-oslo.i18n_*.deb")}
    for name in removed:  # (other tests keep other releases' versions there too)
        (cache_dir / "debs" / name).unlink()
    again = piuparts(cache_dir, tmp_path, "-v", "--apt", "python3-oslo.i18n")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Took 1 of 1 packages from the .deb cache" in again.stdout
    assert "(1 downloaded into it)" in again.stdout
    [cached] = (cache_dir / "debs").glob("python3-oslo.i18n_*.deb")
    assert cached.read_bytes() == removed[cached.name]  # the same file, checked against apt's checksum
    assert re.findall(r"\| Get:\d+ \S+", again.stdout) == [] and "--download-only" not in again.stdout
    assert leaks(cache_dir) == []


def test_a_run_says_how_much_of_its_tmpfs_it_used(cache_dir, tmp_path):
    big = DebSpec("pp-space", files={"/usr/share/pp-space/blob": "x" * (3 * 1024 * 1024)}).build(tmp_path)
    run = piuparts(cache_dir, tmp_path, "--tmpfs-size", "256m", "--no-upgrade-test", str(big))
    assert run.returncode == 0, run.stdout + run.stderr
    [scenario] = run.report["scenarios"]
    used = scenario["space_used"]
    assert used["after_install"] >= 3 * 1024 * 1024, used  # the blob, and what dpkg wrote besides
    assert used["after_purge"] < used["after_install"]
    assert leaks(cache_dir) == []
