"""The local executor: N worker processes on this machine (``--workers N``).

Each worker (:mod:`.worker`) is ``python -m piuparts.batch.worker`` in a
session and process group of its own (a Ctrl-C at the terminal reaches the
coordinator only, which decides what the workers do), talking JSON lines
over its stdin and stdout; its stderr goes to ``LOGS/workers/NAME.log``.
One task at a time a worker; a worker that dies is replaced, its task
returned without a result.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from piuparts.api import RunResult
from piuparts.batch.executor import Executor, Finished, Running, Task
from piuparts.errors import UsageError

#: Seconds between the stages of stopping a worker: SIGINT, SIGTERM, SIGKILL.
STOP_STAGES = ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))


@dataclass
class _Worker:
    name: str
    proc: subprocess.Popen[bytes]
    stdout: IO[bytes]
    buffer: bytes = b""
    current: Running | None = None
    log: Any = field(default=None, repr=False)


class LocalExecutor(Executor):
    """A pool of worker processes; see the module's docstring."""

    def __init__(self, workers: int, log_dir: Path, env: dict[str, str] | None = None,
                 stop_stages: tuple[tuple[int, float], ...] = STOP_STAGES) -> None:
        if workers < 1:
            raise UsageError("--workers: at least 1")
        self.log_dir = log_dir / "workers"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.stop_stages = stop_stages
        self.selector = selectors.DefaultSelector()
        self.workers: list[_Worker] = []
        self.finished: list[Finished] = []
        self.host = socket.gethostname()
        for number in range(1, workers + 1):
            self.workers.append(self._start(f"{self.host}/w{number}"))

    def _start(self, name: str) -> _Worker:
        log = open(self.log_dir / f"{name.rsplit('/', 1)[-1]}.log", "a", encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "piuparts.batch.worker", name, str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=True, env=self.env, cwd=os.getcwd())
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        worker = _Worker(name, proc, proc.stdout, log=log)
        self.selector.register(proc.stdout, selectors.EVENT_READ, worker)
        return worker

    def free_slots(self) -> int:
        """Idle workers."""
        return sum(1 for w in self.workers if w.current is None)

    def submit(self, task: Task) -> Running:
        """Give the task to an idle worker."""
        worker = next(w for w in self.workers if w.current is None)
        worker.current = Running(task, worker.name, time.time())
        assert worker.proc.stdin is not None
        try:
            worker.proc.stdin.write((json.dumps({"task": task.to_json()}) + "\n").encode())
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._lost(worker, "the worker process had ended")
        return worker.current or Running(task, worker.name, time.time())

    def running(self) -> list[Running]:
        """The busy workers' tasks."""
        return [w.current for w in self.workers if w.current is not None]

    def collect(self, timeout: float) -> list[Finished]:
        """Read the workers' answers; notice workers that died."""
        if not self.finished:
            for key, _ in self.selector.select(timeout):
                self._read(key.data)
        for worker in list(self.workers):
            if worker.proc.poll() is not None:
                self._read(worker)
                self._lost(worker, f"the worker process ended (exit status {worker.proc.returncode})")
        done, self.finished = self.finished, []
        return done

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                chunk = os.read(worker.stdout.fileno(), 1 << 20)
            except (BlockingIOError, ValueError, OSError):
                break
            if not chunk:
                break
            worker.buffer += chunk
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            if line.strip():
                self._answer(worker, json.loads(line))

    def _answer(self, worker: _Worker, answer: dict[str, Any]) -> None:
        current = worker.current
        if current is None or answer.get("task") != current.task.id:
            return
        result = RunResult.from_json(answer["result"]) if answer.get("result") else None
        self.finished.append(Finished(current.task, result, worker.name, float(answer["started"]),
                                      float(answer["duration"]), answer.get("reason", "")))
        worker.current = None

    def _lost(self, worker: _Worker, reason: str, restart: bool = True) -> None:
        """A worker died: its task comes back without a result, and a new worker takes its place."""
        if worker.current is not None:
            started = worker.current.started
            self.finished.append(Finished(worker.current.task, None, worker.name, started,
                                          round(time.time() - started, 3), reason))
            worker.current = None
        self._forget(worker)
        if restart:
            self.workers[self.workers.index(worker)] = self._start(worker.name)
        else:
            self.workers.remove(worker)

    def _forget(self, worker: _Worker) -> None:
        try:
            self.selector.unregister(worker.stdout)
        except (KeyError, ValueError):
            pass
        for stream in (worker.proc.stdin, worker.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        worker.log.close()

    def cancel(self) -> None:
        """Stop the busy workers in stages; their tasks come back without a result."""
        busy = [w for w in self.workers if w.current is not None]
        _stop_in_stages([w.proc for w in busy], self.stop_stages)
        for worker in busy:
            self._lost(worker, "cancelled", restart=False)

    def close(self) -> None:
        """End every worker: stdin closed (an idle worker ends by itself), then in stages."""
        for worker in self.workers:
            try:
                if worker.proc.stdin is not None:
                    worker.proc.stdin.close()
            except OSError:
                pass
        busy = [w.proc for w in self.workers if w.current is not None]
        _stop_in_stages(busy, self.stop_stages)
        _wait_all([w.proc for w in self.workers], 10.0)
        _stop_in_stages([w.proc for w in self.workers if w.proc.poll() is None], self.stop_stages)
        for worker in self.workers:
            self._forget(worker)
        self.workers = []
        self.selector.close()


def _wait_all(procs: list[subprocess.Popen[bytes]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass


def _stop_in_stages(procs: list[subprocess.Popen[bytes]], stages: tuple[tuple[int, float], ...]) -> None:
    """SIGINT, SIGTERM, SIGKILL to each process group, waiting between the stages."""
    for signum, wait in stages:
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for proc in alive:
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass
        _wait_all(alive, wait)
