"""The pure parts of the purge order, of upgraded dependencies and of the
content keys of layers and references."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from piuparts import cli, digests, layers, options as opts
from piuparts.backends import Backend, BaseSpec
from piuparts.scenarios import distupgrade
from piuparts.scenarios.runner import Settings, changed_packages, purge_order, relation_names, with_dependents
from piuparts.state import Ignores, UpperState, entry_of


def test_changed_packages_tells_new_from_upgraded_and_leaves_the_tested_out():
    before = {"libc6:amd64": ("2.36-9", "ii"), "pp-lib": ("1.0-1", "ii")}
    now = {"libc6:amd64": ("2.36-9", "ii"), "pp-lib": ("2.0-1", "ii"), "pp-dep": ("1.0", "ii"),
           "pp-tested": ("1.0", "ii")}
    assert changed_packages(before, now, ["pp-tested"]) == (["pp-dep"], ["pp-lib"])


def test_purge_order_puts_the_tested_packages_and_their_cycle_first():
    pulled_in = ["pp-a", "pp-b", "pp-dep", "python3-six"]
    tested, dependencies = purge_order(pulled_in, ["pp-dep", "python3-six", "pp-lib"], ["pp-a"])
    assert tested == ["pp-a", "pp-b"]  # pp-b came in with pp-a (a cycle)
    assert dependencies == ["pp-dep", "python3-six"]  # pp-lib (upgraded) is never removed


def test_warn_on_others_is_off_unless_asked():
    assert Settings(Ignores()).warn_on_others is False


def test_lists_digests_name_content_not_paths(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "host_debian_dists_bookworm_InRelease").write_text("release\n")
    (lists / "host_debian_dists_bookworm_main_binary-amd64_Packages").write_text("a big index\n")
    (lists / "_srv_plain_._Packages").write_text("no release here\n")
    (lists / "lock").write_text("")
    found = digests.lists_digests(lists)
    expected = sorted(f"list {hashlib.sha256(text).hexdigest()}" for text in (b"release\n", b"no release here\n"))
    assert found == expected
    moved = tmp_path / "moved"
    moved.mkdir()
    for path in lists.iterdir():
        (moved / path.name.replace("_srv_plain", "_elsewhere")).write_bytes(path.read_bytes())
    assert digests.lists_digests(moved) == found


def test_source_digest_reads_a_flat_file_repository(tmp_path):
    (tmp_path / "Release").write_text("Suite: tests\n")
    line = f"deb [trusted=yes] file://{tmp_path} ./"
    first = digests.source_digest(line)
    assert first == "list " + hashlib.sha256(b"Suite: tests\n").hexdigest()
    (tmp_path / "Release").write_text("Suite: tests\nchanged\n")
    assert digests.source_digest(line) != first
    assert digests.source_digest(f"deb [trusted=yes] file://{tmp_path}/missing ./") is None


def test_layer_key_has_a_format_version():
    assert layers.key(["x"]) != layers.key(["y"])
    assert layers.key(["x"]) == hashlib.sha256(f"format {layers.FORMAT}\nx".encode()).hexdigest()[:16]


def test_drop_setup_leaves_what_the_install_made(tmp_path):
    lower, tree = tmp_path / "lower", tmp_path / "tree"
    (lower / "etc").mkdir(parents=True)
    for inner in ("etc/apt/sources.list.d", "srv/repo", "usr/share/dep"):
        (tree / inner).mkdir(parents=True)
    (tree / "etc/resolv.conf").write_text("nameserver 1\n")
    (tree / "etc/apt/sources.list.d/piuparts-extra.list").write_text("deb file:///srv/repo ./\n")
    (tree / "usr/share/dep/data").write_text("installed\n")
    setup = UpperState({"/etc": entry_of(tree / "etc"), "/srv": entry_of(tree / "srv"),
                        "/srv/repo": entry_of(tree / "srv/repo")})
    assert layers.drop_setup(tree, lower, setup) == 4
    left = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    assert left == ["etc", "etc/apt", "etc/apt/sources.list.d", "usr", "usr/share", "usr/share/dep",
                    "usr/share/dep/data"]


def test_the_distupgrade_reference_is_keyed_on_the_target_s_inrelease(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "dists/trixie").mkdir(parents=True)
    (mirror / "dists/trixie/InRelease").write_text("Date: then\n")
    args = cli.parser().parse_args(["-d", "bookworm", "-d", "trixie", "-m", f"file://{mirror}",
                                    "--cache-dir", str(tmp_path / "cache"), "x.deb"])
    options = opts.from_args(args)
    spec = BaseSpec(options.distribution, options.mirror, options.architecture, options.components)
    backend = Backend.registry["debootstrap"].from_options(spec, options)
    plan = distupgrade.Plan(options, backend, lambda chroot: None)
    settings = Settings(Ignores())
    first = distupgrade.Reference(plan, settings, tmp_path).dir
    assert distupgrade.Reference(plan, settings, tmp_path).dir == first
    (mirror / "dists/trixie/InRelease").write_text("Date: now\n")
    assert distupgrade.Reference(plan, settings, tmp_path).dir != first


def test_relation_names_flatten_versions_alternatives_and_architectures():
    assert relation_names("libc6 (>= 2.36), python3:any | python3-minimal, , perl:amd64") == {
        "libc6", "python3", "python3-minimal", "perl"}


def test_with_dependents_moves_what_needs_the_first_group():
    relations = {"python3-oslo.config": ("python3-oslo.config", {"python3-six"}, set()),
                 "python3-oslo.log": ("python3-oslo.log", {"python3-oslo.config"}, set()),
                 "pp-virtual-user": ("pp-virtual-user", {"pp-virtual"}, set()),
                 "pp-provider": ("pp-provider", set(), {"pp-virtual"}),
                 "python3-six": ("python3-six", {"python3"}, set())}
    assert with_dependents(["python3-oslo.config", "pp-provider"],
                           ["python3-six", "python3-oslo.log", "pp-virtual-user"], relations) == (
        ["python3-oslo.config", "pp-provider", "python3-oslo.log", "pp-virtual-user"], ["python3-six"])


def _layer(cache: Path, name: str, dependencies: list[str], ground: str = "g1", parents: tuple[str, ...] = ()) -> None:
    (cache / "layers" / name / "tree").mkdir(parents=True)
    (cache / "layers" / name / "dependencies").write_text("".join(d + "\n" for d in dependencies))
    (cache / "layers" / name / "meta.json").write_text(json.dumps({"ground": ground, "parents": list(parents)}))


def test_a_new_set_goes_over_the_largest_layer_inside_it_made_on_the_same_ground(tmp_path: Path) -> None:
    wanted = ["a=1:all", "b=1:all", "c=1:all", "d=1:all"]
    _layer(tmp_path, "small", ["a=1:all"])
    _layer(tmp_path, "larger", ["a=1:all", "b=1:all"])
    _layer(tmp_path, "elsewhere", ["a=1:all", "b=1:all", "c=1:all"], ground="g2")  # another base or lists
    _layer(tmp_path, "other-version", ["a=2:all", "b=1:all", "c=1:all"])
    _layer(tmp_path, "outside", ["a=1:all", "e=1:all", "b=1:all"])
    _layer(tmp_path, "same", wanted)  # the same set is found by its key, never built over
    (tmp_path / "layers" / "resolved").mkdir()
    assert layers.parent_for(tmp_path, "g1", wanted) == ("larger", ["a=1:all", "b=1:all"])
    assert layers.parent_for(tmp_path, "g1", ["z=1:all"]) is None
    assert layers.parent_for(tmp_path / "nothing", "g1", wanted) is None


def test_a_stack_is_found_whole_or_not_at_all(tmp_path: Path) -> None:
    _layer(tmp_path, "bottom", ["a=1:all"])
    _layer(tmp_path, "top", ["a=1:all", "b=1:all"], parents=("bottom",))
    assert layers.find(tmp_path, "top") == [tmp_path / "layers/top/tree", tmp_path / "layers/bottom/tree"]
    assert layers.find(tmp_path, "bottom") == [tmp_path / "layers/bottom/tree"]
    (tmp_path / "layers/bottom/tree").rmdir()  # pruned
    assert layers.find(tmp_path, "top") is None
    assert layers.find(tmp_path, "missing") is None
