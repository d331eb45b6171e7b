"""Claims on the shared cache: reaping a dead run's directory once, and
storing the same thing from two runs at once (no root needed: these
directories hold no mounts)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
import sys
from pathlib import Path

import pytest

from piuparts import resources


def dead_run_dir(parent: Path, name: str = "4242-abcdef") -> Path:
    """A directory as a run that died left it: its owner file names a process that is gone."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = parent / name
    path.mkdir(parents=True)
    (path / "owner").write_text(f"{proc.stdout.strip()} 12345\n")
    (path / "root").mkdir()
    (path / "root/file").write_text("left behind\n")
    return path


def test_reap_removes_what_a_dead_run_left(tmp_path):
    dead = dead_run_dir(tmp_path)
    mine = resources.make_owned_dir(tmp_path)  # a live run's: kept
    assert resources.reap(tmp_path) == [dead]
    assert not dead.exists() and mine.is_dir()


def test_reap_skips_a_directory_another_run_is_reaping(tmp_path):
    dead = dead_run_dir(tmp_path)
    fd = os.open(dead, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a reaper in another process holds while it works
        child = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                "from piuparts import resources; "
                                "print(len(resources.reap(Path(sys.argv[1]))))", str(tmp_path)],
                               capture_output=True, text=True, cwd=Path(__file__).parents[2])
        assert child.stdout.strip() == "0", child.stderr
        assert dead.is_dir()
    finally:
        os.close(fd)
    assert resources.reap(tmp_path) == [dead]  # the claim is gone with its holder


def test_reap_of_something_already_gone_is_nothing(tmp_path):
    dead = dead_run_dir(tmp_path)
    with resources._claimed(dead) as mine:
        assert mine
        resources.remove_tree(dead)
    with resources._claimed(dead) as mine:
        assert not mine


def test_building_the_same_thing_twice_keeps_the_first(tmp_path):
    final = tmp_path / "layers" / "abc"
    with resources.building(final, replace=False) as first:
        (first / "tree").mkdir()
        (first / "tree/one").write_text("first\n")
        # A run that started later finishes first.
        with resources.building(final, replace=False) as second:
            (second / "tree").mkdir()
            (second / "tree/two").write_text("second\n")
    assert sorted(p.name for p in (final / "tree").iterdir()) == ["two"]
    assert [p.name for p in final.parent.iterdir()] == ["abc"]  # the loser's build directory is gone


def test_building_with_replace_replaces(tmp_path):
    final = tmp_path / "thing"
    for content in ("old", "new"):
        with resources.building(final) as tmp:
            (tmp / "content").write_text(content)
    assert (final / "content").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["thing"]


def test_a_failed_build_leaves_nothing(tmp_path):
    final = tmp_path / "thing"
    with pytest.raises(RuntimeError):
        with resources.building(final) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("the build failed")
    assert list(tmp_path.iterdir()) == []


def test_a_path_reached_through_a_symbolic_link_finds_its_processes(tmp_path):
    # /proc names every path resolved; a cache directory given through a link
    # (or the suite's per-worker caches, whose bases are links) is found the same.
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with open(link / "held", "w") as held:
        sleeper = subprocess.Popen(["sleep", "30"], stdout=held)
    try:
        # a process in the middle of its exec may not show its files yet: look again, for a while
        deadline = time.monotonic() + 10
        while sleeper.pid not in resources.processes_using(link) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleeper.pid in resources.processes_using(link)
        assert sleeper.pid in resources.processes_using(real)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_runs_helper_is_found_by_its_working_directory_or_its_arguments(tmp_path):
    # mmdebstrap, between two files, holds nothing open in its target: it is
    # found by the target in its arguments, as a shell is by its working
    # directory; 'piuparts cleanup' ends both before it empties the tree.
    tree = tmp_path / "build"
    tree.mkdir()
    in_cwd = subprocess.Popen(["sleep", "30"], cwd=tree, stdout=subprocess.DEVNULL)
    naming = subprocess.Popen(["sh", "-c", "sleep 30", "mmdebstrap", str(tree / "root")], cwd="/",
                              stdout=subprocess.DEVNULL)
    elsewhere = subprocess.Popen(["sleep", "30"], cwd="/", stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not {in_cwd.pid, naming.pid} <= set(resources.processes_using(tree)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        found = resources.processes_using(tree)
        assert in_cwd.pid in found and naming.pid in found
        assert elsewhere.pid not in found
        resources.kill_processes_using(tree)
        assert in_cwd.wait(timeout=10) == -9 and naming.wait(timeout=10) == -9
        assert elsewhere.poll() is None
    finally:
        for process in (in_cwd, naming, elsewhere):
            process.kill()
            process.wait()
