#!/usr/bin/env python3
"""Where a night's time went, from what its results recorded.

    .venv/bin/python bench/night_time.py WORK [--run N] [--buckets 8]

WORK is a ``bench/night.py`` work directory (its ``batch.sqlite``); the
run is the newest one unless ``--run`` names another.  Every result keeps
its own times: the whole test as the coordinator saw it (``duration``),
the test in the worker (``elapsed``), the base made ready (once a worker,
``base_prepare_seconds``), the dependency layer found or built
(``dependency_layer``: reused or not, over which layer, how many packages
installed, seconds) and each scenario's steps and check timings.  This
adds them up:

- how busy the workers were (the sum of the durations against the run's
  wall time times the workers);
- how the busy time splits: making the base ready, finding or building
  dependency layers (built from the base or over another layer), the
  steps of the scenarios (install, remove, purge...), the checks, and
  the rest (instances made and taken down, apt asked, the log written);
- the same over the run's course, in ``--buckets`` slices of its tests in
  order, so that a cost that grows as the night goes on (a pruned cache
  building again what it had) shows.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


def rows(db: Path, run: int | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run (newest unless ``run``) and its results in order, JSON parsed."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    query = "SELECT * FROM runs " + ("WHERE id = ?" if run is not None else "ORDER BY id DESC LIMIT 1")
    found = conn.execute(query, (run,) if run is not None else ()).fetchone()
    if found is None:
        sys.exit(f"{db}: no run {run if run is not None else ''} in this database; give --run N of one it has")
    results = [dict(r) | {"json": json.loads(r["result_json"])} for r in
               conn.execute("SELECT * FROM results WHERE run_id = ? ORDER BY id", (found["id"],))]
    return dict(found), results


def layer_of(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """How the test's dependency layer came (reused, over another, base, none) and what it recorded."""
    layer = result["json"].get("dependency_layer") or {}
    kind = "none" if not layer else "reused" if layer.get("reused") else "over" if layer.get("over") else "base"
    return kind, layer


#: The part of a test's time each kind of layer is.
LAYER_PARTS = {"reused": "layer reused", "over": "layer built over another", "base": "layer built from the base"}


def split(result: dict[str, Any]) -> dict[str, float]:
    """One test's duration, in parts that add up to it."""
    data = result["json"]
    duration = float(result["duration"])
    elapsed = float(data.get("elapsed") or 0.0)
    parts: dict[str, float] = defaultdict(float)
    parts["base made ready"] = max(0.0, duration - elapsed)  # the first test of a worker's session
    kind, layer = layer_of(result)
    if kind != "none":
        parts[LAYER_PARTS[kind]] += float(layer.get("seconds") or 0.0)
    for scenario in data.get("scenarios") or []:
        for step in scenario.get("steps") or []:
            name = str(step.get("name", "")).split(" ", 1)[0]
            parts[f"step {name}"] += float(step.get("elapsed") or 0.0)
        for key, value in (scenario.get("timings") or {}).items():
            parts["checks and snapshots" if key != "reference" else "dist-upgrade reference"] += float(value)
    parts["the rest"] = max(0.0, duration - sum(parts.values()))
    return parts


def table(title: str, parts: dict[str, float], total: float) -> None:
    print(f"\n{title}")
    for name, value in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28} {value:9.0f} s  {100 * value / total if total else 0:5.1f} %")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=Path)
    p.add_argument("--run", type=int)
    p.add_argument("--buckets", type=int, default=8)
    opts = p.parse_args()
    db = opts.work / "batch.sqlite"
    if not db.is_file():
        sys.exit(f"{db}: no such database; give the work directory of a bench/night.py run")
    run, results = rows(db, opts.run)
    if not results:
        sys.exit(f"run {run['id']} has no results yet")
    first = min(r["started"] for r in results)
    last = max(r["started"] + r["duration"] for r in results)
    wall = (run["ended"] or last) - run["started"]
    workers = len({r["worker"] for r in results})
    busy = sum(r["duration"] for r in results)
    print(f"run {run['id']} ({run['status']}): {len(results)} tests in {wall:.0f} s "
          f"({3600 * len(results) / wall:.0f}/h), {workers} workers")
    print(f"  before the first test {first - run['started']:.0f} s; workers busy {busy:.0f} s of "
          f"{workers * wall:.0f} s ({100 * busy / (workers * wall):.0f} %)")
    total: dict[str, float] = defaultdict(float)
    for result in results:
        for name, value in split(result).items():
            total[name] += value
    table("busy time, all tests", total, busy)
    kinds = [layer_of(r) for r in results]
    layers = Counter(kind for kind, _ in kinds)
    installed = [int(layer.get("installed", layer.get("packages", 0))) for kind, layer in kinds
                 if kind in ("over", "base")]
    print(f"\nlayers: {layers['reused']} reused, {layers['over']} built over another, {layers['base']} built from "
          f"the base, {layers['none']} tests without one; packages installed per layer built: "
          f"{sum(installed) / len(installed) if installed else 0:.1f} on average, {max(installed, default=0)} at most")
    size = max(1, -(-len(results) // opts.buckets))
    print(f"\nover the run, {size} tests a slice (mean seconds a test):")
    names = ["layer built from the base", "layer built over another", "layer reused", "step install",
             "step remove", "step purge", "checks and snapshots", "the rest"]
    print("  tests      wall  " + "".join(f"{n.replace('layer ', '').replace('step ', '')[:10]:>11}" for n in names))
    for index in range(0, len(results), size):
        chunk = results[index:index + size]
        sums: dict[str, float] = defaultdict(float)
        for result in chunk:
            for name, value in split(result).items():
                sums[name] += value
        span = max(r["started"] + r["duration"] for r in chunk) - min(r["started"] for r in chunk)
        print(f"  {index + 1:>4}-{index + len(chunk):<4} {span:5.0f} s" +
              "".join(f"{sums[n] / len(chunk):11.1f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
