"""Where the instances' pids cgroups go, read from the mount table (no root needed)."""

from __future__ import annotations

from pathlib import Path

from piuparts.backends import pids


def test_the_v1_pids_hierarchy_is_found_and_piuparts_ng_made_in_it(tmp_path, monkeypatch):
    (tmp_path / "pids").mkdir()
    monkeypatch.setattr(pids, "_mountinfo", lambda: [
        ("/proc", "proc", "rw"), (str(tmp_path / "memory"), "cgroup", "rw,memory"),
        (str(tmp_path / "pids"), "cgroup", "rw,pids")])
    assert pids.hierarchy() == tmp_path / "pids/piuparts-ng"
    assert (tmp_path / "pids/piuparts-ng").is_dir()


def test_cgroup_v2_with_the_pids_controller_enables_it_below(tmp_path, monkeypatch):
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(pids, "_mountinfo", lambda: [(str(tmp_path), "cgroup2", "rw")])
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):  # cgroupfs makes the control files of a new cgroup
        real_mkdir(self, *args, **kwargs)
        (self / "cgroup.subtree_control").touch()
    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert pids.hierarchy() == tmp_path / "piuparts-ng"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+pids"
    assert (tmp_path / "piuparts-ng/cgroup.subtree_control").read_text() == "+pids"


def test_no_pids_controller_no_limit(monkeypatch, tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    monkeypatch.setattr(pids, "_mountinfo", lambda: [(str(tmp_path), "cgroup2", "rw"),
                                                    ("/sys/fs/cgroup/cpu", "cgroup", "rw,cpu")])
    assert pids.hierarchy() is None
    monkeypatch.setattr(pids, "_warned", False)
    with pids.instance_cgroup() as procs:
        assert procs is None


def test_only_the_cgroups_of_dead_runs_are_reaped(tmp_path, monkeypatch):
    ended: list[str] = []
    monkeypatch.setattr(pids, "_end", lambda group: ended.append(group.name))
    monkeypatch.setattr(pids.resources, "start_time", lambda pid: {100: "555"}.get(pid))
    for name in ("100-555-0", "100-444-3", "200-777-1", "notours"):
        (tmp_path / name).mkdir()
    assert [g.name for g in pids.reap(tmp_path)] == ["100-444-3", "200-777-1"]
    # 100 runs, started at 555: its own stays; 100 at 444 is another (dead) run that had that PID; 200 is dead.
    assert sorted(ended) == ["100-444-3", "200-777-1"]
