"""End to end: the others-files, conffiles and cron-logrotate checks on fixture .debs."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.debs import DebSpec, make_repo
from tests.integration.helpers import leaks, piuparts, blame_text, owner_text

pytestmark = [pytest.mark.root, pytest.mark.network]


@dataclass(frozen=True)
class LocalDeb(DebSpec):
    """A DebSpec with conffiles and executable files (DebSpec has neither)."""

    conffiles: tuple[str, ...] = ()
    executables: tuple[str, ...] = ()

    def build(self, outdir: Path) -> Path:
        """Build with DebSpec, then unpack, add DEBIAN/conffiles and modes, and build again."""
        deb = super().build(outdir)
        tree = outdir / f"{self.name}-{self.version}.local"
        subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True, capture_output=True)
        if self.conffiles:
            (tree / "DEBIAN/conffiles").write_text("".join(path + "\n" for path in self.conffiles))
        for path in self.executables:
            (tree / path.lstrip("/")).chmod(0o755)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(deb)],
                       check=True, capture_output=True)
        return deb


# others-files: a file and a conffile of base-files changed by the postinst (and
# put back by the postrm, so that only the check after the install sees them).
MODIFIES_OTHERS = DebSpec("pp-modifies-others", scripts={
    "postinst": 'if [ "$1" = configure ]; then echo "# pp" >> /usr/lib/os-release; '
                'echo "# pp" >> /etc/issue.net; fi',
    "postrm": 'if [ "$1" = remove ]; then sed -i "$ d" /usr/lib/os-release /etc/issue.net; fi'})
# others-files: a file of apt removed; dpkg lists it as /lib/..., it lives in /usr/lib/... (usrmerge).
REMOVES_OTHERS = DebSpec("pp-removes-others", scripts={
    "postinst": "rm -f /lib/systemd/system/apt-daily.timer"})
# conffiles: dpkg deletes the conffile on purge, then the postrm writes it again.
CONFFILE_LEFT = LocalDeb(
    "pp-conffile-left", files={"/etc/pp-conffile-left/settings.conf": "# shipped\n"},
    conffiles=("/etc/pp-conffile-left/settings.conf",),
    scripts={"postrm": 'if [ "$1" = purge ]; then mkdir -p /etc/pp-conffile-left; '
                       'echo "# regenerated" > /etc/pp-conffile-left/settings.conf; fi'})
# Changes its own conffile and a file it ships: debsums -ac in piuparts reports both
# (Policy 10.7.3: maintainer scripts must not change a conffile, even their own).
OWN_FILES = LocalDeb(
    "pp-own-files", files={"/etc/pp-own-files/settings.conf": "# shipped\n",
                           "/usr/share/pp-own-files/data": "data\n"},
    conffiles=("/etc/pp-own-files/settings.conf",),
    scripts={"postinst": 'if [ "$1" = configure ]; then echo "# local" >> /etc/pp-own-files/settings.conf; '
                         'echo more >> /usr/share/pp-own-files/data; fi'})
# The clean counterpart of all three file checks: a conffile and a file it leaves
# as shipped, a file of its own it generates (and its purge removes).
OWN_FILES_CLEAN = LocalDeb(
    "pp-own-files-clean", files={"/etc/pp-own-files-clean/settings.conf": "# shipped\n",
                                 "/usr/share/pp-own-files-clean/data": "data\n"},
    conffiles=("/etc/pp-own-files-clean/settings.conf",),
    scripts={"postinst": 'if [ "$1" = configure ]; then cat /usr/share/pp-own-files-clean/data '
                         '> /etc/pp-own-files-clean/generated; fi',
             "postrm": 'if [ "$1" = purge ]; then rm -f /etc/pp-own-files-clean/generated; fi'})
# A dependency (from a repository) whose own postinst changes a file it ships, and a
# tested package that changes a file of its dependency: each is blamed on who did it.
DEP_SELF_MODIFIER = DebSpec("pp-dep-selfmod", files={"/usr/share/pp-dep-selfmod/data": "data\n"}, scripts={
    "postinst": 'if [ "$1" = configure ]; then echo local >> /usr/share/pp-dep-selfmod/data; fi'})
DEP_PLAIN = DebSpec("pp-dep-plain", files={"/usr/share/pp-dep-plain/data": "data\n"})
USES_SELFMOD = DebSpec("pp-uses-selfmod", depends="pp-dep-selfmod")
MODIFIES_DEP = DebSpec("pp-modifies-dep", depends="pp-dep-plain", scripts={
    "postinst": 'if [ "$1" = configure ]; then echo changed >> /usr/share/pp-dep-plain/data; fi'})

# Version 1 ships a conffile that version 2 no longer ships: after the upgrade dpkg keeps
# it, flagged obsolete, unless version 2's maintainer scripts remove it (rm_conffile).
OBSOLETE_V1 = {name: DebSpec(name, "1.0-1", files={f"/etc/{name}.conf": "# v1\n"}, conffiles=(f"/etc/{name}.conf",))
               for name in ("pp-obsolete", "pp-obsolete-clean")}
OBSOLETE_V2 = DebSpec("pp-obsolete", "2.0-1")
OBSOLETE_V2_CLEAN = DebSpec("pp-obsolete-clean", "2.0-1", scripts={
    name: 'dpkg-maintscript-helper rm_conffile /etc/pp-obsolete-clean.conf 2.0-1~ -- "$@"'
    for name in ("preinst", "postinst", "postrm")})

# Policy 10.8: a package's log files go with its purge (piuparts reports them).
LOGGER = 'if [ "$1" = configure ]; then mkdir -p /var/log/pp-logger; echo started > /var/log/pp-logger/pp.log; ' \
    'echo started > /var/log/pp-logger.log; fi'
LOGS_LEFT = DebSpec("pp-logger", scripts={"postinst": LOGGER})
LOGS_PURGED = DebSpec("pp-logger-clean", scripts={
    "postinst": LOGGER,
    "postrm": 'if [ "$1" = purge ]; then rm -rf /var/log/pp-logger /var/log/pp-logger.log; fi'})

CRON_FILES = ("/etc/cron.daily/ppcron", "/etc/cron.d/ppcron", "/etc/logrotate.d/ppcron")
TOOL = {"/usr/bin/ppcron-tool": "#!/bin/sh\nexit 0\n"}
# cron-logrotate: every job runs the package's tool without checking it is still there.
CRON_UNGUARDED = LocalDeb("pp-cron", files={
    **TOOL,
    "/etc/cron.daily/ppcron": "#!/bin/sh\n/usr/bin/ppcron-tool daily\n",
    "/etc/cron.d/ppcron": "MAILTO=root\n17 * * * * root /usr/bin/ppcron-tool hourly\n",
    "/etc/logrotate.d/ppcron": "/var/log/ppcron.log {\n\tmissingok\n\tpostrotate\n"
                               "\t\t/usr/bin/ppcron-tool reopen-logs\n\tendscript\n}\n"},
    conffiles=CRON_FILES, executables=("/usr/bin/ppcron-tool", "/etc/cron.daily/ppcron"))
CRON_GUARDED = LocalDeb("pp-cron-guarded", files={
    **TOOL,
    "/etc/cron.daily/ppcron": "#!/bin/sh\n[ -x /usr/bin/ppcron-tool ] || exit 0\n/usr/bin/ppcron-tool daily\n",
    "/etc/cron.d/ppcron": "17 * * * * root test -x /usr/bin/ppcron-tool && /usr/bin/ppcron-tool hourly\n"
                          "@daily nobody [ ! -x /usr/bin/ppcron-tool ] || /usr/bin/ppcron-tool daily\n",
    "/etc/logrotate.d/ppcron": "/var/log/ppcron.log {\n\tmissingok\n\tpostrotate\n"
                               "\t\t[ ! -x /usr/bin/ppcron-tool ] || /usr/bin/ppcron-tool reopen-logs\n"
                               "\tendscript\n}\n"},
    conffiles=CRON_FILES, executables=("/usr/bin/ppcron-tool", "/etc/cron.daily/ppcron"))
# cron-logrotate with logrotate installed (pulled in): ``logrotate -f`` runs the config;
# without missingok a log that does not exist is an error.
ROTATE = "/var/log/pp-logrotate.log {\n\tpostrotate\n\t\t/usr/bin/pp-tool reopen\n\tendscript\n}\n"
LOGROTATE_STRICT = LocalDeb("pp-logrotate-strict", depends="logrotate",
                            files={"/etc/logrotate.d/pp-logrotate-strict": ROTATE},
                            conffiles=("/etc/logrotate.d/pp-logrotate-strict",))
LOGROTATE_MISSINGOK = LocalDeb("pp-logrotate-missingok", depends="logrotate",
                               files={"/etc/logrotate.d/pp-logrotate-missingok": ROTATE.replace("{\n", "{\n\tmissingok\n")},
                               conffiles=("/etc/logrotate.d/pp-logrotate-missingok",))


def found(run, *checks: str) -> set[tuple[str, ...]]:
    """(check, subject, owner, blame, message) of the findings of ``checks`` (of all checks if none)."""
    return {(f["check"], f["subject"], owner_text(f), blame_text(f), f["message"])
            for f in run.findings() if not checks or f["check"] in checks}


def test_files_of_other_packages_modified_after_install(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(MODIFIES_OTHERS)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {
        ("others-files", "/usr/lib/os-release", "owned by base-files", "pp-modifies-others", "modified after install"),
        ("others-files", "/etc/issue.net", "owned by base-files", "pp-modifies-others", "conffile modified after install")}
    assert "others-files" in run.report["scenarios"][0]["timings"]
    assert leaks(cache_dir) == []


def test_file_of_another_package_removed_is_reported_where_it_lives(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(REMOVES_OTHERS)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run, "others-files") == {("others-files", "/usr/lib/systemd/system/apt-daily.timer", "owned by apt",
                                           "pp-removes-others", "removed after install")}
    # Still gone after the purge: others-files claimed the path, so leftovers does not repeat it.
    assert run.findings("leftovers") == []
    assert leaks(cache_dir) == []


def test_conffile_recreated_after_purge(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(CONFFILE_LEFT)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run, "conffiles") == {("conffiles", "/etc/pp-conffile-left/settings.conf", "not owned",
                                        "pp-conffile-left", "conffile not removed by purge")}
    # The conffile is claimed by its own check; its directory is still a leftover.
    assert {f["subject"] for f in run.findings("leftovers")} == {"/etc/pp-conffile-left/"}
    assert leaks(cache_dir) == []


def test_package_changing_its_own_shipped_files_fails_as_with_debsums(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(OWN_FILES)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {
        ("others-files", "/etc/pp-own-files/settings.conf", "owned by pp-own-files", "pp-own-files",
         "conffile modified after install"),
        ("others-files", "/usr/share/pp-own-files/data", "owned by pp-own-files", "pp-own-files",
         "modified after install")}
    assert leaks(cache_dir) == []


def test_package_leaving_its_shipped_files_alone_passes(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(OWN_FILES_CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    assert leaks(cache_dir) == []


# A dependency's own scripts run in the test only with --purge-dependencies (a cached
# layer was made without the tested package: see piuparts.layers).
@pytest.mark.parametrize("spec, path, blamed, mode", [
    (USES_SELFMOD, "/usr/share/pp-dep-selfmod/data", "pp-dep-selfmod", "--purge-dependencies"),
    (MODIFIES_DEP, "/usr/share/pp-dep-plain/data", "pp-modifies-dep", "--purge-dependencies"),
    (MODIFIES_DEP, "/usr/share/pp-dep-plain/data", "pp-modifies-dep", "--no-upgrade-test")])
def test_changed_files_of_dependencies_are_blamed_on_who_changed_them(cache_dir, debs, tmp_path, spec, path,
                                                                       blamed, mode):
    repo = make_repo(tmp_path / "repo", [debs(DEP_SELF_MODIFIER), debs(DEP_PLAIN)])
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", mode, "--extra-repo", repo, str(debs(spec)))
    assert run.returncode == 1, run.stdout + run.stderr
    owner = path.split("/")[3]
    assert found(run, "others-files") == {("others-files", path, f"owned by {owner}", blamed, "modified after install")}
    assert leaks(cache_dir) == []


#: Its preinst makes a directory inside one its dependency ships, and nothing removes it
#: (python3-django-horizon's openstack_dashboard/local/enabled/ under /usr/lib/python3/).
INSIDE_DEP = DebSpec("pp-inside-dep", depends="pp-dep-plain", scripts={
    "preinst": 'mkdir -p /usr/share/pp-dep-plain/local/enabled'})


#: Its postinst writes a file into the directory its dependency ships, its purge removes
#: the file: the dependency, purged first, could not remove its directory
#: (neutron-metadata-agent's ini file in neutron-common's /etc/neutron/).
FILE_IN_DEP = DebSpec("pp-file-in-dep", depends="pp-dep-plain", scripts={
    "postinst": 'if [ "$1" = configure ]; then echo x > /usr/share/pp-dep-plain/mine.conf; fi',
    "postrm": 'if [ "$1" = purge ]; then rm -f /usr/share/pp-dep-plain/mine.conf; fi'})


@pytest.mark.parametrize("mode", ["--no-upgrade-test", "--purge-dependencies"])
def test_a_dependency_directory_kept_by_the_packages_file_is_the_packages(cache_dir, debs, tmp_path, mode):
    repo = make_repo(tmp_path / "repo", [debs(DEP_PLAIN)])
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", mode, "--extra-repo", repo, str(debs(FILE_IN_DEP)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {("leftovers", "/usr/share/pp-dep-plain/", "not owned", "pp-file-in-dep",
                           "left behind after purge")}
    assert leaks(cache_dir) == []


@pytest.mark.parametrize("mode", ["--no-upgrade-test", "--purge-dependencies"])
def test_a_dependency_directory_kept_by_the_packages_leftover_is_the_packages(cache_dir, debs, tmp_path, mode):
    # dpkg cannot remove the dependency's /usr/share/pp-dep-plain/ at its
    # purge: the tested package's leftover is inside.  That is the tested
    # package's fault, not the dependency's (the night blamed 219
    # dependencies of python3-django-horizon for /usr/lib/python3/).
    repo = make_repo(tmp_path / "repo", [debs(DEP_PLAIN)])
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", mode, "--extra-repo", repo, str(debs(INSIDE_DEP)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {
        ("leftovers", path, "not owned", "pp-inside-dep", "left behind after purge")
        for path in ("/usr/share/pp-dep-plain/", "/usr/share/pp-dep-plain/local/",
                     "/usr/share/pp-dep-plain/local/enabled/")}
    assert leaks(cache_dir) == []


def test_obsolete_conffile_after_the_upgrade_is_a_warning_naming_the_fix(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(spec) for spec in OBSOLETE_V1.values()])
    run = piuparts(cache_dir, tmp_path, "--extra-repo", repo, str(debs(OBSOLETE_V2)))
    assert run.returncode == 0, run.stdout + run.stderr
    upgrade = {s["name"]: s for s in run.report["scenarios"]}["install-upgrade-purge"]
    assert upgrade["verdict"] == "PASS"
    assert [(f["check"], f["severity"], f["subject"], owner_text(f), blame_text(f), f["message"])
            for f in run.findings()] == [
        ("obsolete-conffiles", "warn", "/etc/pp-obsolete.conf", "owned by pp-obsolete", "pp-obsolete",
         "obsolete conffile after the upgrade to 2.0-1: pp-obsolete no longer ships it, yet it stays until the "
         "purge; remove it on upgrade with 'rm_conffile /etc/pp-obsolete.conf 2.0-1~' in "
         "debian/pp-obsolete.maintscript (dpkg-maintscript-helper(1))"),
        ("adequate", "info", "obsolete-conffile /etc/pp-obsolete.conf", None, "pp-obsolete",
         "reported by adequate, judged by the obsolete-conffiles check")]
    # what piuparts-master's boring_obsolete_conffile_inadequate_issue looks for, as piuparts says it
    conf = Path("/usr/share/piuparts/known_problems/boring_obsolete_conffile_inadequate_issue.conf")
    pattern = (conf.read_text().split("PATTERN='", 1)[1].split("'", 1)[0] if conf.exists()  # piuparts-common
               else "(FAIL|WARN): Running adequate resulted in less interesting tags found: .* obsolete-conffile")
    assert re.search(pattern, run.stdout), run.stdout[-2000:]
    assert leaks(cache_dir) == []


def test_conffile_removed_on_upgrade_with_rm_conffile_passes(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(spec) for spec in OBSOLETE_V1.values()])
    run = piuparts(cache_dir, tmp_path, "--extra-repo", repo, str(debs(OBSOLETE_V2_CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [s["verdict"] for s in run.report["scenarios"]] == ["PASS", "PASS"]
    assert run.findings() == []
    assert leaks(cache_dir) == []


def test_log_files_left_after_purge_are_reported(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(LOGS_LEFT)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {
        ("leftovers", path, "not owned", "pp-logger", "left behind after purge")
        for path in ("/var/log/pp-logger/", "/var/log/pp-logger/pp.log", "/var/log/pp-logger.log")}
    assert leaks(cache_dir) == []


def test_log_files_removed_by_purge_pass_and_the_system_logs_are_ignored(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "-v", "--no-upgrade-test", str(debs(LOGS_PURGED)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    # dpkg and apt wrote their logs; -v says which rule hid them.
    assert "ignored /var/log/dpkg.log (rule /var/log/(alternatives|dpkg|bootstrap|fontconfig)\\.log from " \
        in run.stdout + run.stderr
    assert leaks(cache_dir) == []


def test_cron_and_logrotate_files_failing_with_the_package_removed(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(CRON_UNGUARDED)))
    assert run.returncode == 1, run.stdout + run.stderr
    findings = {f["subject"]: f for f in run.findings("cron-logrotate")}
    assert sorted(findings) == sorted(CRON_FILES)
    assert {(owner_text(f), blame_text(f), f["severity"]) for f in findings.values()} == {("owned by pp-cron", "pp-cron", "fail")}
    assert findings["/etc/cron.daily/ppcron"]["message"] == (
        "cron.daily script exited 127 with the package removed: "
        "/etc/cron.daily/ppcron: 2: /usr/bin/ppcron-tool: not found")
    assert findings["/etc/cron.d/ppcron"]["message"] == (
        "line 2 (root) exited 127 with the package removed: /bin/sh: 1: /usr/bin/ppcron-tool: not found")
    assert findings["/etc/logrotate.d/ppcron"]["message"] == (
        "postrotate script exited 127 with the package removed: logrotate_script: 1: /usr/bin/ppcron-tool: not found")
    assert [f["check"] for f in run.findings()] == ["cron-logrotate"] * 3
    assert leaks(cache_dir) == []


def test_guarded_cron_and_logrotate_files_pass(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(CRON_GUARDED)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    assert "line 1 exited 1 without output (cron ignores the exit status)" in run.stdout
    assert leaks(cache_dir) == []


def test_cron_check_can_be_skipped(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--severity", "cron-logrotate=skip", str(debs(CRON_UNGUARDED)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []


@pytest.mark.parametrize("spec, expected", [
    (LOGROTATE_STRICT, {("cron-logrotate", "/etc/logrotate.d/pp-logrotate-strict", "owned by pp-logrotate-strict",
                         "pp-logrotate-strict", "logrotate -f exited 1 with the package removed: "
                         "error: stat of /var/log/pp-logrotate.log failed: No such file or directory")}),
    (LOGROTATE_MISSINGOK, set())])
def test_logrotate_runs_the_config_when_installed(cache_dir, debs, tmp_path, spec, expected):
    # Only this check's findings: cron, which logrotate pulls in, leaves things of its own after purge.
    run = piuparts(cache_dir, tmp_path, str(debs(spec)))
    assert found(run, "cron-logrotate") == expected, run.stdout + run.stderr
    assert "/usr/sbin/logrotate -f -s /tmp/piuparts-ng-logrotate.state /etc/logrotate.d/" + spec.name in run.stdout
    assert leaks(cache_dir) == []


# adequate (installed on the host by ./bootstrap) reports a package without its copyright file.
NO_COPYRIGHT = DebSpec("pp-nocopyright", copyright=False)
INADEQUATE = ("adequate", "missing-copyright-file /usr/share/doc/pp-nocopyright/copyright", None, "pp-nocopyright",
              "reported by adequate")


@pytest.mark.parametrize("option, code, severity", [(None, 0, "warn"), ("--fail-if-inadequate", 1, "fail"),
                                                    ("--no-adequate", 0, None)])
def test_adequate_runs_as_in_piuparts(cache_dir, debs, tmp_path, option, code, severity):
    assert shutil.which("adequate"), "adequate is not installed on the host (./bootstrap installs it)"
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", *([option] if option else []), str(debs(NO_COPYRIGHT)))
    assert run.returncode == code, run.stdout + run.stderr
    assert found(run) == ({INADEQUATE} if severity else set())
    assert [f["severity"] for f in run.findings()] == ([severity] if severity else [])
    assert leaks(cache_dir) == []
