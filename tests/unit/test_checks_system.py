"""The symlinks, diversions, alternatives and users checks: parsing, comparing, resolving."""

from __future__ import annotations

import os
from pathlib import Path

from piuparts.checks import Check, alternatives, diversions, symlinks, users
from piuparts.checks.alternatives import Alternative
from piuparts.checks.diversions import Diversion
from piuparts.findings import FAIL, WARN
from piuparts.state import Ignores


def test_the_checks_are_registered_with_their_default_severities():
    assert [Check.registry[n].default_severity for n in ("symlinks", "diversions", "alternatives", "users")] \
        == [WARN, FAIL, FAIL, WARN]


# -- diversions --------------------------------------------------------------

DIVERT_LIST = """\
diversion of /usr/share/man/man1/sh.1.gz to /usr/share/man/man1/sh.distrib.1.gz by dash
diversion of /bin/sh to /bin/sh.distrib by dash
local diversion of /etc/issue to /etc/issue.orig
diversion of /usr/bin/my file to /usr/bin/my file.real by pp-divert
"""


def test_parse_diversions():
    assert diversions.parse_diversions(DIVERT_LIST) == {
        "/usr/share/man/man1/sh.1.gz": Diversion("/usr/share/man/man1/sh.distrib.1.gz", "dash"),
        "/bin/sh": Diversion("/bin/sh.distrib", "dash"),
        "/etc/issue": Diversion("/etc/issue.orig", None),
        "/usr/bin/my file": Diversion("/usr/bin/my file.real", "pp-divert"),
    }
    assert diversions.parse_diversions("") == {}


def test_compare_diversions():
    base = {"/bin/sh": Diversion("/bin/sh.distrib", "dash"), "/etc/issue": Diversion("/etc/issue.orig", None)}
    after = {"/bin/sh": Diversion("/bin/sh.other", "pp-x"), "/usr/bin/foo": Diversion("/usr/bin/foo.real", "pp-d")}
    assert diversions.compare(base, base) == []
    assert diversions.compare(base, after) == [
        ("/bin/sh", "diversion changed: was to /bin/sh.distrib by dash, now to /bin/sh.other by pp-x"),
        ("/etc/issue", "diversion to /etc/issue.orig (local) (there before the install) was removed"),
        ("/usr/bin/foo", "diverted to /usr/bin/foo.real by pp-d, not removed by the purge"),
    ]


# -- alternatives -------------------------------------------------------------

SELECTIONS = """\
awk                            auto     /usr/bin/mawk
pager                          manual   /bin/more
ppalt                          auto     /usr/bin/true
"""

AWK_DB = """\
auto
/usr/bin/awk
awk.1.gz
/usr/share/man/man1/awk.1.gz
nawk
/usr/bin/nawk

/usr/bin/mawk
5
/usr/share/man/man1/mawk.1.gz
/usr/bin/mawk
/usr/bin/gawk
10

/usr/bin/gawk

"""

PPALT_DB = "auto\n/usr/bin/ppalt\n\n/usr/bin/true\n10\n\n"


def test_parse_selections():
    warning = "update-alternatives: warning: forcing reinstallation of alternative /usr/bin/x\n"
    assert alternatives.parse_selections(warning + SELECTIONS) == {
        "awk": ("auto", "/usr/bin/mawk"), "pager": ("manual", "/bin/more"), "ppalt": ("auto", "/usr/bin/true")}


def test_parse_db_with_and_without_slaves():
    assert alternatives.parse_db(AWK_DB) == ("/usr/bin/awk", (("/usr/bin/mawk", "5"), ("/usr/bin/gawk", "10")))
    assert alternatives.parse_db(PPALT_DB) == ("/usr/bin/ppalt", (("/usr/bin/true", "10"),))
    assert alternatives.parse_db("") == ("", ())


def test_compare_alternatives():
    awk = Alternative("auto", "/usr/bin/mawk", "/usr/bin/awk", (("/usr/bin/mawk", "5"),))
    before = {"awk": awk, "pager": Alternative("auto", "/bin/more", "/usr/bin/pager")}
    after = {"awk": Alternative("manual", "/usr/bin/gawk", "/usr/bin/awk", (("/usr/bin/gawk", "10"),)),
             "ppalt": Alternative("auto", "/usr/bin/true", "/usr/bin/ppalt", (("/usr/bin/true", "10"),))}
    assert alternatives.compare(before, before) == []
    assert alternatives.compare(before, after) == [
        ("awk", "choice /usr/bin/gawk (priority 10) left after purge"),
        ("awk", "choice /usr/bin/mawk (there before the install) was removed"),
        ("awk", "selection changed: was auto /usr/bin/mawk, now manual /usr/bin/gawk"),
        ("pager", "alternative (there before the install) was removed: /usr/bin/pager -> /bin/more (auto)"),
        ("ppalt", "alternative left after purge: /usr/bin/ppalt -> /usr/bin/true (auto; choices /usr/bin/true 10)"),
    ]


def test_an_alternative_left_is_a_leftover_and_warns_with_them():
    from piuparts.checks.base import make_checks

    def left(severities: dict[str, str]) -> tuple[str, str]:
        check = next(c for c in make_checks(severities) if c.name == "alternatives")
        return check.severity, check.left_severity
    assert left({}) == ("fail", "fail")
    assert left({"leftovers": "warn"}) == ("fail", "warn")  # --warn-on-leftovers-after-purge
    assert left({"alternatives": "warn"}) == ("warn", "warn")
    assert alternatives.LEFT in alternatives.compare({}, {"x": Alternative("auto", "/a", "/usr/bin/x")})[0][1]


# -- users --------------------------------------------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
ppuser:x:999:999::/home/ppuser:/usr/sbin/nologin
"""
GROUP = "root:x:0:\nppuser:x:999:\nssl-cert:x:110:ppuser,www\n"


def test_parse_entries():
    entries = users.parse_entries(PASSWD + "\n# comment\n")
    assert list(entries) == ["root", "_apt", "ppuser"]
    assert entries["ppuser"] == ["ppuser", "x", "999", "999", "", "/home/ppuser", "/usr/sbin/nologin"]
    assert users.describe("user", entries["ppuser"]) == \
        "uid 999, gid 999, home /home/ppuser, shell /usr/sbin/nologin"
    groups = users.parse_entries(GROUP)
    assert users.describe("group", groups["ppuser"]) == "gid 999"
    assert users.describe("group", groups["ssl-cert"]) == "gid 110, members ppuser,www"


def test_compare_users_and_groups():
    before, after = users.parse_entries(PASSWD.replace("ppuser", "gone")), users.parse_entries(PASSWD)
    after["root"] = "root:*:0:0:root:/root:/bin/bash".split(":")
    assert users.compare("user", before, before) == []
    assert users.compare("user", before, after) == [
        ("user gone", "removed (was there before the install: uid 999, gid 999, home /home/gone, "
                      "shell /usr/sbin/nologin)"),
        ("user ppuser", "added and left after purge (uid 999, gid 999, home /home/ppuser, shell /usr/sbin/nologin)"),
        ("user root", "changed: was root:x:0:0:root:/root:/bin/bash, now root:*:0:0:root:/root:/bin/bash"),
    ]
    old_groups = users.parse_entries("ssl-cert:x:110:\n")
    assert users.compare("group", old_groups, users.parse_entries(GROUP)) == [
        ("group ppuser", "added and left after purge (gid 999)"),
        ("group root", "added and left after purge (gid 0)"),
        ("group ssl-cert", "changed: was gid 110, now gid 110, members ppuser,www"),
    ]


# -- symlinks -----------------------------------------------------------------

def make_tree(root: Path) -> None:
    """A small root with every kind of good and broken link."""
    for d in ("usr/bin", "usr/lib", "etc", "outside"):
        (root / d).mkdir(parents=True)
    (root / "usr/bin/true").write_text("")
    links = {"usr/bin/rel": "true", "usr/bin/abs": "/usr/bin/true", "usr/bin/up": "../bin/./true",
             "usr/bin/chain": "rel", "lib": "usr/lib", "usr/bin/via-lib": "/lib/../bin/true",
             "usr/bin/dots": "../../../../usr/bin/true", "etc/missing": "/usr/share/nothing",
             "etc/host-only": "/proc/self/exe-nope", "etc/loop-a": "loop-b", "etc/loop-b": "loop-a",
             "etc/through-file": "/usr/bin/true/x", "etc/host-abs": "/etc/passwd"}
    for name, target in links.items():
        os.symlink(target, root / name)


def test_resolve_inside_the_root_only(tmp_path):
    make_tree(tmp_path)
    resolved = {p: symlinks.resolve(tmp_path, p)[0]
                for p in ("/usr/bin/rel", "/usr/bin/abs", "/usr/bin/up", "/usr/bin/chain", "/usr/bin/dots")}
    assert set(resolved.values()) == {"/usr/bin/true"}
    # /lib -> usr/lib, and ".." after a symlink goes up from where the link points (/usr)
    assert symlinks.resolve(tmp_path, "/usr/bin/via-lib") == ("/usr/bin/true", "")
    assert symlinks.resolve(tmp_path, "/etc/missing") == (None, "/usr/share does not exist")
    # /etc/passwd exists on the host, not in this root
    assert symlinks.resolve(tmp_path, "/etc/host-abs") == (None, "/etc/passwd does not exist")
    assert symlinks.resolve(tmp_path, "/etc/loop-a") == (None, "more than 40 levels of symlinks")
    assert symlinks.resolve(tmp_path, "/etc/through-file") == (None, "/usr/bin/true is not a directory")
    # what is under /proc, /sys, /dev and /run is only known when the system runs
    assert symlinks.resolve(tmp_path, "/etc/host-only") == ("/proc", "")
    assert symlinks.resolve(tmp_path, "/etc/../usr/../run/x") == ("/run", "")


def test_symlinks_under_lists_links_and_prunes(tmp_path):
    make_tree(tmp_path)
    found = symlinks.symlinks_under(tmp_path)
    assert found["/usr/bin/rel"] == "true" and found["/lib"] == "usr/lib"
    assert "/usr/bin/true" not in found and len(found) == 13
    pruned = symlinks.symlinks_under(tmp_path, Ignores([("/etc/.*", "test")]))
    assert not any(p.startswith("/etc/") for p in pruned) and len(pruned) == 7
