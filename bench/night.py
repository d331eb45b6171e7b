#!/usr/bin/env python3
"""Benchmark: a whole night of a committed batch configuration, for real.

Run as root from a worktree of the project (a night imports the tree it
runs from; do not edit it meanwhile):

    .venv/bin/python bench/night.py conf/openstack-bookworm.conf --work-dir /var/tmp/piuparts-night \\
        [--section NAME] [--fresh] [--max-tests N --seed S]

The configuration is copied into WORK with its ``db``, ``logs`` and
``cache-dir`` moved under WORK (``--fresh`` empties WORK first: an empty
cache, the base included), then ``piuparts batch run CONF --workers 2
--report WORK/report`` runs to the end.  Every 15 s the bench samples the
disk WORK uses and the memory the machine uses (MemTotal - MemAvailable);
at the end it prints, per section, the wall time, the tests and
packages/hour, the states the packages reached, the peaks, the cache's
size, and the failed-testing packages with what failed, and writes all of
it to WORK/night-N.json (N counts the nights on this WORK).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OURS = [sys.executable, "-m", "piuparts"]


def disk_used(path: Path) -> int:
    """Bytes under ``path`` (du, one file system)."""
    out = subprocess.run(["du", "-sxb", str(path)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def memory_used() -> int:
    """Bytes of memory in use on the machine (MemTotal - MemAvailable)."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024


class Sampler(threading.Thread):
    """The peaks of disk and memory while the night runs."""

    def __init__(self, work: Path) -> None:
        super().__init__(daemon=True)
        self.work, self.stop = work, threading.Event()
        self.disk_peak = self.memory_peak = 0
        self.memory_idle = memory_used()

    def run(self) -> None:
        while not self.stop.wait(15):
            self.disk_peak = max(self.disk_peak, disk_used(self.work))
            self.memory_peak = max(self.memory_peak, memory_used())


def write_config(source: Path, work: Path) -> Path:
    """``source`` with its database, logs and cache under ``work``."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(source)
    parser["global"]["db"] = str(work / "batch.sqlite")
    parser["global"]["logs"] = str(work / "logs")
    parser["global"]["cache-dir"] = str(work / "cache")
    conf = work / source.name
    with conf.open("w") as out:
        out.write(f"# {source} with its paths under {work} (bench/night.py)\n")
        parser.write(out)
    return conf


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--work-dir", type=Path, default=Path("/var/tmp/piuparts-night"))
    p.add_argument("--section", action="append", default=[])
    p.add_argument("--fresh", action="store_true", help="empty the work directory first (an empty cache)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-tests", type=int)
    p.add_argument("--seed", type=int)
    opts = p.parse_args()
    work = opts.work_dir.resolve()
    if opts.fresh and work.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=True)
    work.mkdir(parents=True, exist_ok=True)
    conf = write_config(opts.config.resolve(), work)
    argv = [*OURS, "batch", "run", str(conf), "--workers", str(opts.workers), "--report", str(work / "report")]
    for name in opts.section:
        argv += ["--section", name]
    if opts.max_tests is not None:
        argv += ["--max-tests", str(opts.max_tests)]
    if opts.seed is not None:
        argv += ["--seed", str(opts.seed)]
    night = len(list(work.glob("night-*.json"))) + 1
    log_path = work / f"night-{night}.log"
    print(f"night {night}: {' '.join(argv[2:])} (output in {log_path})", flush=True)
    sampler = Sampler(work)
    sampler.start()
    start = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ})
    wall = time.monotonic() - start
    sampler.stop.set()
    status = subprocess.run([*OURS, "batch", "status", str(conf), "--json"], capture_output=True, text=True,
                            cwd=ROOT)
    sections = json.loads(status.stdout)["sections"] if status.returncode == 0 else {}
    result: dict[str, Any] = {
        "night": night, "argv": argv[2:], "exit_code": proc.returncode, "wall": round(wall, 1),
        "disk_peak_gib": round(max(sampler.disk_peak, disk_used(work)) / 2**30, 2),
        "memory_peak_gib": round(sampler.memory_peak / 2**30, 2),
        "memory_idle_gib": round(sampler.memory_idle / 2**30, 2),
        "cache_gib": round(disk_used(work / "cache") / 2**30, 2),
        "logs_mib": round(disk_used(work / "logs") / 2**20, 1), "sections": {},
    }
    for name, section in sections.items():
        counts = {k: v for k, v in section.get("counts", {}).items() if v}
        failed = {n: p.get("reason") or p.get("summary") or "" for n, p in section.get("packages", {}).items()
                  if p["state"] == "failed-testing"}
        result["sections"][name] = {"packages": len(section.get("packages", {})), "states": counts,
                                    "failed": failed}
    tested = sum(v for s in result["sections"].values() for k, v in s["states"].items()
                 if k in ("successfully-tested", "failed-testing", "cannot-be-tested"))
    result["per_hour_overall"] = round(tested / wall * 3600, 1) if wall else None
    (work / f"night-{night}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
