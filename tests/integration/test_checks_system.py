"""End to end: the symlinks, diversions, alternatives and users checks on fixture .debs.

Each check has a fixture that trips it with exactly the expected findings
and a clean counterpart, doing the matching cleanup, that passes the whole
run with no finding at all.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from piuparts import aptsources
from piuparts.backends import Backend, BaseSpec
from piuparts.checks import Context
from piuparts.checks.symlinks import Symlinks
from piuparts.options import conf_dir, host_architecture
from piuparts.state import Ignores
from tests.debs import CLEAN, DebSpec, LinkSpec, make_repo
from tests.integration.helpers import Run, leaks, piuparts, blame_text, owner_text

pytestmark = [pytest.mark.root, pytest.mark.network]


# A path that exists on the host but not in the instance: a link to it is broken there.
# A file the test makes on the host, in a directory a chroot's /var/tmp does
# not have (whatever directory the checkout is in): the check must look for
# the target inside the chroot, not on the host.
HOST_ONLY_DIR = Path(f"/var/tmp/pp-host-only-{os.getpid()}")
HOST_ONLY = str(HOST_ONLY_DIR / "target")

BROKEN_LINKS = LinkSpec("pp-brokenlinks", links={
    "/usr/share/pp-brokenlinks/missing": "../pp-brokenlinks/nothing-here",
    "/usr/share/pp-brokenlinks/host-only": HOST_ONLY,
    "/usr/share/pp-brokenlinks/good": "/usr/bin/true",
}, scripts={
    "postinst": 'if [ "$1" = configure ]; then ln -sf /nonexistent/pp /etc/pp-brokenlinks.conf; fi',
    "postrm": 'if [ "$1" = purge ]; then rm -f /etc/pp-brokenlinks.conf; fi'})
GOOD_LINKS = LinkSpec("pp-goodlinks", links={
    "/usr/share/pp-goodlinks/relative": "../doc/pp-goodlinks/README",
    "/usr/share/pp-goodlinks/absolute": "/usr/share/doc/pp-goodlinks/README",
    "/usr/share/pp-goodlinks/chain": "relative",
    "/usr/share/pp-goodlinks/via-usrmerge": "/bin/true",
    "/usr/share/pp-goodlinks/dir": "../../lib/../share/pp-goodlinks",
    "/usr/share/pp-goodlinks/runtime": "/run/pp-goodlinks/socket",
}, scripts={
    "postinst": 'if [ "$1" = configure ]; then ln -sf /usr/bin/true /etc/pp-goodlinks.conf; fi',
    "postrm": 'if [ "$1" = purge ]; then rm -f /etc/pp-goodlinks.conf; fi'})

DIVERT = "dpkg-divert --add --rename --divert /usr/bin/pp-foo.real /usr/bin/pp-foo"
DIVERT_LEFT = DebSpec("pp-divert", scripts={"postinst": f'if [ "$1" = configure ]; then {DIVERT}; fi'})
DIVERT_CLEAN = DebSpec("pp-divert-clean", scripts={
    "postinst": f'if [ "$1" = configure ]; then {DIVERT}; fi',
    "postrm": 'if [ "$1" = remove ]; then dpkg-divert --remove --rename --divert /usr/bin/pp-foo.real '
              '/usr/bin/pp-foo; fi'})
# Takes away a diversion the base has (dash's, of sh(1)), without moving files.
# Without DPKG_MAINTSCRIPT_ARCH dpkg-divert does not take the request (made
# from an Architecture: all package) for a Multi-Arch shared diversion.
UNDIVERT_BASE = DebSpec("pp-undivert", scripts={
    "postinst": 'if [ "$1" = configure ]; then env -u DPKG_MAINTSCRIPT_ARCH '
                'dpkg-divert --package dash --no-rename --remove /usr/share/man/man1/sh.1.gz; fi'})

ALTERNATIVE = "update-alternatives --install /usr/bin/ppalt ppalt /usr/bin/true 10"
ALTERNATIVE_LEFT = DebSpec("pp-alt", scripts={"postinst": f'if [ "$1" = configure ]; then {ALTERNATIVE}; fi'})
ALTERNATIVE_CLEAN = DebSpec("pp-alt-clean", scripts={
    "postinst": f'if [ "$1" = configure ]; then {ALTERNATIVE}; fi',
    "postrm": 'if [ "$1" = remove ]; then update-alternatives --remove ppalt /usr/bin/true; fi'})

ADD_USER = "getent passwd ppuser >/dev/null || useradd --system ppuser"
USER_LEFT = DebSpec("pp-user", scripts={"postinst": f'if [ "$1" = configure ]; then {ADD_USER}; fi'})
USER_CLEAN = DebSpec("pp-user-clean", scripts={
    "postinst": f'if [ "$1" = configure ]; then {ADD_USER}; fi',
    "postrm": 'if [ "$1" = purge ]; then userdel ppuser; fi'})


# Hooks that fail the run unless the clean fixture really made what its scripts
# then take away: a clean verdict means the check saw it made and undone.
PROOFS = {
    "diversion": "dpkg-divert --list /usr/bin/pp-foo | "
                 "grep -qx 'diversion of /usr/bin/pp-foo to /usr/bin/pp-foo.real by pp-divert-clean'",
    "alternative": "update-alternatives --query ppalt | grep -qx 'Value: /usr/bin/true' && "
                   "[ \"$(readlink /usr/bin/ppalt)\" = /etc/alternatives/ppalt ]",
    "user": "getent passwd ppuser && getent group ppuser",
    "links": "ok=yes; for l in relative absolute chain via-usrmerge dir; do "
             "[ -L /usr/share/pp-goodlinks/$l ] && [ -e /usr/share/pp-goodlinks/$l ] || ok=no; done; "
             "[ $ok = yes ] && [ -L /usr/share/pp-goodlinks/runtime ] && "
             "[ \"$(readlink -f /etc/pp-goodlinks.conf)\" = /usr/bin/true ]",
}


def proof_hooks(tmp_path: Path, what: str) -> str:
    """A --scriptsdir whose post_install hook fails unless ``what`` exists."""
    hooks = tmp_path / f"hooks-{what}"
    hooks.mkdir()
    script = hooks / "post_install_proof"
    script.write_text(f"#!/bin/sh\n{PROOFS[what]} || {{ echo 'no {what} after the install' >&2; exit 1; }}\n")
    script.chmod(0o755)
    return str(hooks)


def assert_proved(run: Run) -> None:
    """The proof hook ran after the install in every scenario, and passed."""
    ran = [s for s in run.report["scenarios"] if not s["skipped"]]
    assert ran and run.stdout.count("Running post_install scripts: post_install_proof") == len(ran)
    assert run.findings("hooks") == []


def found(run: Run) -> set[tuple[str, str, str, str, str | None, str | None]]:
    """Every finding as (check, severity, subject, message, owner, blame)."""
    return {(f["check"], f["severity"], f["subject"], f["message"], owner_text(f), blame_text(f)) for f in run.findings()}


def assert_clean(run: Run) -> None:
    """The run passed with no finding at all."""
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["verdict"] == "PASS"
    assert run.findings() == []


def test_broken_symlinks_are_blamed_on_their_owner(cache_dir, debs, tmp_path):
    HOST_ONLY_DIR.mkdir(exist_ok=True)
    Path(HOST_ONLY).write_text("on the host only\n")
    try:
        run = piuparts(cache_dir, tmp_path, "--fail-on-broken-symlinks", str(debs(BROKEN_LINKS)))
    finally:
        shutil.rmtree(HOST_ONLY_DIR)
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {
        ("symlinks", "fail", "/etc/pp-brokenlinks.conf",
         "broken symlink -> /nonexistent/pp (/nonexistent does not exist)", "not owned", "pp-brokenlinks"),
        ("symlinks", "fail", "/usr/share/pp-brokenlinks/host-only",
         f"broken symlink -> {HOST_ONLY} ({HOST_ONLY_DIR} does not exist)",
         "owned by pp-brokenlinks", "pp-brokenlinks"),
        ("symlinks", "fail", "/usr/share/pp-brokenlinks/missing",
         "broken symlink -> ../pp-brokenlinks/nothing-here (/usr/share/pp-brokenlinks/nothing-here does not exist)",
         "owned by pp-brokenlinks", "pp-brokenlinks"),
        # adequate sees the package's own two, said for the piuparts log (never the verdict)
        ("adequate", "info", f"broken-symlink /usr/share/pp-brokenlinks/host-only -> {HOST_ONLY}",
         "reported by adequate, judged by the symlinks check", None, "pp-brokenlinks"),
        ("adequate", "info", "broken-symlink /usr/share/pp-brokenlinks/missing -> ../pp-brokenlinks/nothing-here",
         "reported by adequate, judged by the symlinks check", None, "pp-brokenlinks")}
    assert "FAIL: pp-brokenlinks_1.0-1" in run.stdout
    assert leaks(cache_dir) == []


def test_broken_symlinks_are_a_warning_by_default_as_in_piuparts(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(BROKEN_LINKS)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [f["severity"] for f in run.findings("symlinks")] == ["warn"] * 3
    assert [f["severity"] for f in run.findings("adequate")] == ["info"] * 2
    assert len(run.findings()) == 5
    assert leaks(cache_dir) == []


def test_no_symlinks_skips_the_check(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "-N", str(debs(BROKEN_LINKS)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings("symlinks") == []
    # as with piuparts -N: adequate still says what it saw, which weighs nothing
    assert {f["severity"] for f in run.findings()} == {"info"}


def test_good_symlinks_pass(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", proof_hooks(tmp_path, "links"), str(debs(GOOD_LINKS)))
    # adequate calls the link into /run broken; the symlinks check knows a running system makes it
    assert [(f["check"], f["severity"], f["subject"]) for f in run.findings()] == [
        ("adequate", "info", "broken-symlink /usr/share/pp-goodlinks/runtime -> /run/pp-goodlinks/socket")]
    assert (run.returncode, run.report["verdict"]) == (0, "PASS"), run.stdout + run.stderr
    assert_proved(run)
    assert leaks(cache_dir) == []

# dbus's way: an override added by postinst and removed by postrm purge, which
# leaves an empty /var/lib/dpkg/statoverride where the base had none.
STATOVERRIDE_LEFT = DebSpec("pp-so", scripts={
    "postinst": 'if [ "$1" = configure ]; then dpkg-statoverride --list /usr/share/doc/pp-so >/dev/null || '
                'dpkg-statoverride --add root root 0700 /usr/share/doc/pp-so; fi'})
STATOVERRIDE_CLEAN = DebSpec("pp-so-clean", scripts={
    "postinst": 'if [ "$1" = configure ]; then dpkg-statoverride --list /usr/share/doc/pp-so-clean >/dev/null || '
                'dpkg-statoverride --add root root 0700 /usr/share/doc/pp-so-clean; fi',
    "postrm": 'if [ "$1" = purge ] && dpkg-statoverride --list /usr/share/doc/pp-so-clean >/dev/null; then '
              'dpkg-statoverride --remove /usr/share/doc/pp-so-clean; fi'})


def test_stat_override_left_after_purge_fails(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(STATOVERRIDE_LEFT)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {("statoverride", "fail", "/usr/share/doc/pp-so",
                           "stat override added and left after purge (root root 700)", None, "pp-so")}
    assert leaks(cache_dir) == []


def test_stat_override_removed_on_purge_passes_though_the_file_stays(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(STATOVERRIDE_CLEAN)))
    assert_clean(run)
    assert leaks(cache_dir) == []


# puppet-agent's way (bookworm): overrides on its own directories, never removed on purge.
STATOVERRIDE_DEP = DebSpec("pp-so-dep", files={"/usr/share/pp-so-dep/README": "x\n"}, scripts={
    "postinst": 'if [ "$1" = configure ]; then dpkg-statoverride --list /usr/share/pp-so-dep >/dev/null || '
                'dpkg-statoverride --add root root 0700 /usr/share/pp-so-dep; fi'})
STATOVERRIDE_USER = DebSpec("pp-so-user", depends="pp-so-dep, pp-so-other")


def test_stat_override_a_dependency_left_is_blamed_on_its_owner(cache_dir, debs, tmp_path):
    repo = make_repo(tmp_path / "repo", [debs(STATOVERRIDE_DEP), debs(DebSpec("pp-so-other"))])
    run = piuparts(cache_dir, tmp_path, "--extra-repo", repo, "--no-upgrade-test", str(debs(STATOVERRIDE_USER)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {("statoverride", "fail", "/usr/share/pp-so-dep",
                           "stat override added and left after purge (root root 700)", None, "pp-so-dep")}
    assert leaks(cache_dir) == []


def test_diversion_left_after_purge_fails(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(DIVERT_LEFT)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {("diversions", "fail", "/usr/bin/pp-foo",
                           "diverted to /usr/bin/pp-foo.real by pp-divert, not removed by the purge",
                           None, "pp-divert")}
    assert leaks(cache_dir) == []


def test_diversion_of_the_base_removed_fails(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(UNDIVERT_BASE)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert found(run) == {("diversions", "fail", "/usr/share/man/man1/sh.1.gz",
                           "diversion to /usr/share/man/man1/sh.distrib.1.gz by dash (there before the install) "
                           "was removed", None, "pp-undivert")}
    assert leaks(cache_dir) == []


def test_diversion_removed_by_postrm_passes(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", proof_hooks(tmp_path, "diversion"), str(debs(DIVERT_CLEAN)))
    assert_clean(run)
    assert_proved(run)
    assert leaks(cache_dir) == []


def test_alternative_left_after_purge_fails(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(ALTERNATIVE_LEFT)))
    assert run.returncode == 1, run.stdout + run.stderr
    # The registration is the alternatives check's; its links are files left behind.
    assert found(run) == {
        ("alternatives", "fail", "ppalt",
         "alternative left after purge: /usr/bin/ppalt -> /usr/bin/true (auto; choices /usr/bin/true 10)",
         None, "pp-alt"),
        ("leftovers", "fail", "/etc/alternatives/ppalt", "left behind after purge", "not owned", "pp-alt"),
        ("leftovers", "fail", "/usr/bin/ppalt", "left behind after purge", "not owned", "pp-alt")}
    assert leaks(cache_dir) == []


def test_alternative_removed_by_postrm_passes(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", proof_hooks(tmp_path, "alternative"), str(debs(ALTERNATIVE_CLEAN)))
    assert_clean(run)
    assert_proved(run)
    assert leaks(cache_dir) == []


def test_user_left_after_purge_is_a_warning(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, str(debs(USER_LEFT)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["verdict"] == "PASS"
    assert found(run) == {
        ("users", "warn", "user ppuser",
         "added and left after purge (uid 999, gid 999, home /home/ppuser, shell /bin/sh)", None, "pp-user"),
        ("users", "warn", "group ppuser", "added and left after purge (gid 999)", None, "pp-user")}
    assert "WARN: user ppuser: added and left after purge" in run.stdout
    assert leaks(cache_dir) == []


def test_user_removed_by_postrm_passes(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", proof_hooks(tmp_path, "user"), str(debs(USER_CLEAN)))
    assert_clean(run)
    assert_proved(run)
    assert leaks(cache_dir) == []


@pytest.mark.parametrize("what", PROOFS)
def test_the_proof_hooks_fail_when_nothing_was_made(cache_dir, debs, tmp_path, what):
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--scriptsdir", proof_hooks(tmp_path, what),
                   str(debs(CLEAN)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert [(f["check"], f["subject"], f["message"]) for f in run.findings()] == [
        ("hooks", "post_install_proof", f"post_install_proof exited with 1: no {what} after the install")]


def test_symlinks_from_the_upper_dir_and_the_full_walk_agree(cache_dir, debs):
    """Both ways of finding new symlinks give the same findings on a real install."""
    dist, mirror = aptsources.default_distribution_and_mirror(aptsources.read_host_sources(),
                                                              aptsources.host_codename())
    backend = Backend.create("debootstrap", BaseSpec(dist, mirror, host_architecture()), cache_dir)
    ignores = Ignores.load(conf_dir() / "ignores.conf")
    try:
        with backend.instance() as chroot:
            walked = dataclasses.replace(chroot, upper=None, lower=None)
            contexts = [Context(c, ["pp-brokenlinks"], ignores, ("pp-brokenlinks",)) for c in (chroot, walked)]
            checks = [Symlinks(), Symlinks()]
            for check, ctx in zip(checks, contexts):
                check.before_install(ctx)
            target = chroot.copy_in(debs(BROKEN_LINKS), "/tmp/piuparts-debs")
            assert chroot.run(["apt-get", "-y", "install", target]).ok
            by_upper, by_walk = (check.after_install(ctx) for check, ctx in zip(checks, contexts))
    finally:
        backend.close()
    assert by_upper == by_walk
    assert sorted(f.subject for f in by_walk) == ["/etc/pp-brokenlinks.conf", "/usr/share/pp-brokenlinks/host-only",
                                                  "/usr/share/pp-brokenlinks/missing"]
    assert leaks(cache_dir) == []
