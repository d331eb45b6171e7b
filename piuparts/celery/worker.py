"""``piuparts worker --broker URL``: run piuparts tests that a coordinator queued.

A Celery worker (prefork pool, ``--concurrency`` processes, a prefetch of
one, late acknowledgement) that knows one task, :data:`~.broker.TASK_NAME`;
Celery discards a message naming any other task, and any message not in
JSON.  For each attempt (:func:`run_attempt`) the worker process:

1. checks the payload (:class:`~.payload.Payload`; a refusal is answered,
   never run);
2. skips it when the coordinator no longer wants it (another attempt
   answered first) or another worker holds its lease (a redelivery);
3. takes the lease, says who it is, and renews the lease while the test runs
   (a worker that dies stops renewing it: the coordinator re-queues the
   test); a lease the coordinator withdraws (cancel) interrupts the test;
4. runs the test with its own cache directory and backend, in a
   :class:`~piuparts.api.Session` kept open for the next test of the same
   configuration, and answers the RunResult and its compressed log.

It never writes outside its cache directory; the coordinator alone writes
the state database.  A worker process dies with its parent
(PR_SET_PDEATHSIG: the test is interrupted, its instance cleaned up).
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import gzip
import json
import logging
import os
import random
import shutil
import signal
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from piuparts import __version__, log as logsetup
from piuparts.api import KINDS, RunConfig, RunResult, Session, Subject, require_root, subject_json
from piuparts.celery import broker
from piuparts.celery.payload import Answer, Payload
from piuparts.errors import Interrupted, PiupartsError, UsageError

log = logging.getLogger("piuparts")
_KIND_OF_CODE = {code: kind for kind, code in KINDS.items()}
PR_SET_PDEATHSIG = 1
#: How long a worker keeps trying to hand in an answer while the broker is away.
DELIVERY_DEADLINE = 3600.0


@dataclass(frozen=True)
class Settings:
    """What ``piuparts worker`` was started with (inherited by its worker processes)."""

    url: str
    node: str
    cache_dir: Path
    repo_dirs: tuple[Path, ...]
    visibility_timeout: float
    concurrency: int
    #: --scripts-network: tests whose configuration asks for it give maintainer scripts this machine's network.
    scripts_network: bool = False


_settings: Settings | None = None
_client: Any = None
_sessions: "Sessions | None" = None


def parser() -> argparse.ArgumentParser:
    """``piuparts worker``'s options."""
    from piuparts.aptsources import DEFAULT_CACHE_DIR
    p = argparse.ArgumentParser(prog="piuparts worker",
                                description="Run the piuparts tests a coordinator (piuparts batch run "
                                            "--executor celery) queues on a Redis broker.")
    p.add_argument("--broker", default=os.environ.get("PIUPARTS_BROKER"), metavar="URL",
                   help="redis://:PASSWORD@HOST:6379/0 (rediss:// for TLS; default: $PIUPARTS_BROKER, which "
                        "keeps the password off the command line)")
    p.add_argument("--insecure-broker", action="store_true",
                   help="allow a broker URL without a password (loopback addresses only)")
    p.add_argument("--concurrency", type=int, default=1, metavar="N", help="tests at once (default: 1)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), metavar="DIR",
                   help="this worker's bases, instances, layers and logs (default: %(default)s)")
    p.add_argument("--repo-dir", action="append", default=[], metavar="DIR",
                   help="file:// repositories (and mirrors) may be read from under DIR (repeatable; "
                        "by default only http(s) ones are accepted)")
    p.add_argument("--visibility-timeout", type=float, default=broker.DEFAULT_VISIBILITY, metavar="SECONDS",
                   help="the broker redelivers a message not acknowledged after this long; above the "
                        "longest test, which a task is refused beyond (default: %(default)s)")
    p.add_argument("--scripts-network", action="store_true",
                   help="give maintainer scripts this machine's network when a test's section asks for it "
                        "(--scripts-network in its piuparts-flags); by default they never reach it, nor "
                        "the broker or any service on its loopback")
    p.add_argument("--name", metavar="NAME", help="this worker's name (default: piuparts-PID@HOST)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: Sequence[str]) -> int:
    """``piuparts worker ...``: serve until stopped (SIGTERM or Ctrl-C: the running tests finish first)."""
    global _settings
    args = parser().parse_args(list(argv))
    if not args.broker:
        raise UsageError("piuparts worker: give --broker redis://:PASSWORD@HOST:6379/0 (or set PIUPARTS_BROKER)")
    url = broker.check_url(args.broker, args.insecure_broker)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.visibility_timeout < 60:
        raise UsageError("--visibility-timeout must be at least 60 seconds")
    require_root()
    logsetup.setup(args.verbose)
    cache = Path(args.cache_dir).absolute()
    node = args.name or f"piuparts-{os.getpid()}@{socket.gethostname()}"
    _settings = Settings(url, node, cache, tuple(Path(d).absolute() for d in args.repo_dir),
                         args.visibility_timeout, args.concurrency, args.scripts_network)
    app = make_worker_app(_settings)
    presence = Presence(_settings)
    presence.start()
    log.info("piuparts worker %s (piuparts-ng %s): %d at once, cache %s, broker %s", node, __version__,
             args.concurrency, cache, broker.safe_url(url))
    try:
        worker = app.Worker(hostname=node, concurrency=args.concurrency, pool="prefork", queues=[broker.QUEUE],
                            loglevel="DEBUG" if args.verbose else "INFO", without_heartbeat=True,
                            without_mingle=True, without_gossip=True, optimization="fair")
        worker.start()
        return int(worker.exitcode or 0)
    finally:
        presence.stop()


def make_worker_app(settings: Settings) -> Any:
    """The Celery app with our one task registered, and the worker-process hooks."""
    import warnings
    from celery import signals
    from celery.exceptions import SecurityWarning
    warnings.filterwarnings("ignore", category=SecurityWarning)  # root is what makes the chroots
    app = broker.make_app(settings.url, settings.visibility_timeout)
    app.task(name=broker.TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)(run_attempt)
    signals.worker_process_init.connect(_process_init, weak=False)
    signals.worker_process_shutdown.connect(_process_shutdown, weak=False)
    return app


def _process_init(**_: Any) -> None:
    """A new worker process: it dies with the worker (SIGTERM: its test is cleaned up)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGTERM, _interrupt)


def _process_shutdown(**_: Any) -> None:
    if _sessions is not None:
        _sessions.close()


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def client() -> Any:
    """This process's Redis client (made after the fork)."""
    global _client
    if _client is None:
        assert _settings is not None
        _client = broker.redis_client(_settings.url)
    return _client


class Presence:
    """Publishes ``pp:worker:NODE`` every few seconds while the worker runs (the coordinator's
    "workers seen"); a worker that stops publishing is gone after 30 s.

    A process of its own, forked before Celery connects, never a thread: the prefork pool
    forks worker processes from the main process, and a fork taken while another thread is
    inside OpenSSL (a rediss:// broker) leaves the child waiting forever on OpenSSL's lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid: int | None = None

    def start(self) -> None:
        """Fork the publisher (it dies with this process)."""
        info = json.dumps({"node": self.settings.node, "host": socket.gethostname(), "tool_version": __version__,
                           "concurrency": self.settings.concurrency, "cache_dir": str(self.settings.cache_dir),
                           "pid": os.getpid(), "since": time.time()})
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.pid = pid
            return
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's; it stops us
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            self._publish(info, parent)
        except BaseException:  # noqa: B036 -- a forked child never returns into the caller's code
            code = 1
        finally:
            os._exit(code)

    def _publish(self, info: str, parent: int) -> None:
        import redis
        conn = broker.redis_client(self.settings.url)
        while os.getppid() == parent:
            try:
                conn.set(broker.WORKER_PREFIX + self.settings.node, info, ex=30)
            except redis.RedisError:
                pass
            time.sleep(5)

    def stop(self) -> None:
        """Stop publishing (the key expires by itself)."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.pid = None


class Sessions:
    """The open sessions of one worker process, by RunConfig."""

    def __init__(self) -> None:
        self.stack = ExitStack()
        self.open: dict[str, Session] = {}

    def test(self, config: RunConfig, subject: Subject, log_dir: Path) -> RunResult:
        """One test; a session that cannot start is a result of its kind (tried again next time)."""
        key = json.dumps(config.to_json(), sort_keys=True)
        if key not in self.open:
            try:
                session = self.stack.enter_context(Session(config))
            except PiupartsError as err:
                return RunResult(kind=_KIND_OF_CODE.get(err.exit_code, "internal"), subject=subject_json(subject),
                                 error=str(err))
            self.open[key] = session
        session = self.open[key]
        session.log_dir = log_dir
        return session.test(subject)

    def close(self) -> None:
        """Close every session."""
        self.stack.close()
        self.open.clear()


def _process_name() -> str:
    from billiard.process import current_process
    assert _settings is not None
    index = getattr(current_process(), "index", None)
    return f"{_settings.node}/{index + 1 if isinstance(index, int) else os.getpid()}"


def run_attempt(payload: Any) -> None:
    """The task: one attempt at one test (see the module's docstring).  Never raises but an
    interruption, so a message is acknowledged once the attempt is answered or skipped."""
    global _sessions
    assert _settings is not None
    conn = client()
    me = _process_name()
    try:
        checked = Payload.from_json(payload)
    except UsageError as err:
        log.error("refused a task: %s", err)
        _refuse_raw(conn, payload, me, str(err))
        return
    keys = broker.Keys(checked.namespace)
    if _settings.node in checked.avoid and _others_alive(conn):
        log.info("%s: its last test bed failure was here; leaving it to another worker", checked.task_id)
        current_app().send_task(broker.TASK_NAME, args=[checked.to_json()], queue=broker.QUEUE)
        # Busy for a while after sending (a prefetch of one: nothing is fetched meanwhile), so a free
        # worker takes it; at random, so that two workers each holding the other's test do not swap
        # them back in step forever.
        time.sleep(random.uniform(0.5, 1.5))
        return
    if not conn.exists(keys.want(checked.attempt)):
        log.info("%s: attempt %s is no longer wanted (answered elsewhere or cancelled); skipped",
                 checked.task_id, checked.attempt)
        return
    if not conn.set(keys.lease(checked.attempt), me, nx=True, ex=int(checked.lease_seconds)):
        log.info("%s: attempt %s is being run by another worker; skipped", checked.task_id, checked.attempt)
        return
    started = time.time()
    try:
        subject = checked.test_subject()
        config = checked.run_config(_settings.cache_dir, _settings.repo_dirs, _settings.scripts_network)
        if checked.longest_test > _settings.visibility_timeout:
            raise UsageError(f"task payload: a test may take {checked.longest_test:.0f} s, above this worker's "
                             f"--visibility-timeout ({_settings.visibility_timeout:.0f} s); raise it")
    except UsageError as err:
        log.error("refused %s: %s", checked.task_id, err)
        _deliver(conn, keys, Answer(checked.attempt, checked.task_id, _identity(me), started, 0.0, error=str(err)))
        return
    conn.set(keys.started(checked.attempt), json.dumps({**_identity(me), "started": started}),
             ex=broker.KEY_TTL)
    log.info("%s: testing (attempt %s)", checked.task_id, checked.attempt)
    _sessions = _sessions or Sessions()
    log_dir = _settings.cache_dir / "worker-logs" / checked.attempt
    try:
        with Lease(conn, keys, checked, me):
            result = _sessions.test(config, subject, log_dir)
    except Interrupted as err:
        if err.exit_code != 128 + signal.SIGUSR1:  # the worker is going away: clean up, then go
            _sessions.close()
            shutil.rmtree(log_dir, ignore_errors=True)
            os._exit(err.exit_code)
        log.info("%s: cancelled by the coordinator", checked.task_id)
        shutil.rmtree(log_dir, ignore_errors=True)
        return
    identity = {**_identity(me), "backend": config.backend,
                "base_age": (result.testbed.get("base") or {}).get("age_seconds")}
    result.testbed["worker"] = identity
    answer = Answer(checked.attempt, checked.task_id, identity, started, round(time.time() - started, 3),
                    result=result.to_json(), log_gz=_packed_log(result))
    shutil.rmtree(log_dir, ignore_errors=True)
    _deliver(conn, keys, answer)
    log.info("%s: %s in %.1f s", checked.task_id, result.verdict, answer.duration)


def current_app() -> Any:
    """The Celery app of this worker (to queue a task again)."""
    from celery import current_app as app
    return app


def _others_alive(conn: Any) -> bool:
    """Whether another worker node publishes itself."""
    assert _settings is not None
    mine = broker.WORKER_PREFIX + _settings.node
    return any(key != mine for key in conn.scan_iter(match=broker.WORKER_PREFIX + "*", count=100))


def _identity(me: str) -> dict[str, Any]:
    assert _settings is not None
    return {"name": me, "node": _settings.node, "host": socket.gethostname(), "tool_version": __version__,
            "cache_dir": str(_settings.cache_dir)}


def _packed_log(result: RunResult) -> str | None:
    if not result.log_file or not Path(result.log_file).is_file():
        return None
    return base64.b64encode(gzip.compress(Path(result.log_file).read_bytes())).decode()


def _refuse_raw(conn: Any, payload: Any, me: str, error: str) -> None:
    """Answer a payload that did not pass, when it says at least where to answer."""
    try:
        keys = broker.Keys(payload["namespace"])
        attempt, task_id = str(payload["attempt"]), str(payload["task_id"])
        if len(attempt) != 32 or not all(c in "0123456789abcdef" for c in attempt):
            return
    except (TypeError, KeyError, UsageError):
        return
    _deliver(conn, keys, Answer(attempt, task_id[:400], _identity(me), time.time(), 0.0, error=error))


def _deliver(conn: Any, keys: broker.Keys, answer: Answer) -> None:
    """Hand the answer in, trying again while the broker is away (up to an hour)."""
    import redis
    deadline = time.monotonic() + DELIVERY_DEADLINE
    while True:
        try:
            conn.set(keys.result(answer.attempt), json.dumps(answer.to_json()), ex=broker.KEY_TTL)
            conn.sadd(keys.inbox, answer.attempt)
            return
        except redis.RedisError as err:
            if time.monotonic() > deadline:
                log.error("%s: could not hand in the answer: %s", answer.task_id, err)
                return
            log.warning("%s: broker unreachable (%s); trying again", answer.task_id, err)
            time.sleep(2)


class Lease(threading.Thread):
    """Renews an attempt's lease while its test runs; a withdrawn attempt interrupts the test (SIGUSR1)."""

    def __init__(self, conn: Any, keys: broker.Keys, payload: Payload, me: str) -> None:
        super().__init__(name="lease", daemon=True)
        self.conn, self.keys, self.payload, self.me = conn, keys, payload, me
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.previous: Any = None

    def __enter__(self) -> "Lease":
        self.previous = signal.signal(signal.SIGUSR1, _interrupt)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.halt.set()
        self.join()
        signal.signal(signal.SIGUSR1, self.previous)

    def run(self) -> None:
        import redis
        attempt, ttl = self.payload.attempt, int(self.payload.lease_seconds)
        while not self.halt.wait(max(0.5, ttl / 6)):
            try:
                self.conn.set(self.keys.lease(attempt), self.me, ex=ttl)
                wanted = self.conn.exists(self.keys.want(attempt))
            except redis.RedisError:
                continue  # the broker is away: keep trying; the coordinator judges by the lease
            with self.lock:
                if not wanted and not self.halt.is_set():
                    os.kill(os.getpid(), signal.SIGUSR1)
                    return
