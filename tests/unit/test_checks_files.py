"""The others-files, conffiles and cron-logrotate checks: parsing, resolving, and the checks on a fake root."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from piuparts.checks import Check, Context
from piuparts.checks.conffiles import Conffiles
from piuparts.checks.cron_logrotate import (CronJob, RUN_PARTS_NAME, cron_argv, cron_command, outcome,
                                            parse_cron_d, parse_cron_line, parse_logrotate_scripts, shipped_files)
from piuparts.dpkgdb import (Resolver, ancestors, file_state, parse_conffiles, parse_diversions,
                                        parse_md5sums, parse_status_conffiles)
from piuparts.checks.others_files import Expected, OthersFiles, describe, suspects, upper_changes
from piuparts.chroot import Chroot
from piuparts.command import Result
from piuparts.findings import FAIL
from piuparts.state import Ignores

#: md5 of "WORD\n", by WORD.
MD5 = {word: hashlib.md5(f"{word}\n".encode()).hexdigest() for word in ("one", "two", "conf", "mine")}


def test_the_checks_are_registered_failing_by_default():
    assert [Check.registry[n].default_severity for n in ("others-files", "conffiles", "cron-logrotate")] \
        == [FAIL, FAIL, FAIL]


# -- dpkg's database ----------------------------------------------------------

def test_parse_md5sums():
    text = (f"{MD5['one']}  usr/share/doc/a b/README\n"
            f"{MD5['two']} *bin/tool\n"
            "not-a-digest  usr/x\n\n"
            f"{MD5['one']}  \n")
    assert parse_md5sums(text) == {"/usr/share/doc/a b/README": MD5["one"], "/bin/tool": MD5["two"]}


def test_parse_conffiles_drops_flags():
    assert parse_conffiles("/etc/a.conf\nremove-on-upgrade /etc/old.conf\n\n/etc/with space\n") == \
        ["/etc/a.conf", "/etc/old.conf", "/etc/with space"]


STATUS = f"""\
Package: base-files
Status: install ok installed
Conffiles:
 /etc/issue {MD5['conf']}
 /etc/gone {MD5['one']} obsolete
 /etc/kept {MD5['two']} remove-on-upgrade
 /etc/new newconffile
Description: x
 continued

Package: libfoo
Status: install ok installed
Multi-Arch: same
Architecture: amd64
Conffiles:
 /etc/foo/a conf {MD5['one']}

Package: removed
Status: deinstall ok config-files
Conffiles:
 /etc/removed {MD5['one']}
"""


def test_parse_status_conffiles():
    assert parse_status_conffiles(STATUS) == {
        "base-files": {"/etc/issue": MD5["conf"], "/etc/kept": MD5["two"]},
        "libfoo:amd64": {"/etc/foo/a conf": MD5["one"]}}


def test_parse_diversions():
    assert parse_diversions("/bin/sh\n/bin/sh.distrib\ndash\n/etc/x\n/etc/x.orig\n:\n") == {
        "/bin/sh": ("/bin/sh.distrib", "dash"), "/etc/x": ("/etc/x.orig", ":")}
    assert parse_diversions("") == {}


def test_ancestors():
    assert list(ancestors("/a/b/c")) == ["/a", "/a/b"]
    assert list(ancestors("/a")) == []


# -- paths inside a root --------------------------------------------------------

def test_resolver_follows_symlinks_inside_the_root_only(tmp_path):
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("x")
    (root / "bin").symlink_to("usr/bin")             # usrmerge, relative
    (root / "sbin").symlink_to("/usr/bin")           # absolute: inside the root, not the host's /usr/bin
    (root / "up").symlink_to("../../../../../usr")   # cannot climb out of the root
    (root / "loop").symlink_to("loop")
    resolver = Resolver(root)
    assert resolver.physical("/bin/tool") == "/usr/bin/tool"
    assert resolver.physical("/sbin/tool") == "/usr/bin/tool"
    assert resolver.physical("/up/bin/tool") == "/usr/bin/tool"
    assert resolver.host("/bin/tool") == f"{root}/usr/bin/tool"
    assert resolver.physical("/loop/x") is None
    assert resolver.physical("/missing/x") is None
    assert resolver.physical("/bin") == "/bin"  # the last component is not followed


def test_file_state(tmp_path):
    (tmp_path / "f").write_text("one\n")
    (tmp_path / "l").symlink_to("f")
    resolver = Resolver(tmp_path)
    assert file_state(resolver, "/f") == MD5["one"]
    assert file_state(resolver, "/l") == "<symlink>"
    assert file_state(resolver, "/nothing") is None
    assert file_state(resolver, "/f/below") is None


def test_upper_changes_and_suspects(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/changed").write_text("x")
    (upper / "var/cache/apt").mkdir(parents=True)
    (upper / "var/cache/apt/pruned.deb").write_text("x")
    if os.geteuid() == 0:
        os.mknod(upper / "usr", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout of the whole of /usr
    changed, hiding = upper_changes(upper, Ignores([("/var/cache/apt/.*", "test")]))
    assert {"/etc", "/etc/changed", "/var/cache/apt"} <= changed
    assert "/var/cache/apt/pruned.deb" not in changed
    assert "/etc" not in hiding and "/etc/changed" in hiding
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    expected = {path: Expected("p", MD5["one"], False, path)
                for path in ("/etc/changed", "/etc/same", "/usr/bin/tool")}
    whiteout = ["/usr/bin/tool"] if os.geteuid() == 0 else []
    assert suspects(expected, changed, hiding, Resolver(root)) == ["/etc/changed", *whiteout]


def test_describe():
    plain, conf = Expected("p", "", False, "/a"), Expected("p", "", True, "/a")
    assert describe("0" * 32, plain, "/a", "after install") == "modified after install"
    assert describe(None, conf, "/a", "after purge") == "conffile removed after purge"
    assert describe("<symlink>", plain, "/a", "after install") == "replaced by a symlink after install"
    moved = Expected("p", "", False, "/a.distrib")
    assert describe(None, moved, "/a", "after install") == "removed after install (diverted from /a)"


# -- others-files and conffiles on a fake root ----------------------------------

def _write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def fake_root(root: Path) -> None:
    """base-files (a file, a conffile, one file already modified in the base), a file
    the tested package took over, and the tested package's own conffile."""
    info = "/var/lib/dpkg/info"
    _write(root, f"{info}/base-files.md5sums",
           f"{MD5['one']}  usr/lib/os-release\n{MD5['one']}  usr/share/edited\n{MD5['one']}  usr/share/taken\n")
    _write(root, f"{info}/base-files.list", "/usr/lib/os-release\n/usr/share/edited\n/etc/issue\n")
    _write(root, f"{info}/pp.md5sums", f"{MD5['mine']}  usr/share/pp/data\n")
    _write(root, f"{info}/pp.list", "/usr/share/pp/data\n/usr/share/taken\n/etc/pp.conf\n")
    _write(root, f"{info}/pp.conffiles", "/etc/pp.conf\n")
    _write(root, "/var/lib/dpkg/status", f"Package: base-files\nStatus: install ok installed\n"
                                         f"Conffiles:\n /etc/issue {MD5['conf']}\n")
    for path, text in (("/usr/lib/os-release", "one\n"), ("/usr/share/edited", "edited before\n"),
                       ("/usr/share/taken", "one\n"), ("/etc/issue", "conf\n"), ("/usr/share/pp/data", "mine\n"),
                       ("/etc/pp.conf", "conf\n")):
        _write(root, path, text)


def context(root: Path, upper: Path | None = None, lower: Path | None = None, ignores: Ignores | None = None) -> Context:
    chroot = Chroot(root, ("chroot", str(root)), upper=upper, lower=lower)
    return Context(chroot, ["pp"], ignores or Ignores(), ("pp",), installed_before={"base-files": "ii "})


def _install_effects(root: Path) -> None:
    _write(root, "/usr/lib/os-release", "changed\n")          # another package's file: reported
    (root / "etc/issue").unlink()                              # another package's conffile: reported
    _write(root, "/usr/share/taken", "the tested package's now\n")  # taken over (Replaces): not reported
    _write(root, "/usr/share/pp/data", "changed by its own package\n")  # the tested package's: reported


EXPECTED = [("/etc/issue", ("base-files",), ("pp",), "conffile removed after install"),
            ("/usr/lib/os-release", ("base-files",), ("pp",), "modified after install"),
            ("/usr/share/pp/data", ("pp",), ("pp",), "modified after install")]


def test_others_files_without_an_overlay_hashes_everything(tmp_path):
    fake_root(tmp_path)
    check, ctx = OthersFiles(), context(tmp_path)
    check.before_install(ctx)
    _install_effects(tmp_path)
    found = check.after_install(ctx)
    assert [(f.subject, f.owners, f.blame, f.message) for f in found] == EXPECTED
    assert check.after_purge(ctx) == []  # still changed, but reported once
    assert "others-files" in ctx.timings


def test_others_files_with_an_overlay_reads_only_the_upper_directory(tmp_path):
    lower, upper, root = tmp_path / "lower", tmp_path / "upper", tmp_path / "root"
    fake_root(lower)
    upper.mkdir()
    check, ctx = OthersFiles(), context(root, upper, lower)
    shutil.copytree(lower, root, symlinks=True)
    check.before_install(ctx)
    _install_effects(root)
    # What the overlay's upper directory would hold (a whiteout needs root: a plain file stands in).
    for path in ("/usr/lib/os-release", "/etc/issue", "/usr/share/taken", "/usr/share/pp/data"):
        _write(upper, path, "")
    found = check.after_install(ctx)
    assert [(f.subject, f.owners, f.blame, f.message) for f in found] == EXPECTED


def test_others_files_honours_ignore_rules(tmp_path):
    fake_root(tmp_path)
    check, ctx = OthersFiles(), context(tmp_path, ignores=Ignores([("/usr/lib/os-release", "test")]))
    check.before_install(ctx)
    _install_effects(tmp_path)
    assert [f.subject for f in check.after_install(ctx)] == ["/etc/issue", "/usr/share/pp/data"]


def test_conffiles_left_after_purge(tmp_path):
    fake_root(tmp_path)
    check, ctx = Conffiles(), context(tmp_path)
    check.before_install(ctx)
    assert check.after_install(ctx) == []
    for listing in ("pp.list", "pp.conffiles", "pp.md5sums"):
        (tmp_path / "var/lib/dpkg/info" / listing).unlink()
    found = check.after_purge(ctx)
    assert [(f.check, f.subject, f.owners, f.blame, f.message) for f in found] == [
        ("conffiles", "/etc/pp.conf", (), ("pp",), "conffile not removed by purge")]
    (tmp_path / "etc/pp.conf").unlink()
    assert check.after_purge(ctx) == []


# -- cron and logrotate -----------------------------------------------------------

def test_cron_command_stops_at_the_first_unescaped_percent():
    assert cron_command("date +\\%s > /tmp/x%stdin text%more") == "date +%s > /tmp/x"
    assert cron_command("  plain  ") == "plain"


def test_parse_cron_line():
    assert parse_cron_line("17 *\t* * *  root  cd / && run-parts --report /etc/cron.hourly") == \
        ("root", "cd / && run-parts --report /etc/cron.hourly")
    assert parse_cron_line("@reboot www-data /usr/bin/foo --boot") == ("www-data", "/usr/bin/foo --boot")
    for line in ("# 17 * * * * root x", "", "   ", "@sometimes root x", "17 * * * * root"):
        assert parse_cron_line(line) is None, line


def test_parse_cron_d_keeps_the_variables_set_above_each_job():
    text = ("# comment\nSHELL=/bin/bash\nPATH = \"/usr/bin:/bin\"\n"
            "*/5 * * * * root test -x /usr/sbin/foo && foo\n"
            "MAILTO=\"\"\n@daily nobody bar %input\n")
    assert parse_cron_d(text) == [
        CronJob(4, "root", "test -x /usr/sbin/foo && foo", (("SHELL", "/bin/bash"), ("PATH", "/usr/bin:/bin"))),
        CronJob(6, "nobody", "bar", (("SHELL", "/bin/bash"), ("PATH", "/usr/bin:/bin"), ("MAILTO", "")))]


def test_cron_argv():
    assert cron_argv(CronJob(1, "root", "x")) == ["/bin/sh", "-c", "x"]
    assert cron_argv(CronJob(1, "nobody", "x", (("SHELL", "/bin/bash"), ("A", "b c")))) == \
        ["runuser", "-u", "nobody", "--", "env", "SHELL=/bin/bash", "A=b c", "/bin/bash", "-c", "x"]


def test_run_parts_names():
    assert [n for n in ("ppcron", "pp-cron_2", "pp.sh", "ppcron.dpkg-old", "x~") if RUN_PARTS_NAME.fullmatch(n)] \
        == ["ppcron", "pp-cron_2"]


LOGROTATE = """\
# global
weekly
/var/log/foo.log
"/var/log/foo/*.log" {
    missingok
    sharedscripts
    prerotate
        test -d /run/foo || exit 0
    endscript
    postrotate
        invoke-rc.d foo rotate >/dev/null
        echo done
    endscript
}
/var/log/bar.log { daily
    lastaction
        /usr/bin/bar --reopen
    endscript
}
"""


def test_parse_logrotate_scripts():
    assert parse_logrotate_scripts(LOGROTATE) == [
        ("prerotate", "/var/log/foo.log", "        test -d /run/foo || exit 0"),
        ("postrotate", "/var/log/foo.log", "        invoke-rc.d foo rotate >/dev/null\n        echo done"),
        ("lastaction", "/var/log/bar.log", "        /usr/bin/bar --reopen")]
    assert parse_logrotate_scripts("/var/log/x {\n  missingok\n}\n") == []


def test_shipped_files(tmp_path):
    _write(tmp_path, "/var/lib/dpkg/info/pp.list", "/etc\n/etc/cron.d\n/etc/cron.d/pp\n/etc/cron.daily/pp\n"
                                                  "/etc/cron.daily/sub/deeper\n/etc/logrotate.d/pp\n/etc/crontab\n")
    _write(tmp_path, "/var/lib/dpkg/info/other.list", "/etc/cron.d/other\n")
    assert shipped_files(Chroot(tmp_path, ()), ["pp"]) == {
        "/etc/cron.d/pp": "pp", "/etc/cron.daily/pp": "pp", "/etc/logrotate.d/pp": "pp"}


def test_outcome():
    failed = Result(("x",), 127, "first\n/etc/cron.daily/pp: 2: tool: not found\n", 0.1, timeout=60)
    assert outcome(failed) == "exited 127 with the package removed: /etc/cron.daily/pp: 2: tool: not found"
    late = Result(("x",), -15, "", 60.0, timed_out=True, timeout=60)
    assert outcome(late) == "did not finish within 60 s with the package removed"


def test_parse_obsolete_conffiles():
    from piuparts.dpkgdb import parse_obsolete_conffiles
    status = (f"Package: pp\nStatus: install ok installed\nVersion: 2.0-1\nConffiles:\n /etc/pp.conf {MD5['conf']}\n"
              f" /etc/old name.conf {MD5['conf']} obsolete\n\n"
              f"Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nConffiles:\n /etc/g {MD5['conf']} obsolete\n")
    assert parse_obsolete_conffiles(status) == {"pp": ("2.0-1", ["/etc/old name.conf"])}


def test_parse_adequate_leaves_broken_symlinks_and_obsolete_conffiles_to_our_checks():
    from piuparts.checks.adequate import left_to, parse_adequate
    output = ("pp: missing-copyright-file /usr/share/doc/pp/copyright\n"
              "pp: broken-symlink /usr/share/pp/run -> /run/pp/socket\n"
              "pp:amd64: obsolete-conffile /etc/pp.conf\n"
              "other: library-not-found /usr/bin/other => libx.so.1\n"
              "pp:amd64: library-not-found /usr/bin/pp => libpp.so.1\n")
    found = parse_adequate(output, {"pp"})
    assert found == [("pp", "missing-copyright-file /usr/share/doc/pp/copyright"),
                     ("pp", "broken-symlink /usr/share/pp/run -> /run/pp/socket"),
                     ("pp", "obsolete-conffile /etc/pp.conf"),
                     ("pp", "library-not-found /usr/bin/pp => libpp.so.1")]
    assert [left_to(what) for _, what in found] == [None, "symlinks", "obsolete-conffiles", None]
