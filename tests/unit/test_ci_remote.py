"""``piuparts ci --executor celery``'s wiring, with a fake executor: what the tasks name (NAME=VERSION
from the repository as the workers reach it, no .deb path), where the versions to upgrade from are
put, a worker's refusal ending the run; and the executor choice ``batch run`` shares."""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from piuparts.api import RunResult
from piuparts.batch import executor_options
from piuparts.batch.engine import Stop
from piuparts.batch.executor import Executor, Finished, Running, Task
from piuparts.batch.local import LocalExecutor
from piuparts.celery.payload import Payload
from piuparts.ci import cli, run as run_mod
from piuparts.config import RunConfig
from piuparts.errors import UsageError
from piuparts.inputs import TestSubject
from piuparts.scenarios import install_upgrade_purge
from tests.debs import DebSpec

URL = "http://repo.example.org/team"
BASE = ("-d", "bookworm", "-m", "http://deb.debian.org/debian", "--cache-dir", "/var/cache/nowhere")


class FakeExecutor(Executor):
    """Answers every task at once: a pass, or a refusal (``refuse``)."""

    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.tasks: list[Task] = []
        self.done: list[Finished] = []
        self.cancelled = False

    def free_slots(self) -> int:
        return 1

    def submit(self, task: Task) -> Running:
        self.tasks.append(task)
        kind, error = ("usage", f"the worker w1 refused the test: {self.refuse}") if self.refuse else ("pass", None)
        self.done.append(Finished(task, RunResult(kind=kind, subject={}, error=error), "w1", time.time(), 1.0,
                                  refused=bool(self.refuse)))
        return Running(task, "w1", time.time())

    def collect(self, timeout: float) -> list[Finished]:
        done, self.done = self.done, []
        return done

    def cancel(self) -> None:
        self.cancelled = True

    def running(self) -> list[Running]:
        return []

    def close(self) -> None:
        pass


def publish(repo: Path, specs: list[DebSpec]) -> None:
    """A reprepro-shaped repository (conf/distributions, pool, Packages) without reprepro."""
    (repo / "conf").mkdir(parents=True, exist_ok=True)
    (repo / "conf/distributions").write_text("Codename: pp\nComponents: main\nArchitectures: amd64\n")
    pool, built = repo / "pool/main", repo.parent / "debs"
    for old in pool.glob("*.deb"):
        old.unlink()
    pool.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        deb = built / f"{spec.name}_{spec.version}_all.deb"
        if not deb.exists():  # built once: the same .deb is the same package, not a rebuild
            built.mkdir(exist_ok=True)
            spec.build(built)
        shutil.copy2(deb, pool / deb.name)
    packages = subprocess.run(["dpkg-scanpackages", "pool"], cwd=repo, check=True, capture_output=True,
                              text=True).stdout
    lists = repo / "dists/pp/main/binary-amd64"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "Packages").write_text(packages)


def options(repo: Path, state: Path, **changes: object) -> run_mod.Options:
    return run_mod.Options(str(repo), "pp", state, piuparts_argv=BASE, **changes)  # type: ignore[arg-type]


def test_remote_tasks_name_packages_from_the_repository_and_upgrade_from_the_replaced_version(
        tmp_path: Path) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    publish(repo, [DebSpec("pp-a", "1.0"), DebSpec("pp-b", "1.0")])
    first = FakeExecutor()
    report = run_mod.run(options(repo, state, remote=True, repo_url=URL + "/"), Stop(), lambda n, logs: first,
                         lambda _: None)
    assert report.exit_code() == 0 and report.tested == 2
    task = next(t for t in first.tasks if t.package == "pp-a")
    assert task.debs == () and task.subject.apt_names == ("pp-a=1.0",)
    config = RunConfig.from_json(task.config)
    assert config.extra_repos == (f"deb [trusted=yes] {URL} pp main",) and not config.upgrade_test
    # what the Celery payload (the worker's check) makes of it: names only, nothing refused
    Payload("0" * 16, "0" * 32, task.id, task.config, task.subject.to_json(), 10, 100).test_subject()

    publish(repo, [DebSpec("pp-a", "2.0"), DebSpec("pp-b", "1.0")])
    second = FakeExecutor()
    seen: list[list[Path]] = []

    def make(workers: int, logs: Path) -> Executor:
        seen.append(sorted((repo / run_mod.UPGRADE_FROM).rglob("*")))
        return second
    report = run_mod.run(options(repo, state, remote=True, repo_url=URL), Stop(), make, lambda _: None)
    (task,) = second.tasks
    assert task.subject.apt_names == ("pp-a=2.0",)
    config = RunConfig.from_json(task.config)
    assert config.upgrade_test and config.upgrade_named_versions
    assert config.extra_repos[-1] == f"deb [trusted=yes] {URL}/{run_mod.UPGRADE_FROM}/pp ./"
    # while the test ran, the kept 1.0 was in the repository's directory, reached as the repository is
    assert repo / run_mod.UPGRADE_FROM / "pp/pp-a_1.0_all.deb" in seen[0]
    assert not (repo / run_mod.UPGRADE_FROM).exists()  # and is gone after
    assert [(o.name, o.version, o.source) for o in report.outcomes[0].olds] == [("pp-a", "1.0", "previous-run")]


def test_the_local_executor_still_gets_the_debs(tmp_path: Path) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    publish(repo, [DebSpec("pp-a", "1.0")])
    fake = FakeExecutor()
    run_mod.run(options(repo, state), Stop(), lambda n, logs: fake, lambda _: None)
    (task,) = fake.tasks
    assert task.debs == (str(repo / "pool/main/pp-a_1.0_all.deb"),) and task.apt == ()
    assert RunConfig.from_json(task.config).extra_repos == (f"deb [trusted=yes] file://{repo} pp main",)


def test_a_refusal_ends_the_run_with_its_one_line_reason(tmp_path: Path) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    publish(repo, [DebSpec("pp-a", "1.0"), DebSpec("pp-b", "1.0")])
    fake = FakeExecutor(refuse="task payload: extra repository file:///x is a local directory outside the "
                        "worker's --repo-dir directories; start the worker with --repo-dir over it")
    with pytest.raises(UsageError, match=r"^piuparts ci: the worker w1 refused the test: .*--repo-dir over it$"):
        run_mod.run(options(repo, state, remote=True), Stop(), lambda n, logs: fake, lambda _: None)
    assert fake.cancelled
    conn = sqlite3.connect(state / "pp/results.sqlite")
    try:  # nothing recorded, nothing left marked as running
        assert conn.execute("SELECT count(*) FROM results").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM in_flight").fetchone() == (0,)
    finally:
        conn.close()
    assert not (state / "pp/tested.json").exists()


@pytest.mark.parametrize("argv, said", [
    (["--repo-url", URL], "--repo-url is where remote workers reach the repository: it goes with --executor"),
    (["--executor", "celery", "--broker", "redis://:pw@10.0.0.1/0", "--repo-url", "/srv/repo"],
     "--repo-url /srv/repo: an http:// or https:// URL expected"),
    (["--executor", "celery"], "--executor celery needs --broker"),
    (["--executor", "celery", "--broker", "redis://10.0.0.1:6379/0"], "no password"),
])
def test_ci_executor_options_are_checked(tmp_path: Path, argv: list[str], said: str) -> None:
    args = cli.parser().parse_args([str(tmp_path), "--codename", "pp", *argv])
    with pytest.raises(UsageError, match=said):
        cli._executor(args, cli._options(args, args.repository, args.codename))


def test_batch_and_ci_share_the_executor_choice(tmp_path: Path) -> None:
    p = argparse.ArgumentParser()
    executor_options.add_options(p)
    assert executor_options.factory(p.parse_args([]), tmp_path / "db") is LocalExecutor
    ci_args = cli.parser().parse_args([str(tmp_path), "--codename", "pp", "--executor", "celery", "--broker",
                                       "redis://:pw@10.0.0.1/0"])
    assert {"executor", "broker", "insecure_broker", "lease"} <= set(vars(ci_args))


def test_the_upgrade_goes_to_named_versions_only_when_asked() -> None:
    subject = TestSubject(apt_names=("pp-a=2.0", "pp-b"))
    assert install_upgrade_purge.targets(subject) == []
    assert install_upgrade_purge.targets(subject, named=True) == [("pp-a", "2.0")]
    assert not install_upgrade_purge.upgradable(subject) and install_upgrade_purge.upgradable(subject, True)


def test_a_task_with_names_goes_to_json_and_back() -> None:
    task = Task("pp.amd64", "src", "1.0", "amd64", {}, "/logs", apt=("pp-s1=1.0", "pp-s2=1.0"))
    again = Task.from_json(task.to_json())
    assert again.apt == task.apt and again.subject.apt_names == ("pp-s1=1.0", "pp-s2=1.0")
    assert "apt" not in Task("s", "p", "1", "amd64", {}).to_json()  # a batch task is as it was
