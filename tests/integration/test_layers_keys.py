"""Dependency layers and remembered apt answers are keyed by content: what
the sources hold (not the --extra-repo line), the exact .debs, the hooks;
a layer holds none of the run's setup (extra sources and their lists,
resolv.conf, bind-mount points), so a reused layer never changes a verdict."""

from __future__ import annotations

import shutil

import pytest

from tests.debs import DebSpec, make_repo
from tests.integration.helpers import leaks, piuparts

pytestmark = [pytest.mark.root, pytest.mark.network]

USES_KEYDEP = DebSpec("pp-uses-keydep", depends="pp-keydep")
KEYDEP_A = DebSpec("pp-keydep", "1.0-1", files={"/usr/share/pp-keydep/data": "A\n"})
KEYDEP_B = DebSpec("pp-keydep", "1.0-1", files={"/usr/share/pp-keydep/data": "B\n"})  # rebuilt, same version
KEYDEP_NEW = DebSpec("pp-keydep", "1.1-1", files={"/usr/share/pp-keydep/data": "new\n"})
USES_PV = DebSpec("pp-uses-pv", depends="pv")
UNRELATED = DebSpec("pp-unrelated")


def post_install_hook(directory, body: str) -> str:
    """A --scriptsdir with one post_install hook (a failing hook fails the run)."""
    directory.mkdir(parents=True)
    script = directory / "post_install_check"
    script.write_text(f"#!/bin/sh\nset -e\n{body}\n")
    script.chmod(0o755)
    return str(directory)


def layer_of(run) -> dict:
    assert run.returncode == 0, run.stdout + run.stderr
    return run.report["dependency_layer"]


def test_a_dependency_rebuilt_with_the_same_version_makes_a_new_layer(cache_dir, tmp_path):
    first = make_repo(tmp_path / "a" / "repo", [KEYDEP_A.build(tmp_path / "a")])
    tested = USES_KEYDEP.build(tmp_path)
    hook_a = post_install_hook(tmp_path / "hook-a", "grep -qx A /usr/share/pp-keydep/data")
    one = layer_of(piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", first,
                            "--scriptsdir", hook_a, str(tested)))
    second = make_repo(tmp_path / "b" / "repo", [KEYDEP_B.build(tmp_path / "b")])
    hook_b = post_install_hook(tmp_path / "hook-b", "grep -qx B /usr/share/pp-keydep/data")
    two = layer_of(piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", second,
                            "--scriptsdir", hook_b, str(tested)))
    assert two["layer"] != one["layer"]
    assert two["reused"] is False
    assert leaks(cache_dir) == []


def test_a_new_dependency_version_makes_a_new_layer_and_is_installed(cache_dir, tmp_path):
    tested = USES_KEYDEP.build(tmp_path)
    repo = tmp_path / "repo"
    line = make_repo(repo, [KEYDEP_A.build(tmp_path / "old")])
    hook = post_install_hook(tmp_path / "hook-1", "dpkg-query -W pp-keydep")
    one = layer_of(piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", line,
                            "--scriptsdir", hook, str(tested)))
    make_repo(repo, [KEYDEP_NEW.build(tmp_path / "new")])  # the same repository, a new version added
    hook = post_install_hook(tmp_path / "hook-2", '[ "$(dpkg-query -W -f \'${Version}\' pp-keydep)" = 1.1-1 ]')
    two = layer_of(piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", line,
                            "--scriptsdir", hook, str(tested)))
    assert two["layer"] != one["layer"]
    assert two["reused"] is False


def test_the_same_content_elsewhere_is_the_same_layer(cache_dir, tmp_path):
    tested = USES_KEYDEP.build(tmp_path)
    line = make_repo(tmp_path / "here" / "repo", [KEYDEP_A.build(tmp_path / "here")])
    one = layer_of(piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", line, str(tested)))
    shutil.copytree(tmp_path / "here" / "repo", tmp_path / "there" / "repo")
    elsewhere = line.replace(str(tmp_path / "here"), str(tmp_path / "there"))
    two = layer_of(piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", elsewhere, str(tested)))
    assert (two["layer"], two["reused"]) == (one["layer"], True)


def test_a_layer_made_with_an_extra_repo_holds_none_of_the_setup(cache_dir, tmp_path):
    repo_dir = tmp_path / "repo"
    line = make_repo(repo_dir, [UNRELATED.build(tmp_path)])
    tested = USES_PV.build(tmp_path)
    one = layer_of(piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--extra-repo", line, str(tested)))
    tree = cache_dir / "layers" / one["layer"] / "tree"
    assert (tree / "usr/bin/pv").is_file()
    assert not (tree / "etc/apt/sources.list.d/piuparts-extra.list").exists()
    assert not (tree / "etc/resolv.conf").exists()
    assert [p.name for p in (tree / "var/lib/apt/lists").glob("*repo*")] == []
    assert not (tree / str(repo_dir).lstrip("/")).exists()
    # Nor apt's binary cache (35 MB a layer): over the layer apt makes it again, and sees what the layer holds.
    assert not (tree / "var/cache/apt/pkgcache.bin").exists() and not (tree / "var/cache/apt/srcpkgcache.bin").exists()
    hook = post_install_hook(tmp_path / "hook", "! test -e /etc/apt/sources.list.d/piuparts-extra.list\n"
                                                "! ls /var/lib/apt/lists | grep -q repo\n"
                                                "apt-cache policy pv | grep -q 'Installed: [0-9]'")
    two = layer_of(piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--scriptsdir", hook, str(tested)))
    assert two["packages"] == 1
    assert leaks(cache_dir) == []
