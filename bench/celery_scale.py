#!/usr/bin/env python3
"""Benchmark: the Celery executor at size, with workers killed and the broker restarted.

Run from the project directory, as root (``piuparts worker`` wants root):

    .venv/bin/python bench/celery_scale.py [--packages 6500] [--workers 16] [--delay 0.5]
                                           [--kill-every 60] [--recorded DB] [--work-dir DIR]

A real redis-server on 127.0.0.1 (a password, an append-only file so that
a restart keeps the queue), ``--workers`` real ``piuparts worker``
processes on loopback (each ``--concurrency 1``), and the real coordinator,
``piuparts batch run CONFIG --executor celery``, over the synthetic archive
of ``bench/scale.py`` (the host's bookworm main Packages, thinned to
``--packages``).  Only the test itself is the bench's: each worker process
answers an attempt after ``--delay`` seconds with a recorded RunResult (as
``bench/scale.py``'s executor does); the payload checks, leases, answers,
redeliveries and the database are the real ones.

While the night runs, one worker, drawn at random, is killed with SIGKILL
every ``--kill-every`` seconds and started again, and Redis is stopped and
started again once, half way through.  Measured and printed: the tests an
hour, the broker's commands a second (Redis' own count) and the tests a
second, how many workers were killed, and, from the database, that every
package tested has exactly one recorded verdict (none lost: every package
ends in a final state; none twice).  Results go to WORK/celery-N.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scale  # noqa: E402

from tests.integration.helpers import end  # noqa: E402

PIUPARTS = [sys.executable, "-m", "piuparts"]
#: States with nothing left to do in a night (piuparts.debian.org's names).
FINAL = ("successfully-tested", "failed-testing", "cannot-be-tested", "dependency-failed-testing",
         "dependency-cannot-be-tested", "dependency-does-not-exist")


def serve(args: argparse.Namespace) -> int:
    """One ``piuparts worker`` whose test is the bench's replay (this process is that worker)."""
    from piuparts.api import RunResult
    from piuparts.celery import worker
    results = json.loads(Path(args.results).read_text())
    results["leaves"] = set(results["leaves"])

    def replay(_self: Any, _config: Any, subject: Any, _log_dir: Path) -> RunResult:
        time.sleep(args.delay)
        name = subject.apt_names[0].split("=", 1)[0]
        return scale.replay_result(results, name)

    worker.Sessions.test = replay  # type: ignore[method-assign]
    return worker.main(["--broker", args.broker, "--cache-dir", args.cache_dir, "--repo-dir", args.repo_dir,
                        "--name", args.name, "--concurrency", "1"])


class Bench:
    """Redis, the workers and their killer; every process is ended by its PID."""

    def __init__(self, work: Path, workers: int, delay: float, results: Path) -> None:
        self.work, self.count, self.delay, self.results = work, workers, delay, results
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.password = "pp-" + uuid.uuid4().hex
        self.redis: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.kills = 0
        self.commands = 0  # Redis' commands before its restart
        self.lock = threading.Lock()

    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start_redis(self) -> None:
        log = open(self.work / "redis.log", "ab")
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password,
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--dir", str(self.work),
             "--daemonize", "no"], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not self._ping():
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not answer in 30 s")
            time.sleep(0.2)

    def _client(self) -> Any:
        import redis
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5)

    def _ping(self) -> bool:
        import redis
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False

    def redis_commands(self) -> int:
        return int(self._client().info("stats")["total_commands_processed"])

    def restart_redis(self) -> None:
        assert self.redis is not None
        self.commands += self.redis_commands()
        end(self.redis)
        self.start_redis()

    def start_worker(self, name: str) -> None:
        log = open(self.work / f"{name}.log", "ab")
        self.workers[name] = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--broker", self.url(), "--cache-dir", str(self.work / "cache"),
             "--repo-dir", str(self.work), "--name", name, "--results", str(self.results),
             "--delay", str(self.delay)], stdout=log, stderr=log, cwd=ROOT)

    def kill_one(self) -> None:
        with self.lock:
            name = random.choice(sorted(self.workers))
            proc = self.workers[name]
            os.kill(proc.pid, signal.SIGKILL)  # its pool process follows (PR_SET_PDEATHSIG)
            proc.wait(30)
            self.kills += 1
            self.start_worker(name)

    def close(self) -> None:
        for proc in self.workers.values():
            end(proc)
        if self.redis is not None:
            end(self.redis)


def verdicts(db: Path) -> tuple[int, list[tuple[str, int]]]:
    """Packages with a verdict, and those with more than one."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT package, COUNT(*) FROM results WHERE kind IN ('pass', 'fail') "
                       "GROUP BY package").fetchall()
    return len(rows), [(p, n) for p, n in rows if n != 1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packages", type=int, default=6500)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--delay", type=float, default=0.5)
    p.add_argument("--kill-every", type=float, default=60.0)
    p.add_argument("--lease", type=float, default=10.0)
    p.add_argument("--recorded", type=Path, default=Path("/var/tmp/piuparts-night/batch.sqlite"))
    p.add_argument("--work-dir", type=Path, default=Path("/var/tmp/piuparts-bench-celery"))
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # a worker of the bench
    for hidden in ("--broker", "--cache-dir", "--repo-dir", "--name", "--results"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        return serve(args)
    work = args.work_dir.resolve() / str(args.packages)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    dist, mirror_url = scale.host_archive()
    arch = scale.host_architecture()
    text = scale.fetch_packages(mirror_url, dist, arch, args.work_dir.resolve() / "download")
    mirror, size = scale.write_mirror(text, args.packages, work, dist, arch)
    del text
    results = work / "results.json"
    results.write_text(json.dumps({**scale.recorded(args.recorded, args.work_dir.resolve() / "recorded"),
                                   "leaves": json.loads((work / "leaves.json").read_text())}))
    conf = scale.write_conf(work, mirror, dist, "celery")
    bench = Bench(work, args.workers, args.delay, results)
    print(f"{size} packages of {dist} main ({arch}); {args.workers} workers, {args.delay} s a test, "
          f"one killed every {args.kill_every:.0f} s, Redis restarted once", flush=True)
    stop = threading.Event()
    out: dict[str, Any] = {"packages": size, "workers": args.workers, "delay": args.delay}
    try:
        bench.start_redis()
        for number in range(1, args.workers + 1):
            bench.start_worker(f"bw{number}@bench")
        start = time.monotonic()
        night = subprocess.Popen([*PIUPARTS, "batch", "run", str(conf), "--executor", "celery", "--broker",
                                  bench.url(), "--lease", str(args.lease)], cwd=ROOT,
                                 stdout=open(work / "night.log", "w"), stderr=subprocess.STDOUT)

        def chaos() -> None:
            restarted = False
            while not stop.wait(args.kill_every):
                bench.kill_one()
                done, _ = verdicts(work / "celery.sqlite") if (work / "celery.sqlite").exists() else (0, [])
                if not restarted and done > size * 0.3:
                    bench.restart_redis()
                    restarted = True
                    out["redis_restarted_after"] = round(time.monotonic() - start, 1)
                print(f"{time.monotonic() - start:6.0f} s: {done} verdicts, {bench.kills} workers killed"
                      + (", Redis restarted" if restarted else ""), flush=True)

        killer = threading.Thread(target=chaos, daemon=True)
        killer.start()
        code = night.wait()
        wall = time.monotonic() - start
        stop.set()
        killer.join(60)
        commands = bench.commands + bench.redis_commands()
    finally:
        stop.set()
        bench.close()
    tested, twice = verdicts(work / "celery.sqlite")
    status = json.loads(subprocess.run([*PIUPARTS, "batch", "status", str(conf), "--json"], cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout)
    states = status["sections"]["main"]["counts"]
    open_states = {s: n for s, n in states.items() if s not in FINAL and n}
    out.update({"exit": code, "wall": round(wall, 1), "tests": tested, "tests_per_hour": round(tested / wall * 3600),
                "tests_per_second": round(tested / wall, 2), "redis_commands_per_second": round(commands / wall),
                "workers_killed": bench.kills, "twice": twice[:10], "twice_count": len(twice),
                "states": states, "not_final": open_states})
    for key in ("exit", "wall", "tests", "tests_per_hour", "tests_per_second", "redis_commands_per_second",
                "workers_killed", "redis_restarted_after", "twice_count", "not_final"):
        print(f"{key}: {out.get(key)}", flush=True)
    (args.work_dir.resolve() / f"celery-{size}.json").write_text(json.dumps(out, indent=1))
    return 0 if code in (0, 1) and not twice and not open_states else 1


if __name__ == "__main__":
    raise SystemExit(main())
