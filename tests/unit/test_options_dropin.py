"""piuparts-ng as a drop-in for piuparts 1.1.7: every option of its command
line is accepted (and does its job, or says why it changes nothing here),
--version compares as piuparts' does, and the -l file carries the lines CI
wrappers parse (checked with jenkins-debian-glue's own converter)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from piuparts import api, cli, instance_setup, options
from piuparts.config import RunConfig
from piuparts.errors import UsageError
from piuparts.log import ElapsedFormatter
from piuparts.findings import FAIL, INFO, WARN, Finding
from piuparts.report import pilog
from piuparts.command import Result
from piuparts.scenarios import ScenarioResult, Step
from tests.debs import DebSpec

BASE = ["-d", "bookworm", "-m", "http://mirror.invalid/debian main", "--arch", "amd64", "--cache-dir", "/var/tmp/c"]

#: piuparts 1.1.7's options (every spelling of its --help) and a value for those that take one.
PIUPARTS_117 = {
    "-a": None, "--apt": None, "--arch": "amd64", "-b": "T", "--basetgz": "T", "--bindmount": "/srv",
    "-d": "bookworm", "--distribution": "bookworm", "-D": "debian", "--defaults": "debian",
    "--debfoster-options": "-o MaxPriority=required", "--no-eatmydata": None, "--dpkg-noforce-unsafe-io": None,
    "--dpkg-force-confdef": None, "--do-not-verify-signatures": None, "--no-check-valid-until": None,
    "--allow-database": None, "--distupgrade-to-testdebs": None, "--distupgrade-to-testdebs-from": "/srv",
    "-e": "/srv", "--existing-chroot": "/srv", "--hard-link": None, "-i": "/x", "--ignore": "/x",
    "-I": "/x/.*", "--ignore-regex": "/x/.*", "--ignore-regexp": "/x/.*", "--install-recommends": None,
    "--install-suggests": None, "-k": None, "--keep-env": None, "--keep-tmpdir": None, "-K": "K",
    "--keyring": "K", "--keep-sources-list": None, "-l": "L", "--log-file": "L", "--logfile": "L",
    "--list-installed-files": None, "--lvm-volume": "vg/lv", "--lvm-snapshot-size": "2G", "--schroot": "s",
    "--docker-image": "i", "--merged-usr": None, "-m": "http://m/debian", "--mirror": "http://m/debian",
    "--extra-repo": "deb http://r/ ./", "--testdebs-repo": "/srv", "--no-adequate": None,
    "--no-diversions": None, "-n": None, "--no-ignores": None, "-N": None, "--no-symlinks": None,
    "--upgrade-before-dist-upgrade": None, "--no-upgrade-test": None, "--no-install-purge-test": None,
    "--install-purge-install": None, "--install-remove-install": None, "--fake-essential-packages": "a,b",
    "--extra-old-packages": "a,b", "-p": None, "--pbuilder": None, "--pedantic-purge-test": None,
    "--proxy": "http://127.0.0.1:3128", "-s": "S", "--save": "S", "-B": "F", "--end-meta": "F", "-S": "F",
    "--save-end-meta": "F", "--single-changes-list": None, "--single-packages": None,
    "--skip-cronfiles-test": None, "--skip-logrotatefiles-test": None, "--skip-minimize": None,
    "--minimize": None, "--scriptsdir": "/srv", "--shell-on-error": None, "-t": "/tmp", "--tmpdir": "/tmp",
    "--update-retries": "3", "-v": None, "--verbose": None, "--warn-on-others": None,
    "--warn-on-leftovers-after-purge": None, "--warn-on-debsums-errors": None,
    "--warn-on-install-over-symlink": None, "--fail-if-inadequate": None, "--fail-on-broken-symlinks": None,
    "--warn-on-usr-move": "warn", "--log-level": "debug", "--max-command-output-size": "16",
}


def config(*argv: str) -> RunConfig:
    cfg, _ = cli.config_from_argv([*BASE, *argv])
    return cfg


def installed_piuparts_spellings() -> list[str]:
    """Every option spelling of the installed piuparts' --help."""
    text = subprocess.run(["/usr/sbin/piuparts", "--help"], capture_output=True, text=True).stdout
    spellings = []
    for line in text.splitlines():
        if re.match(r"^  -", line):
            for part in line.strip().split("  ")[0].split(", "):
                spellings.append(re.split(r"[= ]", part)[0])
    return spellings


@pytest.mark.parametrize(("option", "value"), sorted(PIUPARTS_117.items()))
def test_every_piuparts_option_parses(option, value):
    args = cli.parser().parse_args([option, *([value] if value is not None else []), "foo.deb"])
    assert args.packages == ["foo.deb"]


@pytest.mark.skipif(not Path("/usr/sbin/piuparts").exists(), reason="Debian's piuparts is not installed")
def test_the_list_covers_the_installed_piuparts():
    missing = set(installed_piuparts_spellings()) - set(PIUPARTS_117) - {"--version", "-h", "--help"}
    assert not missing


def test_the_readme_table_has_a_row_for_every_option():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### piuparts 1.1.7's options", 1)[1].split("\n## ", 1)[0]
    long_names = {o for o in PIUPARTS_117 if o.startswith("--")}
    assert sorted(o for o in long_names if f"`{o}" not in section and f", {o}" not in section) == []


@pytest.mark.parametrize(("short", "long"), [("-a", "apt"), ("-n", "no_ignores")])
def test_short_aliases(short, long):
    assert getattr(cli.parser().parse_args([short, "x"]), long) is True


def test_long_aliases():
    args = cli.parser().parse_args(["--logfile", "L", "--ignore-regexp", "/a/.*", "--keep-tmpdir", "x"])
    assert (args.log_file, args.ignore_regex, args.keep_env) == ("L", ["/a/.*"], True)


@pytest.mark.parametrize("attr", sorted(options.NO_EFFECT))
def test_an_option_that_changes_nothing_says_why_in_one_line(attr, caplog):
    option = "--" + attr.replace("_", "-")
    spelling = option if option in PIUPARTS_117 else {"end_meta": "-B", "save_end_meta": "-S",
                                                      "keep_env": "-k"}[attr]
    value = PIUPARTS_117[spelling]
    with caplog.at_level(logging.INFO, logger="piuparts"):
        config(spelling, *([value] if value is not None else []))
    said = [r.getMessage() for r in caplog.records if r.getMessage() == options.NO_EFFECT[attr]]
    assert len(said) == 1


def test_instance_options_make_the_instance_settings():
    cfg = config("--install-recommends", "--install-suggests", "--dpkg-force-confdef", "--no-check-valid-until",
                 "--do-not-verify-signatures", "--proxy", "http://127.0.0.1:3128", "--update-retries", "2")
    assert instance_setup.apt_conf(cfg) == (
        "// piuparts-ng: from the command line\n"
        'APT::Install-Recommends "true";\n'
        'APT::Install-Suggests "true";\n'
        'Dpkg::Options { "--force-confdef"; };\n'
        'APT::Get::AllowUnauthenticated "true";\n'
        'Acquire::AllowInsecureRepositories "true";\n'
        'Acquire::Check-Valid-Until "false";\n'
        'Acquire::http::Proxy "http://127.0.0.1:3128";\n'
        'Acquire::Retries "2";\n')
    assert instance_setup.dpkg_cfg(cfg) == "# piuparts-ng: from the command line\nforce-unsafe-io\nforce-confdef\n"
    assert cfg.purge_dependencies  # not from a cached layer made without these settings
    assert RunConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg


def test_no_options_no_instance_files_and_layers_stay():
    cfg = config()
    assert instance_setup.files(cfg) == {}
    assert not cfg.purge_dependencies


def test_a_given_base_gets_the_sources_minus_d_and_minus_m_name_as_piuparts_writes_them(tmp_path):
    tarball = tmp_path / "base.tgz"
    tarball.write_bytes(b"")
    given = config("-b", str(tarball))  # BASE gives -d bookworm -m 'http://mirror.invalid/debian main'
    assert given.apt_sources == "deb http://mirror.invalid/debian bookworm main\n"
    assert instance_setup.files(given)[instance_setup.SOURCES_LIST] == (given.apt_sources, "0644")
    assert given.purge_dependencies  # no cached layer resolved against the base's own sources
    assert RunConfig.from_json(json.loads(json.dumps(given.to_json()))) == given
    kept, _ = cli.config_from_argv(["-b", str(tarball), "--keep-sources-list", *BASE])
    assert kept.apt_sources is None
    assert config().apt_sources is None  # the debootstrap base is made from -d and -m
    mine, _ = cli.config_from_argv(["-b", str(tarball), "--arch", "amd64"])
    assert mine.apt_sources is None  # no -d, no -m: the base's own sources (piuparts would write sid's)


def test_no_eatmydata_and_no_unsafe_io():
    cfg = config("--no-eatmydata", "--dpkg-noforce-unsafe-io")
    made = instance_setup.files(cfg)
    assert made[instance_setup.EATMYDATA_SHIM] == ('#!/bin/sh\n# piuparts-ng: --no-eatmydata\nexec "$@"\n', "0755")
    assert made[instance_setup.DPKG_CFG] == ("# piuparts-ng: from the command line\n", "0644")


def test_allow_database_lets_the_database_servers_start_but_a_process_left_after_the_purge_still_fails():
    cfg = config("--allow-database")
    policy, mode = instance_setup.files(cfg)[instance_setup.POLICY_RC_D]
    assert mode == "0755"
    assert 'test "$1" = "postgresql" && exit 0\n' in policy and policy.endswith("exit 101\n")
    # piuparts 1.1.7 warns of processes while the packages are installed, and fails on one
    # left after the purge whatever --allow-database says (check_for_no_processes(fail=True))
    assert not any(check == "processes" for check, _ in cfg.severities)


def test_the_policy_script_allows_only_the_databases(tmp_path):
    script = tmp_path / "policy-rc.d"
    script.write_text(instance_setup.policy_rc_d(config("--allow-database")) or "")
    script.chmod(0o755)
    assert subprocess.run([str(script), "mariadb", "start"]).returncode == 0
    assert subprocess.run([str(script), "apache2", "start"]).returncode == 101


def test_fake_essential_packages_are_comma_lists():
    assert config("--fake-essential-packages", "a,b", "--fake-essential-packages", "c").fake_essential_packages \
        == ("a", "b", "c")


def test_pedantic_purge_test_counts_tmp():
    assert config().ignores.match("/tmp/left-behind") is not None
    assert config("--pedantic-purge-test").ignores.match("/tmp/left-behind") is None
    assert config("--pedantic-purge-test").ignores.match("/proc/1") is not None


def test_defaults_ubuntu_gives_ubuntu_components_and_asks_for_the_mirror():
    cfg, _ = cli.config_from_argv(["-D", "ubuntu", "-d", "jammy", "--arch", "amd64",
                                   "-m", "http://mirror.invalid/ubuntu"])
    assert (cfg.mirror, cfg.components) == ("http://mirror.invalid/ubuntu",
                                            ("main", "universe", "restricted", "multiverse"))
    with pytest.raises(UsageError, match=r"^-D ubuntu: give the Ubuntu mirror with -m"):
        cli.config_from_argv(["-D", "ubuntu", "-d", "jammy", "--arch", "amd64"])


def test_testdebs_repo_is_an_extra_source(tmp_path):
    cfg = config("--testdebs-repo", str(tmp_path), "--distupgrade-to-testdebs-from", str(tmp_path))
    assert cfg.extra_repos == (f"deb [trusted=yes] file://{tmp_path} ./",) * 2
    assert cfg.bindmounts == (tmp_path,)
    line = "deb http://r.invalid/ sid main"
    assert config("--testdebs-repo", line).extra_repos == (line,)


@pytest.mark.parametrize(("argv", "message"), [
    (["-D", "fedora"], "-D 'fedora': the defaults are 'debian' or 'ubuntu'"),
    (["--docker-image", "debian:bookworm"], "--docker-image debian:bookworm: not supported here"),
    (["-K", "/nonexistent.gpg"], "-K /nonexistent.gpg: no such file"),
    (["-t", "/nonexistent"], "-t /nonexistent: no such directory"),
    (["--proxy", "squid:3128"], "--proxy 'squid:3128': a proxy is a URL such as http://HOST:3128"),
    (["--update-retries", "-1"], "--update-retries must be 0 or more"),
])
def test_bad_values_are_one_line_usage_errors(argv, message):
    with pytest.raises(UsageError) as caught:
        config(*argv)
    assert str(caught.value).startswith(message)


def test_version_compares_as_a_recent_piuparts():
    version = cli.version_line().split()[1]
    assert cli.version_line().startswith("piuparts ")
    assert subprocess.run(["dpkg", "--compare-versions", version, "lt", "0.43"]).returncode != 0
    assert subprocess.run(["dpkg", "--compare-versions", version, "ge", "1.1.7"]).returncode == 0


def _changes(path: Path, debs: list[Path]) -> Path:
    files = "".join(f" {hashlib.md5(d.read_bytes()).hexdigest()} {d.stat().st_size} misc optional {d.name}\n"
                    for d in debs)
    sha = "".join(f" {hashlib.sha256(d.read_bytes()).hexdigest()} {d.stat().st_size} {d.name}\n" for d in debs)
    path.write_text(f"Format: 1.8\nSource: x\nVersion: 1.0-1\nFiles:\n{files}Checksums-Sha256:\n{sha}")
    return path


def test_each_changes_file_is_tested_on_its_own(tmp_path):
    a, b, c = (DebSpec(name).build(tmp_path) for name in ("pp-a", "pp-b", "pp-c"))
    first, second = _changes(tmp_path / "a.changes", [a]), _changes(tmp_path / "b.changes", [b])

    def labels(*argv: str) -> list[list[str]]:
        return [s.packages for s in cli.test_subjects(cli.parser().parse_args(list(argv)))]
    assert labels(str(first), str(second), str(c)) == [["pp-a"], ["pp-b"], ["pp-c"]]
    assert labels("--single-changes-list", str(first), str(second), str(c)) == [["pp-a", "pp-b", "pp-c"]]
    assert labels(str(c), str(a)) == [["pp-c", "pp-a"]]
    assert labels("--single-packages", str(c), str(a)) == [["pp-c"], ["pp-a"]]
    assert labels("--apt", "--single-packages", "x", "y=1") == [["x"], ["y"]]


# -- the -l file ------------------------------------------------------------------

def _result(scenarios: list[ScenarioResult], kind: str) -> api.RunResult:
    return api.RunResult(kind=kind, subject={"label": "pp-x_1.0-1", "packages": ["pp-x"]},
                         scenarios=[s.to_json() for s in scenarios])


def _failing_install() -> api.RunResult:
    ok = Result(("chroot", "/i/root", "eatmydata", "apt-get", "-y", "install", "dep"), 0, "", 1.0)
    bad = Result(("chroot", "/i/root", "eatmydata", "apt-get", "-y", "install", "/tmp/piuparts-debs/x.deb"),
                 100, "", 1.0)
    why = "install failed: installed pp-x package post-installation script subprocess returned error exit status 1"
    scenario = ScenarioResult("install-purge", steps=[Step("install dependencies", commands=[ok]),
                                                      Step("install", ok=False, message=why, commands=[bad])],
                              findings=[Finding("steps", FAIL, "install", why, blame=("pp-x",))])
    return _result([scenario], "fail")


def _leftovers_and_symlinks() -> api.RunResult:
    scenario = ScenarioResult("install-purge", findings=[
        Finding("leftovers", FAIL, "/etc/x/", "left behind after purge", owners=()),
        Finding("symlinks", WARN, "/usr/lib/x.so", "broken symlink -> x.so.1 (x.so.1 does not exist)",
                owners=("pp-x",))])
    return _result([scenario, ScenarioResult("install-upgrade-purge", skipped="no older version")], "fail")


def test_the_log_lines_of_a_failed_command():
    lines = pilog.result_lines([_failing_install()])
    assert lines == [
        (logging.DEBUG, "Command ok: ['chroot', '/i/root', 'eatmydata', 'apt-get', '-y', 'install', 'dep']"),
        (logging.ERROR, "Command failed (status=100): ['chroot', '/i/root', 'eatmydata', 'apt-get', '-y', "
                        "'install', '/tmp/piuparts-debs/x.deb']\n  install failed: installed pp-x package "
                        "post-installation script subprocess returned error exit status 1"),
        (logging.ERROR, "FAIL: Installation and purging test."),
        (logging.ERROR, "piuparts run ends.")]



def test_a_conffile_prompt_is_worded_for_the_conffile_prompt_category():
    bad = Result(("chroot", "/i/root", "eatmydata", "apt-get", "-y", "install", "/tmp/piuparts-debs/x.deb"),
                 -9, "", 1.0)
    why = "upgrade failed: dpkg asked about the conffile /etc/x.conf (a conffile prompt)"
    scenario = ScenarioResult("install-upgrade-purge", steps=[Step("upgrade", ok=False, message=why,
                                                                   commands=[bad])])
    [failed] = [text for _, text in pilog.command_lines(scenario.to_json()) if text.startswith("Command failed")]
    assert failed.splitlines()[1:] == [
        f"  {why}", "  as dpkg without a terminal says it: end of file on stdin at conffile prompt"]

def test_the_log_lines_of_findings_and_of_a_pass():
    lines = pilog.result_lines([_leftovers_and_symlinks()])
    assert lines == [
        (logging.ERROR, "FAIL: Package purging left files on system:\n  /etc/x/\t not owned (left behind after purge)"),
        (logging.ERROR, "WARN: Broken symlinks:\n  /usr/lib/x.so -> x.so.1 (pp-x)"),  # piuparts' form
        (logging.ERROR, "FAIL: Installation and purging test."),
        (logging.INFO, "SKIP: Installation, upgrade and purging tests. no older version"),
        (logging.ERROR, "piuparts run ends.")]
    assert pilog.result_lines([_result([ScenarioResult("install-purge")], "pass")])[-2:] == [
        (logging.INFO, "PASS: All tests."), (logging.INFO, "piuparts run ends.")]


def test_leftovers_and_adequate_are_worded_as_piuparts_words_them():
    # The master's known_problems read these: "After purging files have disappeared:",
    # "INFO: Warning: Package purging left files", "Running adequate resulted in ... TAG".
    scenario = ScenarioResult("install-purge", findings=[
        Finding("leftovers", WARN, "/etc/x/", "left behind after purge", owners=()),
        Finding("leftovers", FAIL, "/usr/bin/cmp", "removed (was there before the install)", owners=("diffutils",)),
        Finding("leftovers", FAIL, "/etc/issue", "modified: content changed", owners=("base-files",)),
        Finding("adequate", WARN, "missing-copyright-file /usr/share/doc/pp-x/copyright", "reported by adequate",
                blame=("pp-x",)),
        Finding("adequate", INFO, "broken-symlink /usr/share/pp-x/l -> /nowhere",
                "reported by adequate, judged by the symlinks check", blame=("pp-x",))])
    # adequate's block first (it runs after the install), its "less interesting" tags in it
    assert pilog.result_lines([_result([scenario], "fail")])[:-2] == [
        (logging.ERROR, "WARN: Inadequate results from running adequate!\n  pp-x: missing-copyright-file "
                        "/usr/share/doc/pp-x/copyright\n  pp-x: broken-symlink /usr/share/pp-x/l -> /nowhere"),
        (logging.ERROR, "WARN: Running adequate resulted in inadequate tags found:  missing-copyright-file "),
        (logging.ERROR, "WARN: Running adequate resulted in less interesting tags found:  broken-symlink "),
        (logging.ERROR, "FAIL: After purging files have been modified:\n  /etc/issue\t owned by: base-files "
                        "(modified: content changed)"),
        (logging.ERROR, "FAIL: After purging files have disappeared:\n  /usr/bin/cmp\t owned by: diffutils "
                        "(removed (was there before the install))"),
        (logging.INFO, "Warning: Package purging left files on system:\n  /etc/x/\t not owned "
                       "(left behind after purge)")]


def _tap(tmp_path: Path, result: api.RunResult) -> list[str]:
    """What jenkins-debian-glue's converter makes of our -l file."""
    log_file = pilog.LogFile(tmp_path / "piuparts.txt", ElapsedFormatter(time.time()), logging.INFO)
    log_file.finish([result])
    log_file.close()
    tap = subprocess.run(["jdg-tap-piuparts", str(tmp_path / "piuparts.txt")], capture_output=True, text=True,
                         check=True)
    return tap.stdout.splitlines()


needs_jdg = pytest.mark.skipif(shutil.which("jdg-tap-piuparts") is None and not os.environ.get("CI"),
                               reason="jenkins-debian-glue is not installed (./bootstrap installs it)")


@needs_jdg
def test_jenkins_debian_glue_sees_the_failed_command(tmp_path):
    tap = _tap(tmp_path, _failing_install())
    failed = [line for line in tap if line.startswith("not ok")]
    assert any("'install', '/tmp/piuparts-debs/x.deb']" in line for line in failed)
    assert any(line.startswith("ok ") and "'install', 'dep']" in line for line in tap)


@needs_jdg
def test_jenkins_debian_glue_sees_findings_and_broken_symlinks(tmp_path):
    failed = [line for line in _tap(tmp_path, _leftovers_and_symlinks()) if line.startswith("not ok")]
    assert [re.sub(r"^not ok \d+\s+", "", line) for line in failed] == [
        "Package purging left files on system:  /etc/x/\t not owned (left behind after purge)",
        "WARN: Broken symlinks:  /usr/lib/x.so -> x.so.1 (pp-x)",
        "Installation and purging test."]


@needs_jdg
def test_jenkins_debian_glue_sees_nothing_wrong_in_a_pass(tmp_path):
    assert not [line for line in _tap(tmp_path, _result([ScenarioResult("install-purge")], "pass"))
                if line.startswith("not ok")]


def _tree(top: Path, files: dict[str, str]) -> Path:
    for inner, text in files.items():
        (top / inner).parent.mkdir(parents=True, exist_ok=True)
        (top / inner).write_text(text)
    return top


def test_apt_update_follows_a_change_of_the_sources_only(tmp_path):
    from piuparts.chroot import Chroot
    base = {"etc/apt/sources.list.d/debian.sources": "Types: deb\n", "etc/apt/apt.conf.d/99x": "A;\n"}
    lower = _tree(tmp_path / "lower", base)
    same = Chroot(_tree(tmp_path / "same", {**base, "etc/apt/apt.conf.d/99y": "B;\n"}), (), lower=lower)
    added = Chroot(_tree(tmp_path / "added", {**base, "etc/apt/sources.list.d/extra_repository_0.sources": "x"}),
                   (), lower=lower)
    keyed = Chroot(_tree(tmp_path / "keyed", {**base, "etc/apt/keyrings/extra_apt_key_0.asc": "key"}), (),
                   lower=lower)
    assert not instance_setup.sources_changed(same, "hooks")
    assert instance_setup.sources_changed(added, "hooks")
    assert instance_setup.sources_changed(keyed, "hooks")
    assert instance_setup.sources_changed(Chroot(tmp_path / "same", ()), "hooks")  # no base to compare with: update
