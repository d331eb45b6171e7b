#!/usr/bin/env python3
"""Benchmark: ``piuparts batch`` throughput against Debian's piuparts.

Run as root from the project directory:

    .venv/bin/python bench/batch.py [--packages P...] [--work-dir DIR] [--skip-piuparts]
    .venv/bin/python bench/batch.py --sample 100 --seed 1      # the OpenStack team's night, sampled

The default mode tests the same list of real bookworm packages (OpenStack
and python libraries, >= 30) these ways, on the same mirror (the host's,
from its apt sources; never printed) and architecture, each round in
this order (``--rounds N`` alternates them N times):

  batch-2   piuparts batch run --workers 2   (a fresh database, an empty cache: the base too)
  piuparts  /usr/sbin/piuparts -b TARBALL --no-upgrade-test --no-adequate --apt P, one after another
            (its base tarball built once, untimed)
  batch-2b  piuparts batch run --workers 2   (a fresh database, the cache empty but for the base:
            what Debian's piuparts gets, a base made beforehand)

then, once:

  batch-1   piuparts batch run --workers 1   (a fresh database, the caches warm)
  batch-2w  piuparts batch run --workers 2   (a fresh database, the caches warm)

and prints packages per hour for each (all rounds together), ours
against Debian's (batch-2 and batch-2b / piuparts: the target is >= 5x)
and two workers against one (batch-2w / batch-1: the target is >= 1.6x),
with the states the packages ended in.

``--sample N --seed S`` runs one section of the Maintainer = OpenStack
team's packages of the host's distribution with ``--max-tests N --seed S
--workers 2`` and extrapolates the whole section's time from the rate
(887 packages in bookworm; the goal: under 2 hours on 2 cores).

Results go to WORK/results.json; everything lives under --work-dir.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from piuparts import aptsources  # noqa: E402
from piuparts.options import host_architecture  # noqa: E402

OURS = [sys.executable, "-m", "piuparts"]
DEBIAN_PIUPARTS = "/usr/sbin/piuparts"
PACKAGES = [
    "python3-oslo.i18n", "python3-oslo.config", "python3-oslo.utils", "python3-oslo.log",
    "python3-oslo.serialization", "python3-oslo.context", "python3-oslo.concurrency", "python3-oslo.policy",
    "python3-oslo.messaging", "python3-oslo.db", "python3-oslo.middleware", "python3-oslo.service",
    "python3-oslo.cache", "python3-keystoneauth1", "python3-keystoneclient", "python3-novaclient",
    "python3-glanceclient", "python3-neutronclient", "python3-cinderclient", "python3-swiftclient",
    "python3-openstackclient", "python3-osc-lib", "python3-stevedore", "python3-debtcollector",
    "python3-pbr", "python3-cliff", "python3-keystonemiddleware", "python3-os-client-config",
    "python3-openstacksdk", "python3-tooz", "python3-castellan", "python3-futurist",
]
OPENSTACK_TEAM = r"openstack-devel@lists\.alioth\.debian\.org|team\+openstack@tracker\.debian\.org"
SECTION_SIZE = 887  # bookworm's binary packages whose Maintainer is the OpenStack team


def write_config(work: Path, name: str, dist: str, mirror: str, selection: str) -> Path:
    """A batch configuration of one section, with a database of its own."""
    home = work / name
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    conf = home / "batch.conf"
    conf.write_text(f"[global]\nsections = bench\ndb = {home}/batch.sqlite\nlogs = {home}/logs\n"
                    f"cache-dir = {work}/cache\n\n[bench]\ndistro = {dist}\nmirror = {mirror}\n"
                    f"components = main\n{selection}\n")
    return conf


def run_batch(conf: Path, workers: int, extra: list[str], timeout: float) -> dict[str, Any]:
    """One ``batch run``; its wall time, tests and the states it left."""
    start = time.monotonic()
    proc = subprocess.run([*OURS, "batch", "run", str(conf), "--workers", str(workers), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.monotonic() - start
    status = subprocess.run([*OURS, "batch", "status", str(conf), "--json"], capture_output=True, text=True,
                            cwd=ROOT)
    section = json.loads(status.stdout)["sections"]["bench"] if status.returncode == 0 else {}
    counts = {k: v for k, v in section.get("counts", {}).items() if v}
    tested = sum(counts.get(s, 0) for s in ("successfully-tested", "failed-testing", "cannot-be-tested"))
    summary = proc.stdout.strip().splitlines()[-1:] or [proc.stderr.strip()]
    return {"wall": round(wall, 1), "exit_code": proc.returncode, "tested": tested, "states": counts,
            "per_hour": round(tested / wall * 3600, 1) if wall else None, "summary": summary[0],
            "failed": sorted(n for n, p in section.get("packages", {}).items() if p["state"] == "failed-testing")}


def run_piuparts(work: Path, dist: str, mirror: str, arch: str, packages: list[str],
                 timeout: float) -> dict[str, Any]:
    """Debian's piuparts, one package after another, on a base tarball built once (untimed)."""
    tarball = work / "debian-piuparts" / f"{dist}-{arch}.tgz"
    tmp = work / "debian-piuparts" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    common = [DEBIAN_PIUPARTS, "--tmpdir", str(tmp), "-d", dist, "-m", f"{mirror} main", "--arch", arch]
    if not tarball.exists():
        subprocess.run([*common, "--merged-usr", "-s", str(tarball), "--no-install-purge-test",
                        "--no-upgrade-test", "--apt", "eatmydata"], capture_output=True, timeout=timeout, check=True)
    verdicts: dict[str, int] = {}
    start = time.monotonic()
    for package in packages:
        proc = subprocess.run([*common, "-b", str(tarball), "--no-upgrade-test", "--no-adequate", "--apt", package],
                              capture_output=True, timeout=timeout)
        verdicts[package] = proc.returncode
    wall = time.monotonic() - start
    return {"wall": round(wall, 1), "tested": len(packages), "per_hour": round(len(packages) / wall * 3600, 1),
            "failed": sorted(p for p, code in verdicts.items() if code != 0)}


def empty_but_base(cache: Path) -> None:
    """Empty the cache but for its bases: no .deb, no dependency layer, no remembered answer."""
    for item in cache.iterdir() if cache.is_dir() else ():
        if item.name != "bases":
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one way taken together: every test over the whole wall time."""
    wall, tested = sum(run["wall"] for run in runs), sum(run["tested"] for run in runs)
    return {"wall": round(wall, 1), "tested": tested, "per_hour": round(tested / wall * 3600, 1) if wall else None,
            "rounds": len(runs)}


def report(name: str, run: dict[str, Any]) -> None:
    print(f"{name:11} {run['per_hour']} packages/hour ({run['wall']} s"
          + (f", states {run['states']})" if "states" in run else ")"), flush=True)


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """a's packages per hour over b's."""
    return round(a["per_hour"] / b["per_hour"], 2) if a.get("per_hour") and b.get("per_hour") else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packages", nargs="+", default=PACKAGES)
    p.add_argument("--work-dir", type=Path, default=Path("/var/tmp/piuparts-bench-batch"))
    p.add_argument("--skip-piuparts", action="store_true", help="do not run Debian's piuparts")
    p.add_argument("--sample", type=int, metavar="N", help="sample N of the OpenStack team's packages instead")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="alternate ours and Debian's piuparts this many times")
    p.add_argument("--timeout", type=float, default=6 * 3600)
    opts = p.parse_args()
    dist, mirror = aptsources.default_distribution_and_mirror(aptsources.read_host_sources(),
                                                              aptsources.host_codename())
    arch = host_architecture()
    work = opts.work_dir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"distribution": dist, "architecture": arch}
    if opts.sample:
        conf = write_config(work, "sample", dist, mirror, f"maintainer = {OPENSTACK_TEAM}")
        run = run_batch(conf, 2, ["--max-tests", str(opts.sample), "--seed", str(opts.seed)], opts.timeout)
        hours = SECTION_SIZE / run["per_hour"] if run.get("per_hour") else None
        results["sample"] = {**run, "seed": opts.seed, "extrapolated_hours": round(hours, 2) if hours else None}
        print(f"sample of {run['tested']}: {run['per_hour']} packages/hour -> {SECTION_SIZE} packages in "
              f"{hours:.1f} h (goal < 2 h); states {run['states']}" if hours else f"sample failed: {run}")
    else:
        selection = "packages = " + " ".join(opts.packages)
        rounds: dict[str, list[dict[str, Any]]] = {"batch-2": [], "piuparts": [], "batch-2b": []}
        for number in range(1, opts.rounds + 1):
            shutil.rmtree(work / "cache", ignore_errors=True)  # empty: the base is made in the run
            rounds["batch-2"].append(run_batch(write_config(work, "batch-2", dist, mirror, selection), 2, [],
                                               opts.timeout))
            report(f"batch-2  #{number}", rounds["batch-2"][-1])
            if not opts.skip_piuparts:
                rounds["piuparts"].append(run_piuparts(work, dist, mirror, arch, opts.packages, opts.timeout))
                report(f"piuparts #{number}", rounds["piuparts"][-1])
            empty_but_base(work / "cache")
            rounds["batch-2b"].append(run_batch(write_config(work, "batch-2b", dist, mirror, selection), 2, [],
                                                opts.timeout))
            report(f"batch-2b #{number}", rounds["batch-2b"][-1])
        results["rounds"] = rounds
        for name, runs in rounds.items():
            if runs:
                results[name] = pooled(runs)
        for name, workers in (("batch-1", 1), ("batch-2w", 2)):
            results[name] = run_batch(write_config(work, name, dist, mirror, selection), workers, [], opts.timeout)
            report(name, results[name])
        if not opts.skip_piuparts:
            results["ours_vs_piuparts"] = ratio(results["batch-2"], results["piuparts"])
            results["ours_base_made_vs_piuparts"] = ratio(results["batch-2b"], results["piuparts"])
            print(f"batch --workers 2 / Debian's piuparts (all {opts.rounds} rounds together): "
                  f"{results['ours_vs_piuparts']}x with the base made in the run, "
                  f"{results['ours_base_made_vs_piuparts']}x with the base made beforehand as piuparts' tarball "
                  f"(target >= 5x)")
        results["two_vs_one"] = ratio(results["batch-2w"], results["batch-1"])
        print(f"2 workers / 1 worker (warm): {results['two_vs_one']}x (target >= 1.6x)")
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
