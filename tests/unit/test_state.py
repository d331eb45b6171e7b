"""piuparts.state: snapshots, diffs, ignore rules, and the overlay shortcut."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest

from piuparts.state import (
    Diff, Entry, Ignores, UpperState, diff, diff_overlay, display, entry_of, snapshot, snapshot_upper,
)

UID, GID = os.geteuid(), os.getegid()


@pytest.fixture(autouse=True)
def _umask():
    """Directories made as parents get 0755 whatever the caller's umask."""
    saved = os.umask(0o022)
    yield
    os.umask(saved)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def mkdir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def file_entry(text: str, mode: int = 0o644) -> Entry:
    return Entry("file", mode, UID, GID, len(text.encode()), "", sha256(text))


DIR = Entry("dir", 0o755, UID, GID)


def symlink_entry(target: str) -> Entry:
    return Entry("symlink", 0o777, UID, GID, 0, target, "")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = mkdir(tmp_path / "root")
    mkdir(root / "etc")
    write(root / "etc" / "foo.conf", "hello\n")
    mkdir(root / "usr" / "bin")
    write(root / "usr" / "bin" / "tool", "#!/bin/sh\n", 0o755)
    os.symlink("tool", root / "usr" / "bin" / "tool-link")
    os.mkfifo(root / "fifo")
    os.chmod(root / "fifo", 0o600)
    mkdir(root / "empty", 0o700)
    return root


# --- snapshot --------------------------------------------------------------------------

def test_snapshot_lists_paths_rooted_at_slash_with_their_entries(tree: Path):
    state = snapshot(tree)
    assert state == {
        "/etc": DIR,
        "/etc/foo.conf": file_entry("hello\n"),
        "/usr": DIR,
        "/usr/bin": DIR,
        "/usr/bin/tool": file_entry("#!/bin/sh\n", 0o755),
        "/usr/bin/tool-link": symlink_entry("tool"),
        "/fifo": Entry("fifo", 0o600, UID, GID),
        "/empty": Entry("dir", 0o700, UID, GID),
    }


def test_snapshot_does_not_list_the_root_itself(tree: Path):
    assert "/" not in snapshot(tree)
    assert snapshot(mkdir(tree.parent / "void")) == {}


def test_entry_fields_of_a_file(tree: Path):
    ent = snapshot(tree)["/etc/foo.conf"]
    assert (ent.type, ent.mode, ent.uid, ent.gid, ent.size, ent.target, ent.digest) == (
        "file", 0o644, UID, GID, 6, "", "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")


def test_describe_is_short_and_readable(tree: Path):
    state = snapshot(tree)
    assert state["/etc/foo.conf"].describe() == f"file 0644 {UID}:{GID} 6 bytes"
    assert state["/usr/bin/tool-link"].describe() == f"symlink 0777 {UID}:{GID} -> tool"
    assert state["/etc"].describe() == f"dir 0755 {UID}:{GID}"


def test_entry_of_does_not_follow_symlinks(tree: Path):
    assert entry_of(tree / "usr" / "bin" / "tool-link") == symlink_entry("tool")


def test_snapshot_does_not_follow_a_symlink_out_of_the_tree(tree: Path, tmp_path: Path):
    outside = mkdir(tmp_path / "outside")
    write(outside / "secret", "do not list me\n")
    os.symlink("/etc", tree / "hostetc")
    os.symlink(str(outside), tree / "outlink")
    os.symlink("usr", tree / "usrlink")  # a directory inside the tree, via a link
    state = snapshot(tree)
    assert state["/hostetc"] == symlink_entry("/etc")
    assert state["/outlink"] == symlink_entry(str(outside))
    assert state["/usrlink"] == symlink_entry("usr")
    leaked = [p for p in state if p.startswith(("/hostetc/", "/outlink/", "/usrlink/"))]
    assert leaked == []
    assert len(state) == 8 + 3


def test_snapshot_prune_keeps_the_directory_but_not_its_contents(tmp_path: Path):
    root = mkdir(tmp_path / "root")
    write(root / "var" / "lib" / "apt" / "lists" / "Packages", "x\n")
    write(root / "var" / "lib" / "apt" / "extended_states", "y\n")
    (root / "var").chmod(0o755)
    for d in ("var/lib", "var/lib/apt", "var/lib/apt/lists"):
        (root / d).chmod(0o755)
    state = snapshot(root, prune=Ignores([("/var/lib/apt/lists/.*", "test")]))
    assert sorted(state) == ["/var", "/var/lib", "/var/lib/apt", "/var/lib/apt/extended_states",
                             "/var/lib/apt/lists"]


def test_display_adds_a_slash_to_directories_only(tree: Path):
    state = snapshot(tree)
    assert display("/etc", state["/etc"]) == "/etc/"
    assert display("/etc/foo.conf", state["/etc/foo.conf"]) == "/etc/foo.conf"
    assert display("/usr/bin/tool-link", state["/usr/bin/tool-link"]) == "/usr/bin/tool-link"
    assert display("/", DIR) == "/"
    assert display("/gone", None) == "/gone"


# --- diff ------------------------------------------------------------------------------

def test_diff_of_identical_snapshots_is_empty(tree: Path):
    changes = diff(snapshot(tree), snapshot(tree))
    assert changes == Diff({}, {}, {})
    assert not changes


def test_diff_gives_added_removed_and_modified_and_is_pure(tree: Path):
    before = snapshot(tree)
    write(tree / "etc" / "new.conf", "new\n")
    (tree / "fifo").unlink()
    write(tree / "etc" / "foo.conf", "changed content\n")
    after = snapshot(tree)
    before_copy, after_copy = dict(before), dict(after)

    changes = diff(before, after)

    assert changes.added == {"/etc/new.conf": file_entry("new\n")}
    assert changes.removed == {"/fifo": Entry("fifo", 0o600, UID, GID)}
    assert changes.modified == {"/etc/foo.conf": (file_entry("hello\n"), file_entry("changed content\n"))}
    assert bool(changes) is True
    # Pure: the inputs are untouched and a second call gives the same answer.
    assert before == before_copy and after == after_copy
    assert diff(before, after) == changes
    # The other way round swaps added and removed.
    assert diff(after, before) == Diff(changes.removed, changes.added,
                                       {"/etc/foo.conf": (file_entry("changed content\n"), file_entry("hello\n"))})


def test_diff_lists_paths_in_sorted_order():
    before: dict[str, Entry] = {}
    after = {p: DIR for p in ("/z", "/a", "/m/b", "/m")}
    assert list(diff(before, after).added) == ["/a", "/m", "/m/b", "/z"]
    assert list(diff(after, before).removed) == ["/a", "/m", "/m/b", "/z"]


def test_same_size_content_change_is_modified(tree: Path):
    before = snapshot(tree)
    write(tree / "etc" / "foo.conf", "HELLO\n")
    changes = diff(before, snapshot(tree))
    old, new = changes.modified["/etc/foo.conf"]
    assert old.size == new.size == 6
    assert new.digest == sha256("HELLO\n") != old.digest
    assert list(changes.modified) == ["/etc/foo.conf"]
    assert changes.added == {} and changes.removed == {}


def test_chmod_alone_is_modified(tree: Path):
    before = snapshot(tree)
    (tree / "etc" / "foo.conf").chmod(0o600)
    (tree / "etc").chmod(0o700)
    changes = diff(before, snapshot(tree))
    assert changes.modified == {
        "/etc": (DIR, Entry("dir", 0o700, UID, GID)),
        "/etc/foo.conf": (file_entry("hello\n"), file_entry("hello\n", 0o600)),
    }


def test_symlink_retarget_is_modified(tree: Path):
    before = snapshot(tree)
    link = tree / "usr" / "bin" / "tool-link"
    link.unlink()
    os.symlink("/bin/true", link)
    changes = diff(before, snapshot(tree))
    assert changes.modified == {"/usr/bin/tool-link": (symlink_entry("tool"), symlink_entry("/bin/true"))}


def test_type_change_is_modified(tree: Path):
    before = snapshot(tree)
    (tree / "fifo").unlink()
    write(tree / "fifo", "", 0o600)
    changes = diff(before, snapshot(tree))
    assert changes.modified == {"/fifo": (Entry("fifo", 0o600, UID, GID), file_entry("", 0o600))}


def test_mtime_only_change_is_not_modified(tree: Path):
    before = snapshot(tree)
    os.utime(tree / "etc" / "foo.conf", (1_000_000, 1_000_000))
    os.utime(tree / "etc", (2_000_000, 2_000_000))
    os.utime(tree / "usr" / "bin" / "tool-link", (3_000_000, 3_000_000), follow_symlinks=False)
    changes = diff(before, snapshot(tree))
    assert changes == Diff({}, {}, {})
    assert not changes


# --- ignore rules ----------------------------------------------------------------------

def test_rules_are_anchored():
    ignores = Ignores([("/dev/.*", "test:1"), ("/etc/foo", "test:2")])
    assert ignores.match("/usr/share/foo/dev/bar") is None
    assert ignores.match("/etc/foobar") is None
    assert ignores.match("/x/etc/foo") is None
    rule = ignores.match("/dev/null")
    assert (rule.pattern, rule.source) == ("/dev/.*", "test:1")
    assert ignores.match("/etc/foo").source == "test:2"


def test_first_matching_rule_wins():
    ignores = Ignores([("/tmp/a", "first"), ("/tmp/.*", "second")])
    assert ignores.match("/tmp/a").source == "first"
    assert ignores.match("/tmp/b").source == "second"


def test_filter_removes_matched_paths_from_all_three_parts():
    f1, f2 = file_entry("1\n"), file_entry("2\n")
    changes = Diff(
        added={"/tmp/a": f1, "/usr/bin/x": f1},
        removed={"/tmp/b": f1, "/usr/bin/y": f1},
        modified={"/tmp/c": (f1, f2), "/usr/bin/z": (f1, f2)},
    )
    kept = Ignores([("/tmp/.*", "test")]).filter(changes)
    assert kept == Diff({"/usr/bin/x": f1}, {"/usr/bin/y": f1}, {"/usr/bin/z": (f1, f2)})
    # filter is pure as well
    assert list(changes.added) == ["/tmp/a", "/usr/bin/x"]


def test_filter_with_no_rules_keeps_everything():
    changes = Diff({"/a": DIR}, {"/b": DIR}, {"/c": (DIR, Entry("dir", 0o700, UID, GID))})
    assert Ignores().filter(changes) == changes


def test_directory_rules_with_a_trailing_slash_match_directories_only():
    ignores = Ignores([("/srv/[^/]+/", "test")])
    changes = Diff(added={"/srv/d": DIR, "/srv/f": file_entry("f\n")},
                   removed={"/srv/gone": DIR, "/srv/gone-file": file_entry("g\n")})
    kept = ignores.filter(changes)
    assert kept == Diff(added={"/srv/f": file_entry("f\n")}, removed={"/srv/gone-file": file_entry("g\n")})


def test_modified_paths_are_matched_as_they_are_after_the_change():
    ignores = Ignores([("/srv/x/", "test")])
    became_dir = Diff(modified={"/srv/x": (file_entry("x\n"), DIR)})
    became_file = Diff(modified={"/srv/x": (DIR, file_entry("x\n"))})
    assert ignores.filter(became_dir) == Diff()
    assert ignores.filter(became_file) == became_file


def test_filter_logs_which_rule_took_what(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("piuparts")
    saved = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        Ignores([("/tmp/.*", "ignores.conf:7")]).filter(Diff(added={"/tmp/d": DIR, "/usr": DIR}))
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    assert [r.getMessage() for r in caplog.records] == ["ignored /tmp/d/ (rule /tmp/.* from ignores.conf:7)"]


def test_prunes_literal_subtree_rules():
    ignores = Ignores([("/var/lib/apt/lists/.*", "test")])
    assert ignores.prunes("/var/lib/apt/lists/") is True
    assert ignores.prunes("/var/lib/apt/lists/partial/") is True
    assert ignores.prunes("/var/lib/apt/") is False
    assert ignores.prunes("/var/lib/apt/lists-old/") is False
    assert ignores.prunes("/var/") is False


def test_prunes_understands_escaped_literals():
    ignores = Ignores([(r"/usr/lib/python3\.11/.*", "test")])
    assert ignores.prunes("/usr/lib/python3.11/") is True
    assert ignores.prunes("/usr/lib/python3x11/") is False


@pytest.mark.parametrize("rule", [
    "/var/lib/(apt|dpkg)/.*",
    "/var/.*/lists/.*",
    "/var/lib/apt/lists/.+",
    "/var/lib/apt/lists/[^/]*",
    "/var/lib/apt/lists/",
    "/var/lib/apt/lists/foo.*",
])
def test_prunes_is_false_for_non_literal_rules(rule: str):
    ignores = Ignores([(rule, "test")])
    assert ignores.prunes("/var/lib/apt/lists/") is False
    assert ignores.prunes("/var/lib/apt/") is False
    assert ignores.prunes("/var/lib/dpkg/") is False


def test_prune_does_not_skip_a_directory_the_rule_does_not_match(tmp_path: Path):
    root = mkdir(tmp_path / "root")
    write(root / "srv" / "d" / "data", "payload\n")
    ignores = Ignores([(r"/srv/\d/.*", "test")])
    assert ignores.match("/srv/d/data") is None
    assert "/srv/d/data" in snapshot(root, prune=ignores)


def test_load_reads_rules_skipping_comments_and_blank_lines(tmp_path: Path):
    conf = tmp_path / "ignores.conf"
    conf.write_text(
        "# What legitimately changes\n"
        "\n"
        "/tmp/.*\n"
        "   \n"
        "  # an indented comment\n"
        "  /var/log/.*  \n"
        "/etc/ld\\.so\\.cache\n"
    )
    ignores = Ignores.load(conf)
    assert [(r.pattern, r.source) for r in ignores.rules] == [
        ("/tmp/.*", f"{conf}:3"),
        ("/var/log/.*", f"{conf}:6"),
        (r"/etc/ld\.so\.cache", f"{conf}:7"),
    ]
    assert ignores.match("/var/log/syslog").source == f"{conf}:6"
    assert ignores.match("/etc/ld.so.cache").source == f"{conf}:7"
    assert ignores.match("/etc/ldXsoXcache") is None
    assert ignores.prunes("/tmp/") is True
    assert ignores.prunes("/var/log/apt/") is True


def test_extend_from_adds_after_existing_rules(tmp_path: Path):
    conf = tmp_path / "more.conf"
    conf.write_text("/opt/.*\n")
    ignores = Ignores([("/tmp/.*", "builtin")])
    ignores.extend_from(conf)
    assert [(r.pattern, r.source) for r in ignores.rules] == [("/tmp/.*", "builtin"), ("/opt/.*", f"{conf}:1")]


# --- overlay: snapshot_upper + diff_overlay, simulated by hand ---------------------------

def _whiteout_of(path: str, st: os.stat_result) -> bool:
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        try:
            os.getxattr(path, "trusted.overlay.whiteout", follow_symlinks=False)
            return True
        except OSError:
            return False
    return False


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def merged(lower: Path, upper: Path, dest: Path) -> Path:
    """What overlayfs would show for ``lower`` + ``upper``, built by copying."""
    shutil.copytree(lower, dest, symlinks=True)

    def visit(up_dir: str, dst_dir: str) -> None:
        for dirent in sorted(os.scandir(up_dir), key=lambda d: d.name):
            st = dirent.stat(follow_symlinks=False)
            dst = os.path.join(dst_dir, dirent.name)
            if _whiteout_of(dirent.path, st):
                _remove(dst)
            elif stat.S_ISDIR(st.st_mode):
                if os.path.lexists(dst) and (os.path.islink(dst) or not os.path.isdir(dst) or _opaque(dirent.path)):
                    _remove(dst)
                if not os.path.lexists(dst):
                    os.mkdir(dst)
                visit(dirent.path, dst)
                os.chmod(dst, stat.S_IMODE(st.st_mode))
            else:
                _remove(dst)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(dirent.path), dst)
                else:
                    shutil.copy2(dirent.path, dst)

    visit(str(upper), str(dest))
    return dest


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    low = mkdir(tmp_path / "lower")
    mkdir(low / "etc")
    write(low / "etc" / "a.conf", "A\n")
    write(low / "etc" / "b.conf", "B\n")
    mkdir(low / "usr" / "bin")
    mkdir(low / "usr" / "share" / "doc" / "x")
    write(low / "usr" / "share" / "doc" / "x" / "README", "readme\n")
    write(low / "usr" / "share" / "doc" / "x" / "copyright", "GPL\n")
    mkdir(low / "var" / "lib")
    mkdir(low / "srv" / "d")
    write(low / "srv" / "d" / "inner", "inner\n")
    write(low / "srv" / "f", "f\n")
    return low


def upper_dir(tmp_path: Path, name: str) -> Path:
    return mkdir(tmp_path / name)


def copy_up_dir(lower: Path, upper: Path, rel: str) -> Path:
    """Create ``rel`` and its parents in ``upper`` with the lower layer's modes (like a copy-up)."""
    parts = Path(rel).parts
    for i in range(1, len(parts) + 1):
        sub = Path(*parts[:i])
        mkdir(upper / sub, stat.S_IMODE(os.lstat(lower / sub).st_mode))
    return upper / rel


def assert_overlay_diff_matches_merged_views(tmp_path: Path, lower: Path, before: Path, after: Path) -> Diff:
    fast = diff_overlay(lower, snapshot_upper(before), snapshot_upper(after))
    slow = diff(snapshot(merged(lower, before, tmp_path / "merged-before")),
                snapshot(merged(lower, after, tmp_path / "merged-after")))
    assert fast == slow
    return fast


def test_snapshot_upper_of_plain_files_and_dirs(tmp_path: Path, lower: Path):
    upper = upper_dir(tmp_path, "upper")
    copy_up_dir(lower, upper, "etc")
    write(upper / "etc" / "new.conf", "new\n")
    state = snapshot_upper(upper)
    assert state == UpperState({"/etc": DIR, "/etc/new.conf": file_entry("new\n")}, set())


def test_diff_overlay_added_modified_and_merged_directories(tmp_path: Path, lower: Path):
    before = upper_dir(tmp_path, "upper-before")
    copy_up_dir(lower, before, "var/lib")
    write(before / "var" / "lib" / "state", "1\n")

    after = upper_dir(tmp_path, "upper-after")
    copy_up_dir(lower, after, "var/lib")
    write(after / "var" / "lib" / "state", "2\n")                         # modified in upper
    copy_up_dir(lower, after, "etc")                                      # merges with lower /etc
    write(after / "etc" / "a.conf", "A2\n")                               # copy-up, new content
    write(after / "etc" / "new.conf", "new\n")                            # added next to lower files
    copy_up_dir(lower, after, "usr/share/doc/x")
    write(after / "usr" / "share" / "doc" / "x" / "README", "readme\n", 0o600)  # chmod only
    write(after / "opt" / "tool" / "bin" / "tool", "#!/bin/sh\n", 0o755)  # whole new subtree
    for d in ("opt", "opt/tool", "opt/tool/bin"):
        (after / d).chmod(0o755)
    copy_up_dir(lower, after, "usr/bin")
    os.symlink("../../opt/tool/bin/tool", after / "usr" / "bin" / "tool")

    changes = assert_overlay_diff_matches_merged_views(tmp_path, lower, before, after)

    assert changes.added == {
        "/etc/new.conf": file_entry("new\n"),
        "/opt": DIR,
        "/opt/tool": DIR,
        "/opt/tool/bin": DIR,
        "/opt/tool/bin/tool": file_entry("#!/bin/sh\n", 0o755),
        "/usr/bin/tool": symlink_entry("../../opt/tool/bin/tool"),
    }
    assert changes.removed == {}
    assert changes.modified == {
        "/etc/a.conf": (file_entry("A\n"), file_entry("A2\n")),
        "/usr/share/doc/x/README": (file_entry("readme\n"), file_entry("readme\n", 0o600)),
        "/var/lib/state": (file_entry("1\n"), file_entry("2\n")),
    }
    # The lower children of the merged /etc are still there in the merged view.
    assert snapshot(tmp_path / "merged-after")["/etc/b.conf"] == file_entry("B\n")


def test_diff_overlay_of_identical_uppers_is_empty(tmp_path: Path, lower: Path):
    before = upper_dir(tmp_path, "upper-before")
    copy_up_dir(lower, before, "etc")
    write(before / "etc" / "new.conf", "new\n")
    after = upper_dir(tmp_path, "upper-after")
    shutil.copytree(before, after, symlinks=True, dirs_exist_ok=True)
    changes = assert_overlay_diff_matches_merged_views(tmp_path, lower, before, after)
    assert changes == Diff()


def test_diff_overlay_upper_file_replacing_a_lower_directory_hides_its_children(tmp_path: Path, lower: Path):
    before = upper_dir(tmp_path, "upper-before")
    after = upper_dir(tmp_path, "upper-after")
    copy_up_dir(lower, after, "srv")
    write(after / "srv" / "d", "now a file\n")          # lower /srv/d is a directory
    mkdir(after / "srv" / "f")                          # lower /srv/f is a file
    write(after / "srv" / "f" / "child", "c\n")
    changes = assert_overlay_diff_matches_merged_views(tmp_path, lower, before, after)
    assert changes.removed == {"/srv/d/inner": file_entry("inner\n")}
    assert changes.added == {"/srv/f/child": file_entry("c\n")}
    assert changes.modified == {
        "/srv/d": (DIR, file_entry("now a file\n")),
        "/srv/f": (file_entry("f\n"), DIR),
    }


def test_diff_overlay_does_not_follow_a_lower_symlink_out_of_the_tree(tmp_path: Path, lower: Path):
    outside = mkdir(tmp_path / "outside")
    write(outside / "secret", "host file\n")
    os.symlink(str(outside), lower / "link")
    before = upper_dir(tmp_path, "upper-before")
    after = upper_dir(tmp_path, "upper-after")
    mkdir(after / "link")                               # a real directory over the lower symlink
    write(after / "link" / "secret", "host file\n")
    changes = assert_overlay_diff_matches_merged_views(tmp_path, lower, before, after)
    assert changes.added == {"/link/secret": file_entry("host file\n")}
    assert changes.modified == {"/link": (symlink_entry(str(outside)), DIR)}
    assert changes.removed == {}


# Whiteouts and opaque directories need mknod or trusted.* xattrs (root): skipped otherwise.

def _char_whiteout(path: Path) -> None:
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    except PermissionError:
        pytest.skip("mknod of a 0,0 whiteout needs root")


def _xattr_whiteout(path: Path) -> None:
    path.write_bytes(b"")
    try:
        os.setxattr(path, "trusted.overlay.whiteout", b"", follow_symlinks=False)
    except PermissionError:
        pytest.skip("trusted.* xattrs need root")
    except OSError as err:
        pytest.skip(f"this file system has no trusted.* xattrs: {err}")


def _make_opaque(path: Path) -> None:
    try:
        os.setxattr(path, "trusted.overlay.opaque", b"y", follow_symlinks=False)
    except PermissionError:
        pytest.skip("trusted.* xattrs need root")
    except OSError as err:
        pytest.skip(f"this file system has no trusted.* xattrs: {err}")


@pytest.mark.parametrize("make_whiteout", [_char_whiteout, _xattr_whiteout], ids=["char-0-0", "xattr"])
def test_diff_overlay_whiteouts_remove_files_and_directories(tmp_path: Path, lower: Path, make_whiteout):
    before = upper_dir(tmp_path, "upper-before")
    after = upper_dir(tmp_path, "upper-after")
    copy_up_dir(lower, after, "etc")
    make_whiteout(after / "etc" / "b.conf")
    copy_up_dir(lower, after, "usr/share/doc")
    make_whiteout(after / "usr" / "share" / "doc" / "x")
    make_whiteout(after / "etc" / "never-existed")

    upper_state = snapshot_upper(after)
    assert upper_state.entries["/etc/b.conf"] is None
    assert upper_state.entries["/usr/share/doc/x"] is None
    assert upper_state.opaque == set()

    changes = assert_overlay_diff_matches_merged_views(tmp_path, lower, before, after)
    assert changes.removed == {
        "/etc/b.conf": file_entry("B\n"),
        "/usr/share/doc/x": DIR,
        "/usr/share/doc/x/README": file_entry("readme\n"),
        "/usr/share/doc/x/copyright": file_entry("GPL\n"),
    }
    assert changes.added == {} and changes.modified == {}


def test_diff_overlay_whiteout_then_recreated_file(tmp_path: Path, lower: Path):
    before = upper_dir(tmp_path, "upper-before")
    copy_up_dir(lower, before, "etc")
    _char_whiteout(before / "etc" / "b.conf")
    after = upper_dir(tmp_path, "upper-after")
    copy_up_dir(lower, after, "etc")
    write(after / "etc" / "b.conf", "B again\n")
    changes = assert_overlay_diff_matches_merged_views(tmp_path, lower, before, after)
    assert changes == Diff(added={"/etc/b.conf": file_entry("B again\n")})


def test_diff_overlay_opaque_directory_hides_the_lower_children(tmp_path: Path, lower: Path):
    before = upper_dir(tmp_path, "upper-before")
    after = upper_dir(tmp_path, "upper-after")
    etc = copy_up_dir(lower, after, "etc")
    _make_opaque(etc)
    write(etc / "only.conf", "only\n")

    upper_state = snapshot_upper(after)
    assert upper_state.opaque == {"/etc"}
    assert upper_state.entries == {"/etc": DIR, "/etc/only.conf": file_entry("only\n")}

    changes = assert_overlay_diff_matches_merged_views(tmp_path, lower, before, after)
    assert changes == Diff(
        added={"/etc/only.conf": file_entry("only\n")},
        removed={"/etc/a.conf": file_entry("A\n"), "/etc/b.conf": file_entry("B\n")},
    )


def test_a_path_that_is_gone_has_no_entry(tree: Path):
    from piuparts.state import present_entry
    assert present_entry(str(tree / "no-such-file")) is None
    assert present_entry(str(tree / "etc" / "no-such-dir" / "file")) is None


CHURN = """
import os, sys
os.chdir(sys.argv[1])
while True:
    for i in range(300):
        with open(f"f{i}", "w") as f:
            f.write("x")
    os.mkdir("d"); open("d/inner", "w").close()
    for i in range(300):
        os.unlink(f"f{i}")
    os.unlink("d/inner"); os.rmdir("d")
"""


def test_paths_vanishing_during_the_walk_are_absent(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A daemon a test left may still create and delete files while snapshots are taken."""
    import subprocess
    import sys
    busy = tmp_path / "var/lib/busy"
    busy.mkdir(parents=True)
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(busy)])
    logger = logging.getLogger("piuparts")
    saved = logger.level
    logger.addHandler(caplog.handler)  # whether or not the logger propagates
    logger.setLevel(logging.DEBUG)
    try:
        for _ in range(2000):
            state = snapshot(tmp_path)
            assert "/var/lib/busy" in state
            snapshot_upper(tmp_path)
            if "went away during the walk" in caplog.text:
                break
    finally:
        churn.kill()
        churn.wait()
        logger.removeHandler(caplog.handler)
        logger.setLevel(saved)
    assert "went away during the walk: absent" in caplog.text
