"""The Celery executor: the batch engine's tests on ``piuparts worker`` machines over Redis.

Each test the coordinator submits becomes an *attempt* (an id of its own)
published as one Celery message; a worker answers it in Redis (the keys of
:class:`~.broker.Keys`), and :meth:`CeleryExecutor.collect` hands the first
answer of a test to the engine, which alone writes the database.  Nothing
is lost, nothing counted twice:

- a worker holds a *lease* on the attempt it runs and renews it; when a
  started attempt's lease lapses (its worker died or lost the broker for
  longer than the lease), the test is re-queued as a new attempt, up to
  :data:`MAX_ATTEMPTS` times;
- the first answer of any of a test's attempts is the one recorded; the
  others are withdrawn (a worker skips, or interrupts, an attempt no longer
  wanted), and a message Redis redelivers finds its attempt answered or
  leased and is skipped;
- a coordinator that died leaves its attempts in Redis: the next one, given
  the same test again, *adopts* the attempt (queued, running, or answered
  meanwhile) instead of starting a second one;
- while the broker is away (a Redis restart), the executor keeps trying and
  judges no lease until the workers have had one lease period to renew; an
  attempt the broker lost (restarted without its append-only file) is
  queued again.

An attempt's keys are removed at the ``collect`` after the one that handed
its answer (the engine has recorded it by then), so a coordinator killed in
between finds the answer again.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piuparts.api import RunResult, subject_json
from piuparts.batch.executor import Executor, Finished, Running, Task
from piuparts.celery import broker, seen
from piuparts.celery.payload import Answer, Payload
from piuparts.errors import UsageError

log = logging.getLogger("piuparts")

#: A test whose worker goes silent this many times is given back without a result (it waits again).
MAX_ATTEMPTS = 3
#: The apt and dpkg steps of the longest test, each up to --max-command-runtime.
STEPS = 10
POLL = 0.5


@dataclass
class _Flight:
    task: Task
    attempts: list[str]
    submitted: float
    worker: str = ""
    started: float | None = None
    unsent: Payload | None = None
    #: Worker nodes this test should not go to again (a test-bed failure there).
    avoid: tuple[str, ...] = ()


@dataclass
class _Handed:
    task_id: str
    attempts: list[str] = field(default_factory=list)


def namespace_for(db: Path) -> str:
    """A coordinator's namespace on the broker: the same for the same database on the same host
    (so a restarted coordinator finds its attempts)."""
    return hashlib.sha256(f"{socket.gethostname()}:{db.resolve()}".encode()).hexdigest()[:16]


def check_args(args: argparse.Namespace) -> str:
    """The checked broker URL of ``--executor celery``; UsageError for a missing or bad one, or a bad lease."""
    if not args.broker:
        raise UsageError("--executor celery needs --broker redis://:PASSWORD@HOST:6379/0 (or PIUPARTS_BROKER)")
    url = broker.check_url(args.broker, args.insecure_broker)
    if not 2 <= args.lease <= 3600:
        raise UsageError("--lease must be between 2 and 3600 seconds")
    return url


class CeleryExecutor(Executor):
    """See the module's docstring."""

    def __init__(self, url: str, namespace: str, logs: Path, lease: float = 60.0,
                 visibility_timeout: float = broker.DEFAULT_VISIBILITY) -> None:
        self.app = broker.make_app(url, visibility_timeout)
        self.conn = broker.redis_client(url)
        self.keys = broker.Keys(namespace)
        self.logs = logs
        self.lease = lease
        self.flights: dict[str, _Flight] = {}
        self.by_attempt: dict[str, str] = {}
        self.finished: list[Finished] = []
        self.handed: list[_Handed] = []
        self.workers: dict[str, dict[str, Any]] = {}
        self.capacity = 1
        self.down = False
        self.up_since = time.monotonic()
        self.scanned = 0.0
        self.warned = time.monotonic()  # a worker may take a few seconds to show up

    # -- the Executor interface
    def free_slots(self) -> int:
        """The live workers' concurrency (at least one: a test waits in the queue) minus what is out."""
        return max(0, max(1, self.capacity) - len(self.flights))

    def submit(self, task: Task) -> Running:
        """Publish an attempt at ``task`` (or adopt the one a dead coordinator left)."""
        flight = _Flight(task, [], time.time())
        self.flights[task.id] = flight
        try:
            adopted = self._adoptable(task)
        except self._errors() as err:
            self._went_down(err)
            adopted = None
        if adopted is not None:
            log.info("%s: adopting attempt %s of an earlier coordinator", task.id, adopted)
            flight.attempts.append(adopted)
            self.by_attempt[adopted] = task.id
        else:
            self._new_attempt(flight)
        return Running(task, flight.worker or "(queued)", flight.submitted)

    def collect(self, timeout: float) -> list[Finished]:
        """Answers, lapsed leases and re-sends, polled until one test ends or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._clean_handed()
                self._poll()
                self._came_back()
            except self._errors() as err:
                self._went_down(err)
            if self.finished or time.monotonic() >= deadline:
                break
            time.sleep(max(0.0, min(POLL, deadline - time.monotonic())))
        done, self.finished = self.finished, []
        return done

    def cancel(self) -> None:
        """Withdraw every attempt (a worker running one interrupts it); each comes back without a result."""
        for flight in list(self.flights.values()):
            try:
                for attempt in flight.attempts:
                    self.conn.delete(self.keys.want(attempt))
                self.conn.delete(self.keys.task(flight.task.id))
            except self._errors():
                pass
            self._give_back(flight, "cancelled")

    def running(self) -> list[Running]:
        """The tests out: who runs each (``(queued)`` until a worker takes it)."""
        return [Running(f.task, f.worker or "(queued)", f.started or f.submitted) for f in self.flights.values()]

    def close(self) -> None:
        """Write the workers seen; close the connections (the workers keep running)."""
        try:
            self._clean_handed()
        except self._errors():
            pass
        self._write_seen(force=True)
        self.conn.close()
        self.app.close()

    # -- attempts
    def _payload(self, task: Task, attempt: str) -> Payload:
        runtime = float(task.config.get("max_command_runtime", 1800.0))
        return Payload(self.keys.ns, attempt, task.id, task.config, task.subject.to_json(), self.lease,
                       runtime * STEPS, self.flights[task.id].avoid if task.id in self.flights else ())

    def _new_attempt(self, flight: _Flight) -> None:
        attempt = uuid.uuid4().hex
        flight.attempts.append(attempt)
        flight.worker, flight.started = "", None
        self.by_attempt[attempt] = flight.task.id
        flight.unsent = self._payload(flight.task, attempt)
        try:
            self._send(flight)
        except self._errors() as err:
            self._went_down(err)

    def _send(self, flight: _Flight) -> None:
        payload = flight.unsent
        assert payload is not None
        self.conn.set(self.keys.want(payload.attempt), "1", ex=broker.KEY_TTL)
        self.conn.set(self.keys.task(flight.task.id), payload.attempt, ex=broker.KEY_TTL)
        self.app.send_task(broker.TASK_NAME, args=[payload.to_json()], queue=broker.QUEUE)
        flight.unsent = None

    def _adoptable(self, task: Task) -> str | None:
        """The attempt an earlier coordinator left for this test, if it can still answer."""
        attempt = self.conn.get(self.keys.task(task.id))
        if not attempt:
            return None
        if self.conn.exists(self.keys.result(attempt)):
            return str(attempt)
        if self.conn.exists(self.keys.want(attempt)) and (not self.conn.exists(self.keys.started(attempt))
                                                           or self.conn.exists(self.keys.lease(attempt))):
            return str(attempt)
        return None

    # -- polling
    def _poll(self) -> None:
        for flight in self.flights.values():
            if flight.unsent is not None:
                self._send(flight)
        for attempt in sorted(self.conn.smembers(self.keys.inbox)):
            task_id = self.by_attempt.get(attempt)
            raw = self.conn.get(self.keys.result(attempt))
            if raw is None:
                self.conn.srem(self.keys.inbox, attempt)  # expired: nobody is waiting for it
            elif task_id is not None and task_id in self.flights:
                self._answered(self.flights[task_id], Answer.from_json(json.loads(raw)))
        judge = not self.down and time.monotonic() - self.up_since >= self.lease
        for flight in list(self.flights.values()):
            self._watch(flight, judge)
        self._scan_workers()

    def _watch(self, flight: _Flight, judge: bool) -> None:
        """Who took the current attempt; a new attempt when its lease has lapsed."""
        attempt = flight.attempts[-1]
        if judge and flight.unsent is None and not self.conn.exists(self.keys.want(attempt)) \
                and not self.conn.exists(self.keys.result(attempt)):
            log.warning("%s: the broker lost attempt %s (restarted without its append-only file?); "
                        "queued again", flight.task.id, attempt)
            self._new_attempt(flight)
            return
        started = self.conn.get(self.keys.started(attempt))
        if started is None:
            return
        info = json.loads(started)
        flight.worker, flight.started = info.get("name", "?"), float(info.get("started", time.time()))
        if not judge or self.conn.exists(self.keys.lease(attempt)):
            return
        if len(flight.attempts) >= MAX_ATTEMPTS:
            log.warning("%s: its worker went silent %d times; it waits for the next run",
                        flight.task.id, len(flight.attempts))
            for old in flight.attempts:
                self.conn.delete(self.keys.want(old))
            self._give_back(flight, f"its worker ({flight.worker}) went silent {len(flight.attempts)} times")
            return
        log.warning("%s: its worker %s went silent (no lease renewal for %.0f s); queued again",
                    flight.task.id, flight.worker, self.lease)
        self.conn.delete(self.keys.want(attempt))
        self._new_attempt(flight)

    def _answered(self, flight: _Flight, answer: Answer) -> None:
        """The first answer of a test: a Finished for the engine (a first test-bed failure is tried
        again on another worker, when there is one, before it is)."""
        task = flight.task
        worker = str((answer.worker or {}).get("name", "?"))
        node = str((answer.worker or {}).get("node", ""))
        if answer.result is not None and answer.result.get("kind") == "testbed" and not flight.avoid \
                and any(n != node for n in self._live_nodes()):
            log.warning("%s: test-bed failure on %s (%s); trying it on another worker", task.id, worker,
                        answer.result.get("error"))
            flight.avoid = (node,)
            self.by_attempt.pop(answer.attempt, None)
            self.conn.delete(self.keys.want(answer.attempt))
            self.handed.append(_Handed("", [answer.attempt]))
            self._new_attempt(flight)
            return
        if answer.result is not None:
            result = RunResult.from_json(answer.result)
            result.log_file = self._unpack_log(task, answer)
        else:
            result = RunResult(kind="usage", subject=subject_json(task.subject),
                               error=f"the worker {worker} refused the test: {answer.error}")
        self._note_worker(answer)
        self.finished.append(Finished(task, result, worker, float(answer.started), float(answer.duration),
                                      refused=answer.result is None))
        self._forget(flight)

    def _unpack_log(self, task: Task, answer: Answer) -> str | None:
        if not answer.log_gz or not task.log_dir:
            return None
        path = Path(task.log_dir) / f"{answer.attempt}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.decompress(base64.b64decode(answer.log_gz)))
        return str(path)

    def _give_back(self, flight: _Flight, reason: str) -> None:
        started = flight.started or flight.submitted
        self.finished.append(Finished(flight.task, None, flight.worker or "(queued)", started,
                                      round(time.time() - started, 3), reason))
        self._forget(flight)

    def _forget(self, flight: _Flight) -> None:
        """Out of the flights; its keys go at the next collect (after the engine recorded it)."""
        self.flights.pop(flight.task.id, None)
        for attempt in flight.attempts:
            self.by_attempt.pop(attempt, None)
        self.handed.append(_Handed(flight.task.id, list(flight.attempts)))

    def _clean_handed(self) -> None:
        while self.handed:
            handed = self.handed[0]
            if handed.task_id and handed.task_id not in self.flights:  # not submitted again meanwhile
                self.conn.delete(self.keys.task(handed.task_id))
            for attempt in handed.attempts:
                self.conn.delete(self.keys.want(attempt), self.keys.result(attempt), self.keys.started(attempt))
                self.conn.srem(self.keys.inbox, attempt)
            self.handed.pop(0)

    # -- the broker coming and going
    @staticmethod
    def _errors() -> tuple[type[BaseException], ...]:
        import kombu.exceptions
        import redis
        return (redis.RedisError, kombu.exceptions.OperationalError, ConnectionError, OSError)

    def _went_down(self, err: BaseException) -> None:
        if not self.down:
            log.warning("the broker is unreachable (%s); waiting for it", err)
        self.down = True

    def _came_back(self) -> None:
        if self.down:
            log.warning("the broker is back; leases are judged again in %.0f s", self.lease)
            self.down = False
            self.up_since = time.monotonic()

    # -- workers seen
    def _live_nodes(self) -> list[str]:
        return [str(k)[len(broker.WORKER_PREFIX):] for k in
                self.conn.scan_iter(match=broker.WORKER_PREFIX + "*", count=100)]

    def _scan_workers(self) -> None:
        if time.monotonic() - self.scanned < 2.0:
            return
        self.scanned = time.monotonic()
        live = 0
        for key in self.conn.scan_iter(match=broker.WORKER_PREFIX + "*", count=100):
            raw = self.conn.get(key)
            if raw is None:
                continue
            info = json.loads(raw)
            node = str(info.get("node", key[len(broker.WORKER_PREFIX):]))
            entry = self.workers.setdefault(node, {})
            entry.update({k: info.get(k) for k in ("host", "tool_version", "concurrency", "cache_dir")},
                         last_seen=time.time())
            live += int(info.get("concurrency") or 1)
        self.capacity = live
        if live == 0 and self.flights and time.monotonic() - self.warned > 60:
            log.warning("no piuparts worker is connected to the broker; the %d tests wait in its queue "
                        "(start one: piuparts worker --broker URL)", len(self.flights))
            self.warned = time.monotonic()
        self._write_seen()

    def _note_worker(self, answer: Answer) -> None:
        identity = answer.worker or {}
        node = str(identity.get("node", "?"))
        entry = self.workers.setdefault(node, {"host": identity.get("host"),
                                               "tool_version": identity.get("tool_version")})
        entry.update(backend=identity.get("backend"), base_age=identity.get("base_age"), last_seen=time.time())

    def _write_seen(self, force: bool = False) -> None:
        running: dict[str, list[dict[str, Any]]] = {}
        for flight in self.flights.values():
            if flight.worker:
                node = flight.worker.rsplit("/", 1)[0]
                running.setdefault(node, []).append({"task": flight.task.id, "worker": flight.worker,
                                                     "since": flight.started or flight.submitted})
        for node in running:
            self.workers.setdefault(node, {"last_seen": time.time()})
        snapshot = {node: {**info, "running": running.get(node, [])} for node, info in self.workers.items()}
        try:
            seen.write(self.logs, snapshot)
        except OSError as err:
            if force:
                log.warning("cannot write %s: %s", self.logs / seen.FILE, err)
