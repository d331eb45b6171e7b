"""What a task carries and what its worker answers: plain, versioned, checked JSON.

A payload is ``{"payload_version", "tool_version", "namespace", "attempt",
"task_id", "config", "subject", "lease_seconds", "longest_test", "avoid"}``: the
section's RunConfig (``RunConfig.to_json()``) and the subject
(``TestSubject.to_json()``, archive names only) with what the worker needs
to answer exactly once.  :meth:`Payload.from_json` refuses unknown keys,
another payload version, another tool version and values of the wrong type;
:meth:`Payload.run_config` then refuses what would reach outside the
worker's cache directory (host paths, other backends, bind mounts, hooks,
local repositories outside the directories the worker allows) and puts the
worker's own cache directory in.  Every refusal is one line saying what
is wrong, and the worker answers it instead of running anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from piuparts import __version__
from piuparts.api import Subject
from piuparts.config import RunConfig, replace_config
from piuparts.errors import UsageError

PAYLOAD_VERSION = 1

_FIELDS = ("payload_version", "tool_version", "namespace", "attempt", "task_id", "config", "subject",
           "lease_seconds", "longest_test", "avoid")
_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_TMPFS_SIZE = re.compile(r"[0-9]+[kmgKMG%]?")
#: RunConfig keys that name something on the coordinator's machine: a worker refuses them
#: (as it refuses every backend but its own, with the options that backend declares).
_HOST_ONLY = ("save_tarball",)


@dataclass(frozen=True)
class Payload:
    """One attempt at one test, as a worker receives it (see the module's docstring)."""

    namespace: str
    attempt: str
    task_id: str
    config: dict[str, Any]
    subject: dict[str, Any]
    lease_seconds: float
    longest_test: float
    #: Worker nodes that should leave this attempt to another one (a test-bed failure there).
    avoid: tuple[str, ...] = ()
    tool_version: str = __version__
    payload_version: int = PAYLOAD_VERSION

    def to_json(self) -> dict[str, Any]:
        """The message's one argument."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["avoid"] = list(self.avoid)
        return data

    @classmethod
    def from_json(cls, data: Any) -> "Payload":
        """The payload ``data`` describes; UsageError naming the first thing wrong."""
        if not isinstance(data, dict):
            raise UsageError(f"task payload: a JSON object expected, not {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise UsageError(f"task payload: unknown field {unknown[0]!r}")
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise UsageError(f"task payload: field {missing[0]!r} is missing")
        if data["payload_version"] != PAYLOAD_VERSION:
            raise UsageError(f"task payload version {data['payload_version']!r} is not {PAYLOAD_VERSION}, the "
                             f"version this worker (piuparts-ng {__version__}) reads; run the same version "
                             "of piuparts-ng on the coordinator and the workers")
        if data["tool_version"] != __version__:
            raise UsageError(f"task from piuparts-ng {data['tool_version']!r}, this worker is piuparts-ng "
                             f"{__version__}; run the same version on the coordinator and the workers")
        for name, kind in (("namespace", str), ("attempt", str), ("task_id", str), ("config", dict),
                           ("subject", dict), ("lease_seconds", (int, float)), ("longest_test", (int, float))):
            if not isinstance(data[name], kind) or isinstance(data[name], bool):
                raise UsageError(f"task payload: {name!r} has the wrong type ({type(data[name]).__name__})")
        if not re.fullmatch(r"[0-9a-f]{16}", data["namespace"]) or not re.fullmatch(r"[0-9a-f]{32}",
                                                                                     data["attempt"]):
            raise UsageError("task payload: 'namespace' must be 16 and 'attempt' 32 hexadecimal digits")
        if not re.fullmatch(r"[A-Za-z0-9._+~:/=-]{1,400}", data["task_id"]):
            raise UsageError("task payload: 'task_id' has characters outside [A-Za-z0-9._+~:/=-]")
        if not 1 <= data["lease_seconds"] <= 3600 or data["longest_test"] <= 0:
            raise UsageError("task payload: 'lease_seconds' must be 1-3600 and 'longest_test' positive")
        avoid = data["avoid"]
        if not isinstance(avoid, list) or not all(isinstance(n, str) and len(n) < 300 for n in avoid):
            raise UsageError("task payload: 'avoid' must be a list of worker names")
        return cls(**{name: data[name] for name in _FIELDS if name != "avoid"}, avoid=tuple(avoid))

    def test_subject(self) -> Subject:
        """The subject: archive names only (a .deb path would be a path on another machine)."""
        subject = self.subject
        if set(subject) - {"debs", "apt"} or subject.get("debs"):
            raise UsageError("task payload: the subject may only name archive packages ('apt'); "
                             ".deb paths are not on this machine")
        names = subject.get("apt")
        if not isinstance(names, list) or not names or not all(
                isinstance(n, str) and _APT_NAME.fullmatch(n) for n in names):
            raise UsageError("task payload: the subject's 'apt' must be a list of NAME or NAME=VERSION")
        return Subject(apt_names=tuple(names))

    def run_config(self, cache_dir: Path, repo_dirs: tuple[Path, ...] = (), scripts_network: bool = False) -> RunConfig:
        """The RunConfig to run, in the worker's ``cache_dir``; UsageError for anything that
        would reach outside it (``repo_dirs``: where local repositories may be read from).
        Maintainer scripts get no network of the worker's (its broker, its loopback services)
        unless the worker was started with ``--scripts-network``, whatever the payload says."""
        config = RunConfig.from_json(self.config)
        if config.backend != "debootstrap" or config.backend_options:
            raise UsageError(f"task payload: backend {config.backend!r}; a worker makes its own bases "
                             "(debootstrap) in its cache directory")
        for name in _HOST_ONLY:
            if getattr(config, name) is not None:
                raise UsageError(f"task payload: {name!r} names something on another machine; "
                                 "a worker does not take it")
        if config.bindmounts or config.scriptsdirs:
            raise UsageError("task payload: --bindmount and --scriptsdir name directories of another machine; "
                             "a worker does not take them")
        # Target releases go into apt's configuration inside: names, nothing that could end a value there.
        releases = tuple(r for r in (config.default_release, *(r for _, r in config.upgrades)) if r)
        words = (*config.distributions, *config.components, config.architecture, *config.distribution_names,
                 *releases)
        bad = [w for w in words if not _WORD.fullmatch(w)]
        if bad or not config.distributions:
            raise UsageError(f"task payload: {bad[0] if bad else 'distributions'!r} is not a distribution, "
                             "component or architecture name")
        if config.tmpfs_size is not None and not _TMPFS_SIZE.fullmatch(config.tmpfs_size):
            raise UsageError(f"task payload: tmpfs size {config.tmpfs_size!r} is not a size")
        _check_url("mirror", config.mirror.split()[0] if config.mirror.split() else "", repo_dirs)
        # The sources an instance gets (distros.conf's chains) reach no further than the extra repositories.
        sources = [config.apt_sources or "", *(text for text, _ in config.upgrades)]
        lines = [line for text in sources for line in text.splitlines() if line.strip() and not line.startswith("#")]
        for line in (*config.extra_repos, *lines):
            _check_repo_line(line, repo_dirs)
        return replace_config(config, cache_dir=cache_dir, no_network=config.no_network or not scripts_network)


def _check_repo_line(line: str, repo_dirs: tuple[Path, ...]) -> None:
    from piuparts import repos
    try:
        entry = repos.parse_extra_repo(line)
    except UsageError as err:
        raise UsageError(f"task payload: {err}") from None
    _check_url("extra repository", entry.uris[0], repo_dirs)


def _check_url(what: str, url: str, repo_dirs: tuple[Path, ...]) -> None:
    """http(s) anywhere; a local directory only under one of ``repo_dirs``."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return
    if parsed.scheme in ("file", "copy"):
        path = Path(parsed.path).resolve()
        if any(path.is_relative_to(d.resolve()) for d in repo_dirs):
            return
        raise UsageError(f"task payload: {what} {url} is a local directory outside the worker's "
                         "--repo-dir directories; start the worker with --repo-dir over it (the same path, "
                         "mounted there), or give it as an http(s):// URL (piuparts ci: --repo-url)")
    raise UsageError(f"task payload: {what} {url!r}: only http://, https:// or file:// under --repo-dir")


@dataclass(frozen=True)
class Answer:
    """What a worker answers an attempt: a RunResult and its compressed log, or why it refused."""

    attempt: str
    task_id: str
    worker: dict[str, Any]
    started: float
    duration: float
    result: dict[str, Any] | None = None
    error: str | None = None
    #: The test's log, gzip-compressed, base64.
    log_gz: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Answer":
        """The inverse of :meth:`to_json`."""
        return cls(str(data["attempt"]), str(data["task_id"]), dict(data.get("worker") or {}),
                   float(data.get("started") or 0.0), float(data.get("duration") or 0.0), data.get("result"),
                   data.get("error"), data.get("log_gz"))
