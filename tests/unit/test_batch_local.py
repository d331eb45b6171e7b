"""The local executor's protocol with real worker processes (tasks that need no root: a bad RunConfig)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from piuparts.batch.executor import Finished, Task
from piuparts.batch.local import LocalExecutor


def task(package: str) -> Task:
    return Task("s", package, "1.0-1", "amd64", {"version": 999}, "")


def collect_all(executor: LocalExecutor, count: int, timeout: float = 60) -> list[Finished]:
    done: list[Finished] = []
    deadline = time.monotonic() + timeout
    while len(done) < count and time.monotonic() < deadline:
        done += executor.collect(0.5)
    return done


def test_tasks_come_back_with_their_results(tmp_path: Path) -> None:
    executor = LocalExecutor(2, tmp_path)
    try:
        assert executor.free_slots() == 2
        first, second = executor.submit(task("a")), executor.submit(task("b"))
        assert {first.worker, second.worker} == {f"{executor.host}/w1", f"{executor.host}/w2"}
        assert executor.free_slots() == 0 and len(executor.running()) == 2
        done = collect_all(executor, 2)
        assert sorted(f.task.package for f in done) == ["a", "b"]
        for finished in done:
            assert finished.result is not None and finished.result.kind == "usage"
            assert "run configuration version 999" in (finished.result.error or "")
        assert executor.free_slots() == 2
    finally:
        executor.close()
    assert executor.workers == []


def test_a_worker_that_dies_returns_its_task_without_a_result(tmp_path: Path) -> None:
    executor = LocalExecutor(1, tmp_path)
    try:
        worker = executor.workers[0]
        os.kill(worker.proc.pid, signal.SIGSTOP)  # keep it from answering, then kill it
        executor.submit(task("a"))
        os.kill(worker.proc.pid, signal.SIGKILL)
        done = collect_all(executor, 1)
        assert len(done) == 1 and done[0].result is None and "exit status -9" in done[0].reason
        assert executor.free_slots() == 1 and executor.workers[0].proc.pid != worker.proc.pid  # replaced
    finally:
        executor.close()


def test_cancel_stops_busy_workers(tmp_path: Path) -> None:
    stages = ((signal.SIGINT, 0.5), (signal.SIGTERM, 0.5), (signal.SIGKILL, 5.0))
    executor = LocalExecutor(1, tmp_path, stop_stages=stages)
    try:
        os.kill(executor.workers[0].proc.pid, signal.SIGSTOP)
        executor.submit(task("a"))
        executor.cancel()  # SIGINT, SIGTERM are held by the stopped process; SIGKILL ends it
        done = collect_all(executor, 1, timeout=5)
        assert [(f.task.package, f.result, f.reason) for f in done] == [("a", None, "cancelled")]
    finally:
        executor.close()
