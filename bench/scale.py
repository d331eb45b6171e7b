#!/usr/bin/env python3
"""Benchmark: the coordinator, the state database, ``batch status`` and the
report site at the size of Debian main, with a bench-only executor.

Run from the project directory (root is not needed):

    .venv/bin/python bench/scale.py [--packages 65000] [--workers 1 8 64] [--nights 30] [--delay 0]
                                    [--recorded DB] [--work-dir DIR]

The archive is the host's own: the Packages file of its distribution's
main (from the mirror its apt sources name), written to WORK/mirror as a
file:// mirror.  ``--packages N`` below its size keeps every k-th package
and drops the dependency alternatives that left with the others, so the
graph keeps its shape.  The engine, the database, the scheduler, the
states and the report are the real ones; only the executor is the
bench's: it answers each test after ``--delay`` seconds with a RunResult
recorded from a real run (``--recorded``: a batch database, e.g. the
OpenStack night's; one PASS and one FAIL result are taken from it; without
one, two fixture packages are tested for real first, which needs root), a
FAIL for about 3 in 100 of the leaves (packages nothing depends on, by a
hash of the name: a failure blocks nothing, so night 1 tests every
package), stamped with the simulated night's date.

Measured and printed, with 6,500 / 65,000 side by side when run twice:

- night 1 (every package) with each ``--workers`` count: wall and CPU
  seconds, the coordinator's CPU milliseconds a package;
- nights 2..N (``reschedule-old-count`` 150 and ``reschedule-fail-count``
  25 a night, as piuparts.debian.org's defaults, the old results made due
  after a day): the CPU per night;
- ``piuparts batch status --json``: wall seconds;
- ``piuparts report``: the full site, then incrementally after one more
  night: wall seconds and size;
- the database's size after the N nights; the peak memory (RSS) of this
  process (the coordinator) and of the report.

Results go to WORK/scale-N.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from debian.deb822 import Packages, PkgRelation  # noqa: E402

from piuparts import aptsources  # noqa: E402
from piuparts.api import RunResult  # noqa: E402
from piuparts.batch import config as config_mod, engine  # noqa: E402
from piuparts.batch.db import Database  # noqa: E402
from piuparts.batch.executor import Executor, Finished, Running, Task  # noqa: E402
from piuparts.options import host_architecture  # noqa: E402

OURS = [sys.executable, "-m", "piuparts"]
DAY = 86400.0


def host_archive() -> tuple[str, str]:
    """(distribution, mirror) of the host's apt sources."""
    return aptsources.default_distribution_and_mirror(aptsources.read_host_sources(), aptsources.host_codename())


def fetch_packages(mirror: str, dist: str, arch: str, cache: Path) -> str:
    """The text of MIRROR/dists/DIST/main/binary-ARCH/Packages (kept in ``cache``)."""
    cache.mkdir(parents=True, exist_ok=True)
    kept = cache / f"{dist}-main-{arch}-Packages"
    if not kept.exists():
        with urllib.request.urlopen(f"{mirror}/dists/{dist}/main/binary-{arch}/Packages.xz", timeout=300) as r:
            kept.write_bytes(lzma.decompress(r.read()))
    return kept.read_text(errors="replace")


def _keep_present(field: str, names: set[str]) -> str:
    """A relation field without the alternatives naming packages that are gone."""
    kept = []
    for group in PkgRelation.parse_relations(field):
        alternatives = [a for a in group if a["name"] in names]
        if alternatives:
            kept.append(alternatives)
    return PkgRelation.str(kept)


def write_mirror(text: str, count: int, work: Path, dist: str, arch: str) -> tuple[Path, int]:
    """WORK/mirror with ``count`` of the packages of ``text`` (all when count is bigger); its path and size."""
    paragraphs = list(Packages.iter_paragraphs(text, use_apt_pkg=False))
    if count < len(paragraphs):
        step = len(paragraphs) / count
        paragraphs = [paragraphs[int(i * step)] for i in range(count)]
        names = {p["Package"] for p in paragraphs}
        names |= {r[0]["name"] for p in paragraphs if p.get("Provides")
                  for r in PkgRelation.parse_relations(p["Provides"])}
        for p in paragraphs:
            for key in ("Depends", "Pre-Depends"):
                if p.get(key, "").strip():
                    p[key] = _keep_present(p[key], names)
                    if not p[key]:
                        del p[key]
    mirror = work / "mirror"
    index = mirror / "dists" / dist / "main" / f"binary-{arch}" / "Packages"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("\n".join(p.dump() for p in paragraphs))
    (work / "leaves.json").write_text(json.dumps(sorted(leaves(paragraphs))))
    return mirror, len(paragraphs)


def leaves(paragraphs: list[Any]) -> set[str]:
    """The packages no other one depends on (by name or through what they provide)."""
    needed = {alt["name"] for p in paragraphs for key in ("Depends", "Pre-Depends") if p.get(key, "").strip()
              for group in PkgRelation.parse_relations(p[key]) for alt in group}
    found = set()
    for p in paragraphs:
        provides = {r[0]["name"] for r in PkgRelation.parse_relations(p["Provides"])} if p.get("Provides") else set()
        if p["Package"] not in needed and not provides & needed:
            found.add(p["Package"])
    return found


def record(work: Path) -> dict[str, dict[str, Any]]:
    """One PASS and one FAIL result, recorded here and now by real runs of
    ours (root, the host's mirror): a clean fixture package, and one whose
    postinst leaves a file behind.  Used when no night's database is at hand."""
    from tests.debs import CLEAN, DebSpec
    leftover = DebSpec("pp-scale-leftover", scripts={"postinst": "touch /etc/pp-scale-leftover"})
    work.mkdir(parents=True, exist_ok=True)
    found = {}
    for verdict, spec in (("PASS", CLEAN), ("FAIL", leftover)):
        out = work / f"{verdict}.json"
        if not out.exists():
            proc = subprocess.run([*OURS, "--no-upgrade-test", "--json", str(out), str(spec.build(work))],
                                  cwd=ROOT, capture_output=True, text=True)
            if (proc.returncode, verdict) not in ((0, "PASS"), (1, "FAIL")):
                raise SystemExit(f"recording a {verdict} result: exit {proc.returncode}: {proc.stderr[-500:]}")
        found[verdict] = json.loads(out.read_text())
    return found


def recorded(db: Path, work: Path) -> dict[str, dict[str, Any]]:
    """One PASS and one FAIL result of a real run, as JSON: from a night's
    database when there is one, else recorded by :func:`record`."""
    import sqlite3
    if not db.exists():
        print(f"{db}: not here; recording a PASS and a FAIL result of our own in {work}", flush=True)
        return record(work)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    found = {}
    for verdict in ("PASS", "FAIL"):
        row = con.execute("select result_json from results where verdict = ? order by id limit 1", (verdict,)).fetchone()
        if row is None:
            raise SystemExit(f"{db}: no {verdict} result to replay; give --recorded a database of a real night")
        found[verdict] = json.loads(row[0])
    return found


def replay_result(results: dict[str, Any], name: str) -> RunResult:
    """The recorded result for ``name``: FAIL for about 3 in 100 of the leaves (by a hash of the
    name; ``results["leaves"]``), so that a failure blocks nothing and night 1 tests every package."""
    failing = name in results["leaves"] and int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 100 < 3
    data = dict(results["FAIL" if failing else "PASS"])
    data["subject"] = name
    data["subject_detail"] = {"label": name, "packages": [name]}
    data["packages"] = [name]
    data["log_file"] = None
    return RunResult.from_json(data)


class Replay(Executor):
    """The bench's executor: ``slots`` tests at once, each answered after
    ``delay`` seconds with a recorded result, stamped ``clock()``."""

    def __init__(self, slots: int, delay: float, results: dict[str, dict[str, Any]], clock: Any) -> None:
        self.slots, self.delay, self.results, self.clock = slots, delay, results, clock
        self.pending: list[tuple[float, Running]] = []
        self.tests = 0

    def free_slots(self) -> int:
        return self.slots - len(self.pending)

    def submit(self, task: Task) -> Running:
        running = Running(task, f"sim/w{len(self.pending) % self.slots + 1}", time.time())
        self.pending.append((time.monotonic() + self.delay, running))
        return running

    def collect(self, timeout: float) -> list[Finished]:
        if not self.pending:
            return []
        first = min(due for due, _ in self.pending)
        wait = first - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
        now = time.monotonic()
        done = [r for due, r in self.pending if due <= now]
        self.pending = [(due, r) for due, r in self.pending if due > now]
        finished = []
        for running in done:
            self.tests += 1
            finished.append(Finished(running.task, replay_result(self.results, running.task.package), running.worker,
                                     self.clock(), self.delay))
        return finished

    def cancel(self) -> None:
        self.pending = []

    def running(self) -> list[Running]:
        return [r for _, r in self.pending]

    def close(self) -> None:
        pass


def write_conf(work: Path, mirror: Path, dist: str, name: str) -> Path:
    conf = work / f"{name}.conf"
    conf.write_text(f"[global]\nsections = main\ndb = {work / name}.sqlite\nlogs = {work / name}-logs\n"
                    f"cache-dir = {work / 'cache'}\n\n[main]\ndistro = {dist}\nmirror = file://{mirror}\n"
                    "area = main\ncomponents = main\nreschedule-old-days = 1\nreschedule-old-count = 150\n"
                    "reschedule-fail-days = 1\nreschedule-fail-count = 25\n")
    return conf


def night(conf: Path, slots: int, delay: float, results: dict[str, dict[str, Any]], stamp: float) -> dict[str, Any]:
    """One batch run with the bench's executor; its figures."""
    config = config_mod.load(conf)
    start_wall, start_cpu = time.monotonic(), time.process_time()
    clock_start = time.monotonic()
    executor = Replay(slots, delay, results, lambda: stamp + (time.monotonic() - clock_start))
    tally = engine.run(config, ["main"], lambda: executor, engine.Display(), engine.Stop())
    wall, cpu = time.monotonic() - start_wall, time.process_time() - start_cpu
    return {"tests": tally.tested, "wall": round(wall, 2), "cpu": round(cpu, 2),
            "cpu_ms_per_test": round(cpu / tally.tested * 1000, 3) if tally.tested else None,
            "wall_ms_per_test": round(wall / tally.tested * 1000, 3) if tally.tested else None}


def timed(argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MB) and the last line of a command of ours."""
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr[-500:]}")
    rss = int(proc.stderr.strip().splitlines()[-1]) // 1024
    return round(wall, 2), rss, (proc.stdout.strip().splitlines() or [""])[-1]


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packages", type=int, default=65000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--nights", type=int, default=30)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--recorded", type=Path, default=Path("/var/tmp/piuparts-night/batch.sqlite"))
    p.add_argument("--work-dir", type=Path, default=Path("/var/tmp/piuparts-bench-scale"))
    p.add_argument("--prepared", type=int, metavar="SIZE", help=argparse.SUPPRESS)  # the measuring process
    opts = p.parse_args()
    work = opts.work_dir.resolve() / str(opts.packages)
    dist, mirror_url = host_archive()
    arch = host_architecture()
    if opts.prepared is None:
        # The archive is parsed here, the nights run in a process of their own: its peak
        # memory is the coordinator's, not the bench's parsing of the Packages file.
        subprocess.run(["rm", "-rf", str(work)], check=True)
        work.mkdir(parents=True)
        text = fetch_packages(mirror_url, dist, arch, opts.work_dir.resolve() / "download")
        _, size = write_mirror(text, opts.packages, work, dist, arch)
        del text
        return subprocess.run([sys.executable, *sys.argv, "--prepared", str(size)]).returncode
    mirror, size = work / "mirror", opts.prepared
    results: dict[str, Any] = {**recorded(opts.recorded, opts.work_dir.resolve() / "recorded"),
                               "leaves": set(json.loads((work / "leaves.json").read_text()))}
    print(f"{size} packages of {dist} main ({arch}); {opts.nights} nights; workers {opts.workers}", flush=True)
    out: dict[str, Any] = {"packages": size, "distribution": dist, "delay": opts.delay, "first_night": {}}
    first = time.time() - (opts.nights + 1) * DAY
    for slots in opts.workers:  # night 1, each in a database of its own
        conf = write_conf(work, mirror, dist, f"w{slots}")
        figures = night(conf, slots, opts.delay, results, first)
        out["first_night"][slots] = figures
        print(f"night 1, {slots:3} workers: {figures}", flush=True)
    conf = work / f"w{opts.workers[-1]}.conf"
    nights = []
    for k in range(2, opts.nights + 1):
        nights.append(night(conf, opts.workers[-1], opts.delay, results, first + (k - 1) * DAY))
    out["later_nights"] = {"count": len(nights), "tests": [n["tests"] for n in nights],
                           "cpu_max": max((n["cpu"] for n in nights), default=None),
                           "cpu_median": sorted(n["cpu"] for n in nights)[len(nights) // 2] if nights else None}
    print(f"nights 2..{opts.nights}: {out['later_nights']}", flush=True)
    db = work / f"w{opts.workers[-1]}.sqlite"
    out["db_mb"] = round(du(db) / 2**20, 1)
    out["status_seconds"], out["status_rss_mb"], _ = timed([*OURS, "batch", "status", str(conf), "--json"])
    site = work / "site"
    out["report_full_seconds"], out["report_rss_mb"], out["report_line"] = timed([*OURS, "report", str(conf),
                                                                                 str(site)])
    out["site_mb"] = round(du(site) / 2**20, 1)
    nights.append(night(conf, opts.workers[-1], opts.delay, results, first + opts.nights * DAY))
    out["report_incremental_seconds"], _, out["report_incremental_line"] = timed([*OURS, "report", str(conf),
                                                                                str(site)])
    out["coordinator_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    for key in ("db_mb", "status_seconds", "report_full_seconds", "report_incremental_seconds", "site_mb",
                "coordinator_peak_rss_mb", "report_rss_mb"):
        print(f"{key}: {out[key]}", flush=True)
    (opts.work_dir.resolve() / f"scale-{size}.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
