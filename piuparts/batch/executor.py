"""The Executor interface: where the coordinator's tests run.

The coordinator (:mod:`.engine`) hands an executor :class:`Task` objects and
collects :class:`Finished` ones; it alone writes results.  An executor only
runs tests: the local process pool (:mod:`.local`) is the first; a Celery
executor (workers on other machines over Redis) is the second, with the
same contract:

- :meth:`Executor.free_slots`: how many more tasks it takes now (the
  coordinator never submits more);
- :meth:`Executor.submit`: start one task (plain data: a Task goes to and
  from JSON, its RunConfig as ``RunConfig.to_json()``);
- :meth:`Executor.collect`: wait up to ``timeout`` seconds, return the tasks
  that ended since the last call, each with its RunResult, or with
  ``result=None`` when it was cancelled or its worker died (the package is
  then simply untested: it waits again);
- :meth:`Executor.cancel`: stop every running task (locally: SIGINT,
  SIGTERM, then SIGKILL of each worker's process group, a few seconds
  apart); they come back from the next :meth:`collect` with no result;
- :meth:`Executor.running`: what runs now (for the display and ``status``);
- :meth:`Executor.close`: stop the workers (after cancel, or when idle).

A task is idempotent: running it twice tests the package twice, records
nothing by itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from piuparts.api import RunResult, Subject
from piuparts.errors import UsageError

TASK_VERSION = 1


@dataclass(frozen=True)
class Task:
    """One test: which package version of which section, with which RunConfig."""

    section: str
    package: str
    version: str
    architecture: str
    #: RunConfig.to_json() of the section.
    config: dict[str, Any] = field(compare=False)
    #: Where the worker writes the test's log (the coordinator files it away after).
    log_dir: str = ""
    #: .deb files to test instead of the archive's package at this version (``piuparts ci``).
    debs: tuple[str, ...] = field(default=(), compare=False)
    #: Archive names (NAME=VERSION) to test instead (``piuparts ci`` on remote workers: one
    #: source's binaries together, from the repository the workers reach).
    apt: tuple[str, ...] = field(default=(), compare=False)

    @property
    def id(self) -> str:
        """``SECTION/PACKAGE/VERSION/ARCH``: unique among the tasks of a run."""
        return f"{self.section}/{self.package}/{self.version}/{self.architecture}"

    @property
    def key(self) -> tuple[str, str, str]:
        """(package, version, architecture): the results table's key within the section."""
        return self.package, self.version, self.architecture

    @property
    def subject(self) -> Subject:
        """The .debs (or names) when the task gives them, else the package from the archive at exactly
        this version."""
        if self.debs:
            return Subject.from_json({"debs": list(self.debs), "apt": []})
        return Subject(apt_names=self.apt or (f"{self.package}={self.version}",))

    def to_json(self) -> dict[str, Any]:
        """Plain data, versioned."""
        return {"version": TASK_VERSION, "section": self.section, "package": self.package,
                "package_version": self.version, "architecture": self.architecture, "config": self.config,
                "log_dir": self.log_dir, **({"debs": list(self.debs)} if self.debs else {}),
                **({"apt": list(self.apt)} if self.apt else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Task":
        """The inverse of :meth:`to_json`; UsageError for another version or unknown keys."""
        if not isinstance(data, dict) or data.get("version") != TASK_VERSION:
            raise UsageError(f"task version {data.get('version') if isinstance(data, dict) else data!r} "
                             f"is not {TASK_VERSION}")
        known = {"version", "section", "package", "package_version", "architecture", "config", "log_dir", "debs",
                 "apt"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"task: unknown key {unknown[0]!r}")
        return cls(str(data["section"]), str(data["package"]), str(data["package_version"]),
                   str(data["architecture"]), dict(data["config"]), str(data.get("log_dir", "")),
                   tuple(str(d) for d in data.get("debs", ())), tuple(str(n) for n in data.get("apt", ())))


@dataclass(frozen=True)
class Finished:
    """A task that ended: its result (None: cancelled or lost), who ran it, when, how long."""

    task: Task
    result: RunResult | None
    worker: str
    started: float
    duration: float
    #: Why there is no result (cancelled, the worker died...).
    reason: str = ""
    #: The worker refused the task (a payload it does not take: the configuration's fault,
    #: the same for every test; the result says why).
    refused: bool = False


@dataclass(frozen=True)
class Running:
    """A task being run now."""

    task: Task
    worker: str
    started: float


class Executor(ABC):
    """Runs tasks; see the module's docstring for the contract."""

    @abstractmethod
    def free_slots(self) -> int:
        """How many more tasks it takes now."""

    @abstractmethod
    def submit(self, task: Task) -> Running:
        """Start ``task``; returns who runs it."""

    @abstractmethod
    def collect(self, timeout: float) -> list[Finished]:
        """Tasks that ended, waiting up to ``timeout`` seconds for the first."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop every running task; they come back from collect() without a result."""

    @abstractmethod
    def running(self) -> list[Running]:
        """What runs now."""

    @abstractmethod
    def close(self) -> None:
        """Stop the workers; the executor is not used again."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: An executor for (tests at once, the directory its logs go to).
Factory = Callable[[int, Path], Executor]
