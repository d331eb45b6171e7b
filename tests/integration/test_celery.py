"""Batch tests on real Celery workers over a real Redis broker.

A redis-server with a password (append-only file, so a restart keeps the
queue) on a loopback port and on the host end of two veth pairs; two real
``piuparts worker`` processes, each in a network namespace of its own
(``ip netns``), reaching Redis over 10.231.N.1 as other machines would; the
coordinator is ``piuparts batch run --executor celery``.  One repository,
one cache (and base) for all; each test has a database of its own.  Every
wait has a deadline; every process started here is ended by its PID, the
namespaces are removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from piuparts import __version__
from tests.conftest import PIUPARTS
from tests.debs import DebSpec, reprepro
from tests.integration.helpers import end, leaks
from tests.integration.test_batch import batch, host, rows, status, write_config  # noqa: F401
from tests.integration.test_ci import Ci, make_env as ci_env

pytestmark = [pytest.mark.root, pytest.mark.network]

PASSWORD = "pp-" + uuid.uuid4().hex[:12]
SLOW = "pp-ce-slow"


def specs() -> list[DebSpec]:
    """Few, small packages: a pass, a failure and what needs it, a chain, a slow one."""
    return [
        DebSpec("pp-ce-clean", files={"/usr/share/pp-ce-clean/data": "x\n"}),
        DebSpec("pp-ce-fail", scripts={"postinst": 'echo "pp-ce-fail: no" >&2; exit 1'}),
        DebSpec("pp-ce-needs-fail", depends="pp-ce-fail"),
        DebSpec("pp-ce-top", depends="pp-ce-base"),
        DebSpec("pp-ce-base"),
        DebSpec(SLOW, scripts={"postinst": "sleep 8"}),
    ]


EXPECTED = {"pp-ce-clean": "successfully-tested", "pp-ce-fail": "failed-testing",
            "pp-ce-needs-fail": "dependency-failed-testing", "pp-ce-top": "successfully-tested",
            "pp-ce-base": "successfully-tested", SLOW: "successfully-tested"}
TESTED = sorted(set(EXPECTED) - {"pp-ce-needs-fail"})


def wait_for(what: str, check: Callable[[], Any], seconds: float) -> Any:
    """``check()``'s first true value, polled until ``seconds`` pass (then the test fails)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def processes_named(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (a worker and its pool processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class Cluster:
    """Redis, the namespaces and the workers of the module."""

    root: Path
    cache: Path
    port: int
    tag: str
    redis: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    def url(self, address: str = "127.0.0.1") -> str:
        return f"redis://:{PASSWORD}@{address}:{self.port}/0"

    def add_namespace(self, number: int) -> str:
        name, outside, inside = f"{self.tag}n{number}", f"{self.tag}h{number}", f"{self.tag}p{number}"
        run = lambda *argv: subprocess.run(argv, check=True, capture_output=True, timeout=30)  # noqa: E731
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", name)
        run("ip", "addr", "add", f"10.231.{number}.1/30", "dev", outside)
        run("ip", "link", "set", outside, "up")
        run("ip", "netns", "exec", name, "ip", "addr", "add", f"10.231.{number}.2/30", "dev", inside)
        run("ip", "netns", "exec", name, "ip", "link", "set", inside, "up")
        run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        return name

    def start_redis(self) -> None:
        log = open(self.root / "redis.log", "ab")
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "10.231.1.1", "10.231.2.1",
             "--requirepass", PASSWORD, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--dir", str(self.root), "--daemonize", "no"], stdout=log, stderr=log)
        wait_for("redis-server to answer", self._redis_answers, 30)

    def _redis_answers(self) -> bool:
        import redis
        conn = redis.Redis(port=self.port, password=PASSWORD, socket_timeout=2)
        try:
            return bool(conn.ping())
        except redis.RedisError:
            return False
        finally:
            conn.close()

    def stop_redis(self) -> None:
        if self.redis is not None:
            end(self.redis)
            self.redis = None

    def start_worker(self, name: str, number: int, cache: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen(
            # nsenter --net, not ip netns exec: that one mounts a sysfs of its own over /sys, which
            # hides the pids cgroup the instances are limited by.
            ["nsenter", f"--net=/run/netns/{self.tag}n{number}", *PIUPARTS, "worker", "--broker",
             self.url(f"10.231.{number}.1"), "--cache-dir", str(cache or self.cache), "--repo-dir", str(self.root),
             "--name", f"{name}@{self.tag}", "--concurrency", "1"], stdout=log, stderr=log)
        self.workers[name] = proc
        wait_for(f"{name} to be ready", lambda: b" ready." in (self.root / f"{name}.log").read_bytes(), 60)
        return proc

    def log_of(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.workers.values():
            end(proc, 60)
        for name in self.workers:
            for pid in processes_named(f"{name}@{self.tag}"):  # a pool process left behind
                os.kill(pid, signal.SIGKILL)
        self.stop_redis()
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The repository every test uses (under the module's directory, the workers' --repo-dir)."""
    root = tmp_path_factory.mktemp("celery")
    debs = [spec.build(root) for spec in specs()]
    return root, reprepro(root / "repo", debs)


@pytest.fixture(scope="module")
def local_states(repo: tuple[Path, str], cache_dir: Path, host: tuple[str, str]) -> dict[str, str]:  # noqa: F811
    """The states the local executor gives the repository; this run also makes the shared base and
    refreshes its apt lists (the workers, in their namespaces, cannot reach the mirror)."""
    home = repo[0] / "local"
    home.mkdir()
    local = write_config(home, cache_dir, host, repo[1])
    first = batch("run", str(local))
    assert first.returncode == 1, first.stdout + first.stderr
    return {name: p["state"] for name, p in status(local).items()}


@pytest.fixture(scope="module")
def cluster(repo: tuple[Path, str], cache_dir: Path, local_states: dict[str, str]) -> Iterator[Cluster]:
    root = repo[0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    made = Cluster(root, cache_dir, port, f"pc{os.getpid() % 10000}")
    try:
        made.add_namespace(1)
        made.add_namespace(2)
        made.start_redis()
        made.start_worker("w1", 1)
        made.start_worker("w2", 2)
        yield made
    finally:
        made.close()
        wait_for("the veth pairs to go with the namespaces", lambda: made.tag not in subprocess.run(
            ["ip", "-br", "link"], capture_output=True, text=True, timeout=30).stdout, 30)
        # what the killed worker left is reaped as on a real test machine
        subprocess.run([*PIUPARTS, "cleanup", "--cache-dir", str(cache_dir)], check=True, capture_output=True,
                       timeout=120)
        assert leaks(cache_dir) == []


def celery_run(conf: Path, cluster: Cluster, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*PIUPARTS, "batch", "run", str(conf), "--executor", "celery", "--broker",
                             cluster.url(), "--lease", "6", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], seconds: float = 600) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        end(proc)
        raise
    return proc.returncode, out + err


def running_on(logs: Path, package: str) -> str | None:
    """The worker (``NAME@TAG/N``) that runs ``package`` now, from workers.json."""
    try:
        workers = json.loads((logs / "workers.json").read_text())["workers"]
    except (OSError, ValueError, KeyError):
        return None
    for info in workers.values():
        for job in info.get("running", []):
            if f"/{package}/" in job["task"]:
                return str(job["worker"])
    return None


def once_each(db: Path) -> dict[str, str]:
    """package -> kind, asserting each tested package has exactly one result."""
    found = [(r["package"], r["kind"]) for r in rows(db)]
    assert sorted(p for p, _ in found) == TESTED, found
    return dict(found)


def test_same_states_as_the_local_executor(tmp_path: Path, repo: tuple[Path, str], cluster: Cluster,
                                           host: tuple[str, str], local_states: dict[str, str]) -> None:  # noqa: F811
    assert local_states == EXPECTED

    (tmp_path / "remote").mkdir()
    conf = write_config(tmp_path / "remote", cluster.cache, host, repo[1])
    code, said = finish(celery_run(conf, cluster))
    assert code == 1, said
    assert "piuparts batch: 5 tests" in said and "4 passed, 1 failed" in said
    assert {name: p["state"] for name, p in status(conf).items()} == local_states
    db = tmp_path / "remote/state/batch.sqlite"
    assert once_each(db)["pp-ce-fail"] == "fail"
    names = {r["worker"].split("@")[0] for r in rows(db)}
    assert names <= {"w1", "w2"} and names, names
    result = json.loads(rows(db)[0]["result_json"])
    worker = result["worker"]
    assert (worker["host"], worker["tool_version"], worker["backend"]) == (socket.gethostname(), __version__,
                                                                          "debootstrap")
    assert worker["base_age"] >= 0 and worker["cache_dir"] == str(cluster.cache)
    text = batch("status", str(conf)).stdout
    assert "workers seen: 2" in text and f"w1@{cluster.tag}: host {socket.gethostname()}" in text
    assert "failed-testing" in text


def test_kill_9_of_a_worker_mid_test(tmp_path: Path, repo: tuple[Path, str], cluster: Cluster,
                                     host: tuple[str, str]) -> None:  # noqa: F811
    conf = write_config(tmp_path, cluster.cache, host, repo[1])
    coordinator = celery_run(conf, cluster)
    try:
        victim = wait_for(f"{SLOW} to run", lambda: running_on(tmp_path / "logs", SLOW), 300)
        name = victim.split("@")[0]
        os.kill(cluster.workers[name].pid, signal.SIGKILL)
        cluster.workers[name].wait(10)
        # its pool process dies with it (PR_SET_PDEATHSIG), cleaning up its instance
        wait_for("the killed worker's processes to end", lambda: not processes_named(f"{name}@{cluster.tag}"), 60)
        code, said = finish(coordinator)
    finally:
        end(coordinator)
        if cluster.workers[name].poll() is not None:
            cluster.start_worker(name, int(name[1]))
    assert code == 1, said
    assert "went silent" in said
    db = tmp_path / "state/batch.sqlite"
    assert once_each(db)[SLOW] == "pass"
    survivor = [r["worker"] for r in rows(db) if r["package"] == SLOW][0]
    assert not survivor.startswith(name + "@"), survivor
    assert {n: p["state"] for n, p in status(conf).items()} == EXPECTED


@pytest.mark.parametrize("keeps_its_data", [True, False], ids=["append-only-file", "data-lost"])
def test_redis_restarted_mid_run(tmp_path: Path, repo: tuple[Path, str], cluster: Cluster,
                                 host: tuple[str, str], keeps_its_data: bool) -> None:  # noqa: F811
    conf = write_config(tmp_path, cluster.cache, host, repo[1])
    coordinator = celery_run(conf, cluster)
    try:
        wait_for(f"{SLOW} to run", lambda: running_on(tmp_path / "logs", SLOW), 300)
        cluster.stop_redis()
        if not keeps_its_data:  # the queue, the attempts and the leases are gone
            shutil.rmtree(cluster.root / "appendonlydir")
        time.sleep(2)  # the broker is away: everyone keeps trying
        cluster.start_redis()
        code, said = finish(coordinator)
    finally:
        end(coordinator)
        if cluster.redis is None:
            cluster.start_redis()
    assert code == 1, said
    assert "broker is unreachable" in said and "broker is back" in said
    assert keeps_its_data or "the broker lost attempt" in said
    once_each(tmp_path / "state/batch.sqlite")
    assert {n: p["state"] for n, p in status(conf).items()} == EXPECTED
    assert all(proc.poll() is None for proc in cluster.workers.values())  # the workers reconnected


def test_coordinator_killed_and_restarted(tmp_path: Path, repo: tuple[Path, str], cluster: Cluster,
                                          host: tuple[str, str]) -> None:  # noqa: F811
    conf = write_config(tmp_path, cluster.cache, host, repo[1])
    before = {w: len(cluster.log_of(w)) for w in cluster.workers}
    first = celery_run(conf, cluster)
    try:
        wait_for(f"{SLOW} to run", lambda: running_on(tmp_path / "logs", SLOW), 300)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        end(first)
    code, said = finish(celery_run(conf, cluster))
    assert code in (0, 1), said  # 1 when the failing package is among what was left to test
    assert f"{SLOW}/1.0-1/amd64: adopting attempt" in said
    assert {n: p["state"] for n, p in status(conf).items()} == EXPECTED
    once_each(tmp_path / "state/batch.sqlite")
    # the slow test ran once: the second coordinator took the first one's attempt over
    started = sum(cluster.log_of(w)[before[w]:].count(f"team/{SLOW}/1.0-1/amd64: testing") for w in cluster.workers)
    assert started == 1


def test_testbed_failure_is_tried_on_another_worker(tmp_path: Path, repo: tuple[Path, str], cluster: Cluster,
                                                    host: tuple[str, str]) -> None:  # noqa: F811
    """w3 has an empty cache and no way to the mirror: its base cannot be made (a test-bed failure
    there); the test goes to another worker and passes, and no test-bed error is recorded."""
    conf = write_config(tmp_path, cluster.cache, host, repo[1])
    paused = [pid for name in list(cluster.workers) for pid in processes_named(f"{name}@{cluster.tag}")]
    coordinator: subprocess.Popen[str] | None = None
    try:
        for pid in paused:  # w1 and w2 take nothing until w3 has failed once
            os.kill(pid, signal.SIGSTOP)
        time.sleep(2)  # their last blocking read of the queue ends (after 1 s)
        cluster.start_worker("w3", 1, cache=tmp_path / "empty-cache")
        coordinator = celery_run(conf, cluster)
        wait_for("w3 to leave the test to another worker", lambda: "leaving it to another worker" in
                 cluster.log_of("w3"), 120)
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        code, said = finish(coordinator)
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        if coordinator is not None:
            end(coordinator)
        end(cluster.workers.pop("w3"), 60)
        for pid in processes_named(f"w3@{cluster.tag}"):
            os.kill(pid, signal.SIGKILL)
    assert code == 1, said
    assert "test-bed failure on w3@" in said and "trying it on another worker" in said
    kinds = once_each(tmp_path / "state/batch.sqlite")
    assert "testbed" not in kinds.values()
    assert {n: p["state"] for n, p in status(conf).items()} == EXPECTED


def test_ctrl_c_twice_stops_the_remote_tests(tmp_path: Path, repo: tuple[Path, str], cluster: Cluster,
                                             host: tuple[str, str]) -> None:  # noqa: F811
    conf = write_config(tmp_path, cluster.cache, host, repo[1])
    before = {w: len(cluster.log_of(w)) for w in cluster.workers}
    coordinator = celery_run(conf, cluster)
    try:
        wait_for(f"{SLOW} to run", lambda: running_on(tmp_path / "logs", SLOW), 300)
        for _ in range(2):
            coordinator.send_signal(signal.SIGINT)
            time.sleep(0.5)
        code, said = finish(coordinator, 120)
    finally:
        end(coordinator)
    assert code == 130 and "Ctrl-C again: stopping the" in said, said
    assert SLOW not in [r["package"] for r in rows(tmp_path / "state/batch.sqlite")]
    wait_for("the worker to stop the test", lambda: any(
        f"team/{SLOW}/1.0-1/amd64: cancelled by the coordinator" in cluster.log_of(w)[before[w]:]
        for w in cluster.workers), 60)


def send(cluster: Cluster, name: str, payload: Any) -> None:
    from piuparts.celery import broker
    app = broker.make_app(cluster.url())
    try:
        app.send_task(name, args=[payload], queue=broker.QUEUE)
    finally:
        app.close()


def answer(cluster: Cluster, namespace: str, attempt: str) -> dict[str, Any]:
    from piuparts.celery import broker
    conn = broker.redis_client(cluster.url())
    try:
        raw = wait_for("the worker's answer", lambda: conn.get(broker.Keys(namespace).result(attempt)), 60)
        return dict(json.loads(raw))
    finally:
        conn.close()


def test_bad_payloads_and_task_names_are_refused(tmp_path: Path, cluster: Cluster) -> None:
    from piuparts.cli import config_from_argv
    from piuparts.celery import broker
    namespace = uuid.uuid4().hex[:16]
    evil = tmp_path / "evil.tgz"
    config, _ = config_from_argv(["--cache-dir", "/var/tmp/elsewhere", "-s", str(evil)])
    clean, _ = config_from_argv(["--cache-dir", "/var/tmp/elsewhere"])
    conn = broker.redis_client(cluster.url())

    def payload(**changes: Any) -> dict[str, Any]:
        attempt = uuid.uuid4().hex
        conn.set(broker.Keys(namespace).want(attempt), "1", ex=600)
        data = {"payload_version": 1, "tool_version": __version__, "namespace": namespace, "attempt": attempt,
                "task_id": "team/pp-ce-clean/1.0-1/all", "config": config.to_json(),
                "subject": {"debs": [], "apt": ["pp-ce-clean=1.0-1"]}, "lease_seconds": 10,
                "longest_test": 100, "avoid": []}
        return {**data, **changes}

    cases = {
        "unknown field": (payload(command="rm -rf /"), "task payload: unknown field 'command'"),
        "other version": (payload(tool_version="0.0.1"), "task from piuparts-ng '0.0.1', this worker is"),
        "outside the cache": (payload(), "'save_tarball' names something on another machine"),
        "a .deb path": (payload(subject={"debs": ["/etc/passwd"], "apt": []}), "may only name archive packages"),
        "an option as a name": (payload(subject={"apt": ["-oDir=/"]}), "must be a list of NAME or NAME=VERSION"),
        "longer than the visibility timeout": (payload(config=clean.to_json(), longest_test=10.0 ** 6),
                                               "above this worker's --visibility-timeout"),
    }
    try:
        for what, (data, said) in cases.items():
            send(cluster, broker.TASK_NAME, data)
            got = answer(cluster, namespace, data["attempt"])
            assert got["result"] is None and said in got["error"], (what, got)
        marker = tmp_path / "pwned"
        send(cluster, "celery.chord_unlock", f"touch {marker}")
        send(cluster, "os.system", f"touch {marker}")
        wait_for("the unknown task to be discarded",
                 lambda: sum("Received unregistered task of type 'os.system'" in cluster.log_of(w)
                             for w in cluster.workers), 60)
    finally:
        conn.close()
    assert not marker.exists() and not evil.exists() and not Path("/var/tmp/elsewhere").exists()
    assert all(proc.poll() is None for proc in cluster.workers.values())


def test_a_broker_without_password_is_refused(tmp_path: Path, repo: tuple[Path, str], cluster: Cluster,
                                              host: tuple[str, str]) -> None:  # noqa: F811
    conf = write_config(tmp_path, cluster.cache, host, repo[1])
    for argv, said in (
            (["worker", "--broker", f"redis://10.231.1.1:{cluster.port}/0"], "no password"),
            (["worker", "--broker", f"redis://10.231.1.1:{cluster.port}/0", "--insecure-broker"],
             "only for a loopback address"),
            (["batch", "run", str(conf), "--executor", "celery", "--broker", f"redis://10.231.1.1:{cluster.port}/0"],
             "no password"),
            (["batch", "run", str(conf), "--executor", "celery"], "--executor celery needs --broker")):
        proc = subprocess.run([*PIUPARTS, *argv], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and said in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_rediss_with_a_certificate(tmp_path: Path) -> None:
    """A broker reached over TLS (redis-server's tls-port, a certificate the URL names)."""
    from piuparts.celery import broker
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "redis.log", "wb")
    server = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                               "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file",
                               str(cert), "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "",
                               "--dir", str(tmp_path)], stdout=log, stderr=log)
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    worker: subprocess.Popen[bytes] | None = None
    try:
        conn = broker.redis_client(url)
        wait_for("redis-server to answer over TLS", lambda: _pings(conn), 30)
        worker_log = tmp_path / "worker.log"
        worker = subprocess.Popen([*PIUPARTS, "worker", "--cache-dir", str(tmp_path / "cache"), "--name",
                                   f"tls-{os.getpid()}@here"], stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
                                  env={**os.environ, "PIUPARTS_BROKER": url})
        wait_for("the worker to be ready", lambda: b" ready." in worker_log.read_bytes(), 60)
        namespace, attempt = uuid.uuid4().hex[:16], uuid.uuid4().hex
        app = broker.make_app(url)
        app.send_task(broker.TASK_NAME, args=[{"payload_version": 1, "attempt": attempt, "namespace": namespace,
                                              "task_id": "t/p/1/amd64", "shell": "id"}], queue=broker.QUEUE)
        app.close()
        raw = wait_for("the answer", lambda: conn.get(broker.Keys(namespace).result(attempt)), 60)
        assert "task payload: unknown field 'shell'" in json.loads(raw)["error"]
        assert PASSWORD not in worker_log.read_text()  # the URL is logged without its password
        conn.close()
    finally:
        if worker is not None:
            end(worker, 60)
        end(server)


def _pings(conn: Any) -> bool:
    import redis
    try:
        return bool(conn.ping())
    except redis.RedisError:
        return False


CI_CLEAN1 = DebSpec("pp-cc-clean", "1.0", files={"/usr/share/pp-cc-clean/data": "1\n"})
CI_CLEAN2 = DebSpec("pp-cc-clean", "2.0", files={"/usr/share/pp-cc-clean/data": "2\n"})
CI_FAIL = DebSpec("pp-cc-fail", "1.0", scripts={"postinst": 'echo "pp-cc-fail: no" >&2; exit 1'})


def ci_seen(run: Ci) -> dict[str, Any]:
    """What a CI job shows of a run: exit code, summary, the JUnit cases (failure/error/skipped, and
    the failure's own words), each test's verdict and what its upgrade started from."""
    cases = {name: [(child.tag, child.get("message", "")) for child in case if child.tag != "system-out"]
             for name, case in run.cases().items()}
    tests = {t["package"]: (t["result"]["kind"], [(o["package"], o["version"], o["from"]) for o in t["upgrade_from"]])
             for t in run.report["tests"]}
    return {"code": run.proc.returncode, "summary": run.summary, "cases": cases, "tests": tests}


def installed_old(run: Ci, package: str) -> list[str]:
    """The NAME=VERSION arguments of the upgrade's "install old" step (its install, not the
    download before it: ci's scripts run without the network, so apt fetches first)."""
    return [a for s in run.test(package)["result"]["scenarios"] for step in s.get("steps", [])
            if step.get("name") == "install old" for c in step.get("commands", [])
            if "--download-only" not in c["argv"] for a in c["argv"] if "=" in a and not a.startswith("-")]


def test_ci_on_celery_workers_gives_the_local_verdicts(cluster: Cluster) -> None:
    """piuparts ci over the same uploads, with the local executor and with the workers (which reach
    the repository as a directory under their --repo-dir): the same verdicts, JUnit and exit codes."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for mode, extra in (("local", ()), ("celery", ("--executor", "celery", "--broker", cluster.url(),
                                                    "--lease", "6"))):
        env = ci_env(cluster.root / f"ci-{mode}", cluster.cache)
        env.include(CI_CLEAN1)
        env.include(CI_FAIL)
        first = env.ci(*extra, name="first")
        env.include(CI_CLEAN2)  # the notifier keeps 1.0, which reprepro deletes
        upgrade = env.ci(*extra, name="upgrade")
        seen[mode] = [ci_seen(first), ci_seen(upgrade)]
        assert installed_old(upgrade, "pp-cc-clean") == ["pp-cc-clean=1.0"], upgrade.proc.stdout
        assert not (env.repo / "piuparts-upgrade-from").exists()  # the repository is left as it was
        if mode == "celery":
            workers = {t["result"]["worker"]["name"].split("@")[0] for t in
                       first.report["tests"] + upgrade.report["tests"]}
            assert workers <= {"w1", "w2"} and workers, workers
            assert f"file:{env.repo}/piuparts-upgrade-from/pp" in Path(upgrade.test("pp-cc-clean")["log_file"]
                                                                        ).read_text()
    plain, upgraded = seen["local"]
    assert plain["code"] == 1 and plain["summary"] == "piuparts ci: 2 tested, 1 passed, 1 failed, 0 test-bed errors"
    assert plain["cases"]["pp-cc-clean install-purge"] == []
    assert [tag for tag, _ in plain["cases"]["pp-cc-fail install-purge"]] == ["failure"]
    assert upgraded["code"] == 0
    assert upgraded["summary"] == "piuparts ci: 1 tested, 1 passed, 0 failed, 0 test-bed errors"
    assert upgraded["cases"] == {"pp-cc-clean install-purge": [], "pp-cc-clean install-upgrade-purge": []}
    assert upgraded["tests"] == {"pp-cc-clean": ("pass", [("pp-cc-clean", "1.0", "notifier")])}
    assert seen["celery"] == seen["local"]


def test_ci_with_a_repository_outside_the_workers_repo_dir(cluster: Cluster, tmp_path: Path) -> None:
    env = ci_env(tmp_path, cluster.cache)
    env.include(CI_CLEAN1)
    run = env.ci("--executor", "celery", "--broker", cluster.url(), "--lease", "6", name="outside")
    assert run.proc.returncode == 2, run.proc.stdout + run.proc.stderr
    (line,) = run.proc.stderr.splitlines()
    assert line.startswith("piuparts: error: piuparts ci: the worker w") and "refused the test" in line, line
    assert f"extra repository file://{env.repo} is a local directory outside the worker's --repo-dir" in line
    assert "start the worker with --repo-dir over it" in line and "--repo-url" in line
    assert not (env.state / "pp/tested.json").exists()  # nothing was tested: it comes up again


def test_hostile_packages_stay_in_their_instances_on_celery_workers(tmp_path: Path, cluster: Cluster,
                                                                    host: tuple[str, str]) -> None:  # noqa: F811
    """tests/hostile's set and test_isolation's escapers, tested by ``piuparts worker``: no marker on
    the host, the host's kernel state unchanged, and each package in the state its attempt earns."""
    from tests import hostile
    from tests.integration.test_isolation import ESCAPER, ESCAPES, KERNEL_ESCAPER, host_mounts

    markers = [hostile.marker(name) for name in ("ptrace", "adequate", "userns")]
    markers += [Path("/tmp") / Path(path).name for path in ESCAPES.values()] + [Path("/tmp/pp-escape-chroot")]
    assert [path for path in markers if path.exists()] == []
    specs = [hostile.ptracer(hostile.build_ptrace_helper(tmp_path)), hostile.ADEQUATE_ESCAPER,
             hostile.KERNEL_PROBER, hostile.FORK_BOMB, hostile.DISK_FILLER, ESCAPER, KERNEL_ESCAPER]
    where = cluster.root / "hostile"  # under the workers' --repo-dir
    where.mkdir()
    line = reprepro(where / "repo", [spec.build(where) for spec in specs])
    conf = write_config(tmp_path, cluster.cache, host, line, flags="--tmpfs-size 256M")
    hostname, mounts = Path("/proc/sys/kernel/hostname").read_text(), host_mounts(cluster.cache)
    try:
        code, said = finish(celery_run(conf, cluster))
        escaped = [path for path in markers if path.exists()]
    finally:
        for path in markers:
            path.unlink(missing_ok=True)
    assert escaped == []
    assert Path("/proc/sys/kernel/hostname").read_text() == hostname
    assert host_mounts(cluster.cache) == mounts
    # The disk filler's test-bed error was tried on the other worker too (not swapped back and forth).
    assert code == 3, said
    assert "7 tests in" in said and "4 passed, 2 failed, 1 test-bed errors (retried later)" in said
    states = {name: p["state"] for name, p in status(conf).items()}
    assert states == {
        "pp-ptracer": "successfully-tested", "pp-kernel-prober": "successfully-tested",
        "pp-escaper": "successfully-tested", "pp-kernel-escaper": "successfully-tested",
        # its planted dpkg-query wrote its marker inside: a leftover
        "pp-adequate-escaper": "failed-testing",
        "pp-fork-bomb": "failed-testing",
        # out of space in its 256 MB: the test bed's (tried again later), never the package's failure
        "pp-disk-filler": "waiting-to-be-tested"}, (states, said)
