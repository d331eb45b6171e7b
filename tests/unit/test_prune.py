"""``piuparts cleanup --prune``: least recently used first, never what a run holds."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from piuparts import prune
from piuparts.backends.common import remove_unused_generations
from piuparts.errors import UsageError

DAY = 86400.0


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)


def make(path: Path, size: int, days_ago: float, now: float) -> Path:
    """A file or a layer directory of ``size`` bytes, last used ``days_ago``."""
    if path.suffix == ".deb":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    else:
        (path / "tree").mkdir(parents=True)
        (path / "tree" / "blob").write_bytes(b"x" * size)
    os.utime(path, (now - days_ago * DAY, now - days_ago * DAY))
    return path


@pytest.fixture
def cache(tmp_path):
    now = time.time()
    made = {
        "old-layer": make(tmp_path / "layers" / "old", 3 << 20, 30, now),
        "mid-layer": make(tmp_path / "layers" / "mid", 3 << 20, 5, now),
        "new-layer": make(tmp_path / "layers" / "new", 3 << 20, 1, now),
        "fresh-layer": make(tmp_path / "layers" / "fresh", 3 << 20, 0, now),  # used a minute ago
        "old-deb": make(tmp_path / "debs" / "a_1_all.deb", 1 << 20, 20, now),
        "new-deb": make(tmp_path / "debs" / "b_1_all.deb", 1 << 20, 2, now),
    }
    return tmp_path, now, made


def names(paths):
    return sorted(p.name for p in paths)


def test_max_age_removes_what_was_not_used_since(cache):
    root, now, made = cache
    removed = prune.prune(root, max_age_days=10, now=now)
    assert names(removed) == ["a_1_all.deb", "old"]
    assert made["mid-layer"].is_dir() and made["new-deb"].is_file()


def test_max_size_removes_least_recently_used_first(cache):
    root, now, made = cache
    total = prune.disk_usage(root)
    removed = prune.prune(root, max_size=total - (5 << 20), now=now)
    assert names(removed) == ["a_1_all.deb", "mid", "old"]  # the oldest, until under the limit
    assert prune.disk_usage(root) <= total - (5 << 20)


def test_nothing_recently_used_or_held_goes(cache):
    root, now, made = cache
    fd = os.open(made["old-layer"], os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # an instance stacks it now
        removed = prune.prune(root, max_size=0, now=now)
    finally:
        os.close(fd)
    assert made["old-layer"].is_dir() and made["fresh-layer"].is_dir()
    assert names(removed) == ["a_1_all.deb", "b_1_all.deb", "mid", "new"]


def test_resolutions_of_removed_layers_are_forgotten(cache):
    root, now, made = cache
    resolved = root / "layers" / "resolved"
    resolved.mkdir()
    (resolved / "k-old").write_text("old\n")
    (resolved / "k-new").write_text("new\n")
    (resolved / "k-none").write_text("-\n")
    # an answer that also remembers what its test fetches over the layer (layers._remember)
    fetched = "http://mirror.invalid/p/x_1_all.deb x_1_all.deb 10 SHA256:ab\n"
    (resolved / "k-old-fetch").write_text("old\n" + fetched)
    (resolved / "k-new-fetch").write_text("new\n" + fetched)
    prune.prune(root, max_age_days=10, now=now)
    assert names(resolved.iterdir()) == ["k-new", "k-new-fetch", "k-none"]


def test_temporaries_of_dead_runs_go_and_of_live_ones_stay(tmp_path):
    debs, resolved = tmp_path / "debs", tmp_path / "layers" / "resolved"
    debs.mkdir()
    resolved.mkdir(parents=True)
    dead = [debs / f".a_1_all.deb.{dead_pid()}.tmp", resolved / f".abc123.{dead_pid()}"]
    alive = [debs / f".b_1_all.deb.{os.getpid()}.tmp", resolved / f".def456.{os.getpid()}"]
    for path in dead + alive:
        path.write_text("partial")
    assert sorted(prune.reap_temporaries(tmp_path)) == sorted(dead)
    assert all(p.exists() for p in alive)


def test_old_base_generations_go_once_no_run_holds_them(tmp_path):
    base = tmp_path / "bookworm-amd64-0123"
    for n in (1, 2, 3):
        (base / f"gen-{n}" / "root").mkdir(parents=True)
        (base / f"gen-{n}" / "meta.json").write_text("{}")
    os.symlink("gen-3", base / "current")
    with open(base / "gen-2.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # a run still tests on gen-2
        assert names(remove_unused_generations(base)) == ["gen-1"]
    assert names(remove_unused_generations(base)) == ["gen-2"]
    assert names(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()) == ["gen-3"]


@pytest.mark.parametrize("text, size", [("500M", 500 << 20), ("20G", 20 << 30), ("1t", 1 << 40), ("4096", 4096),
                                        ("1.5GiB", int(1.5 * (1 << 30)))])
def test_sizes(text, size):
    assert prune.parse_size(text) == size


def test_a_bad_size_says_what_a_size_is():
    with pytest.raises(UsageError, match=r"--max-size 'lots': a size such as 500M, 20G or 1T"):
        prune.parse_size("lots")
