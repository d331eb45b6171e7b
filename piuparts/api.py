"""The library API every mode calls: RunConfig -> Session -> test(subject) -> RunResult.

The command line, ``piuparts ci``, ``piuparts batch`` and remote workers all
run tests this one way::

    from piuparts.api import Session, Subject, configure

    config = configure(distributions=("bookworm",), warn_on_others=True,
                       severities=(("dependency-leftovers", "warn"),))  # piuparts' --warn-on-others
    with Session(config, log_dir=Path("/var/log/piuparts-ng")) as session:
        result = session.test(Subject.from_args(["foo_1.0-1_all.deb"]))
    print(result.verdict, result.kind, result.exit_code, result.log_file)

A :class:`Session` prepares the backend once (the cached base, its lock)
and can test any number of subjects.  :meth:`Session.test` returns a
:class:`RunResult` for every outcome: a pass, a package failure, a test-bed
failure, a usage error found late, or a bug of ours; only an interruption
(KeyboardInterrupt, :class:`~piuparts.errors.Interrupted`) propagates.
Library code never exits and never installs signal handlers: that is
:mod:`piuparts.cli`'s business.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from piuparts import __version__, aptsources, debcache, hooks as hooks_mod, instance_setup, layers
from piuparts import log as logsetup, options, repos
from piuparts.backends import Backend, BaseSpec
from piuparts.chroot import Chroot
from piuparts.config import SCHEMA_VERSION, RunConfig, config_from_values
from piuparts.errors import PiupartsError, TestbedError, UsageError
from piuparts.findings import FAIL, Finding
from piuparts.hooks import Hooks
from piuparts.inputs import TestSubject
from piuparts.scenarios import ScenarioResult, distupgrade, install_purge, install_upgrade_purge
from piuparts.scenarios.runner import Settings

log = logging.getLogger("piuparts")

#: What a test can come to, and the exit code of each (the one table).
KINDS = {"pass": 0, "fail": 1, "usage": 2, "testbed": 3, "internal": 4}
_KIND_OF_CODE = {code: kind for kind, code in KINDS.items()}

#: The subject of a test: .debs and names from the archive (see piuparts.inputs).
Subject = TestSubject

__all__ = ["KINDS", "RunConfig", "RunResult", "SCHEMA_VERSION", "Session", "Subject", "configure", "run"]


def configure(**values: Any) -> RunConfig:
    """A RunConfig from typed values, RunConfig's field names (``distributions=("bookworm",)``,
    ``severities=(("adequate", "fail"),)``, ``backend="schroot"``...); what is not given is
    the default, the host's for the distribution, mirror and architecture.  Checked as a
    coordinator's JSON is: a UsageError names an unknown field or a value of the wrong type."""
    if "distributions" not in values or "mirror" not in values:
        host_dist, host_mirror = aptsources.default_distribution_and_mirror(
            aptsources.read_host_sources(), aptsources.host_codename())
        values.setdefault("distributions", (host_dist,))
        values.setdefault("mirror", host_mirror)
    values.setdefault("components", ("main",))
    values.setdefault("architecture", aptsources.host_architecture())
    values.setdefault("cache_dir", aptsources.DEFAULT_CACHE_DIR)
    config = config_from_values(values)
    config.ignores  # a bad ignore_regexes entry is a usage error now, not in the middle of a run
    return options.own_dependencies(config)


@dataclass
class RunResult:
    """What one test came to, as plain data (to and from JSON with a version).

    ``kind`` is one of :data:`KINDS` and decides ``exit_code``; ``error`` is
    the one-line message of a usage, test-bed or internal error;
    ``scenarios`` are the scenarios' JSON forms (steps with their commands
    and timings, findings).
    """

    kind: str
    subject: dict[str, Any]
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: Where the test ran: distribution(s), mirror, architecture, backend, base (identity, age), layer.
    testbed: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    elapsed: float = 0.0
    log_file: str | None = None
    tool_version: str = __version__
    host: str = field(default_factory=socket.gethostname)
    version: int = SCHEMA_VERSION

    @property
    def exit_code(self) -> int:
        """0 pass, 1 the package failed, 2 usage, 3 test bed, 4 internal error."""
        return KINDS[self.kind]

    @property
    def verdict(self) -> str:
        """PASS, FAIL (the package's), or ERROR (anything else that stopped the test)."""
        return {"pass": "PASS", "fail": "FAIL"}.get(self.kind, "ERROR")

    @property
    def findings(self) -> list[Finding]:
        """Every finding of every scenario."""
        return [Finding.from_json(f) for s in self.scenarios for f in s.get("findings", [])]

    def scenario_results(self) -> list[ScenarioResult]:
        """The scenarios as objects, for the reporters."""
        return [ScenarioResult.from_json(s) for s in self.scenarios]

    def to_json(self) -> dict[str, Any]:
        """The JSON document (README: "The JSON result")."""
        return {"version": self.version, "verdict": self.verdict, "kind": self.kind, "exit_code": self.exit_code,
                "error": self.error, "subject": self.subject.get("label", ""), "packages": self.subject.get("packages", []),
                "subject_detail": self.subject, **self.testbed, "started": self.started, "elapsed": self.elapsed,
                "log_file": self.log_file, "tool_version": self.tool_version, "host": self.host,
                "scenarios": self.scenarios}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunResult":
        """The inverse of :meth:`to_json`; UsageError for another version or kind."""
        if data.get("version") != SCHEMA_VERSION:
            raise UsageError(f"result version {data.get('version')!r} is not {SCHEMA_VERSION}")
        if data.get("kind") not in KINDS:
            raise UsageError(f"result kind {data.get('kind')!r} is not one of {', '.join(KINDS)}")
        plain = {"version", "verdict", "kind", "exit_code", "error", "subject", "packages", "subject_detail",
                 "started", "elapsed", "log_file", "tool_version", "host", "scenarios"}
        return cls(kind=data["kind"], subject=dict(data.get("subject_detail") or {}),
                   scenarios=list(data.get("scenarios") or []), error=data.get("error"),
                   testbed={k: v for k, v in data.items() if k not in plain},
                   started=data.get("started", ""), elapsed=float(data.get("elapsed", 0.0)),
                   log_file=data.get("log_file"), tool_version=data.get("tool_version", ""),
                   host=data.get("host", ""), version=data["version"])


def subject_json(subject: Subject) -> dict[str, Any]:
    """What a result records of its subject."""
    return {"label": subject.label, "packages": subject.packages, "apt": list(subject.apt_names),
            "debs": [{"path": str(d.path), "package": d.package, "version": d.version,
                      "architecture": d.architecture} for d in subject.debs]}


def require_root() -> None:
    """Refuse to start without root, saying why it is needed."""
    if os.geteuid() != 0:
        raise UsageError("must run as root: building the chroot and mounting overlayfs, proc and devpts "
                         "need it (run it with sudo)")


class Session:
    """A prepared backend that tests subjects, one after another.

    ``with Session(config) as session`` prepares the base (slow the first
    time, cached after) and holds it until the block ends; a failure to
    prepare it raises (TestbedError, UsageError).  ``log_dir``, when given,
    receives one log file a test (all levels), named in its RunResult.
    """

    def __init__(self, config: RunConfig, log_dir: Path | None = None) -> None:
        self.config = config
        self.log_dir = log_dir
        self.backend: Backend | None = None
        self.prepare_seconds = 0.0

    def __enter__(self) -> "Session":
        require_root()
        config = self.config
        spec = BaseSpec(config.distribution, config.mirror, config.architecture, config.components)
        backend_class = Backend.registry.get(config.backend)
        if backend_class is None:
            raise UsageError(f"unknown backend {config.backend!r}; known: {', '.join(sorted(Backend.registry))}")
        why_not = backend_class.unavailable()
        if why_not is not None:
            raise UsageError(f"the {config.backend} backend cannot run here: {why_not}")
        backend = backend_class.from_options(spec, config)
        backend.command_timeout = config.max_command_runtime
        try:
            start = time.monotonic()
            _prepare(backend)
            self.prepare_seconds = round(time.monotonic() - start, 3)
            if config.save_tarball:
                backend.save(config.save_tarball)
        except BaseException:
            backend.close()
            raise
        self.backend = backend
        return self

    def __exit__(self, *exc: object) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def test(self, subject: Subject) -> RunResult:
        """Test ``subject``: every scenario the configuration asks for, each in an instance of its own."""
        if self.backend is None:
            raise RuntimeError("Session.test outside its with block")
        result = RunResult(kind="internal", subject=subject_json(subject),
                           started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        start = time.monotonic()
        with self._run_log(subject) as log_file:
            result.log_file = log_file
            try:
                scenarios, result.testbed = _run_scenarios(self.backend, self.config, subject)
                result.testbed["base_prepare_seconds"] = self.prepare_seconds
                result.scenarios = [s.to_json() for s in scenarios]
                result.kind = "pass" if all(s.passed for s in scenarios) else "fail"
            except PiupartsError as err:
                result.kind, result.error = _KIND_OF_CODE.get(err.exit_code, "internal"), str(err)
                log.error("%s", err)
            except Exception as err:  # a bug of ours: recorded, never blamed on the package
                result.error = f"internal error: {type(err).__name__}: {err}"
                log.error("%s", result.error, exc_info=True)
            result.elapsed = round(time.monotonic() - start, 3)
        return result

    @contextmanager
    def _run_log(self, subject: Subject) -> Iterator[str | None]:
        """This test's own log file, fed with what this thread logs meanwhile."""
        if self.log_dir is None:
            yield None
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        name = "_".join(subject.label.replace("/", "_").replace(", ", "+").split())[:120]
        path = self.log_dir / f"{name}.{stamp}.{os.getpid()}.{threading.get_ident() % 100000}.log"
        with logsetup.thread_log(path):
            yield str(path)


def run(config: RunConfig, subject: Subject, log_dir: Path | None = None) -> RunResult:
    """One test in a session of its own; a session that cannot start is a RunResult too."""
    try:
        with Session(config, log_dir) as session:
            return session.test(subject)
    except PiupartsError as err:
        return RunResult(kind=_KIND_OF_CODE.get(err.exit_code, "internal"), subject=subject_json(subject),
                         error=str(err), started=datetime.now(timezone.utc).isoformat(timespec="seconds"))


# -- one test -----------------------------------------------------------------

def _prepare(backend: Backend) -> None:
    """Prepare the backend's base; when that fails over the mirror, say
    whether the mirror can be reached at all."""
    try:
        backend.prepare()
    except TestbedError as err:
        mirror = backend.spec.mirror
        why = aptsources.unreachable(mirror) if mirror in str(err) else None
        if why is None:
            raise
        raise TestbedError(f"cannot make the base system: the mirror {mirror} is unreachable ({why}); check the "
                           "URL (-m, or the host's apt sources) and the network") from None


def _run_scenarios(backend: Backend, config: RunConfig,
                   subject: Subject) -> tuple[list[ScenarioResult], dict[str, Any]]:
    """Each scenario the configuration asks for, in an instance of its own."""
    spec = backend.spec
    info: dict[str, Any] = {"distribution": spec.distribution, "distributions": list(config.distributions),
                            "mirror": spec.mirror, "architecture": spec.architecture, "backend": backend.name,
                            "base": backend.describe()}
    log.info("Testing %s on %s (%s) from %s", subject.label, " -> ".join(config.distributions),
             spec.architecture, spec.mirror, extra=logsetup.HEADLINE)
    hooks = Hooks.from_dirs(config.scriptsdirs, subject.objects,
                            config.hooks_name(0) if config.distribution_names else spec.distribution)
    settings = Settings(config.ignores, config.max_command_runtime, dict(config.severities),
                        config.install_remove_install, config.install_purge_install, hooks,
                        prompt_timeout=config.prompt_timeout, deb_cache=config.cache_dir / "debs",
                        warn_on_others=config.warn_on_others, upgrade_named_versions=config.upgrade_named_versions,
                        origins=debcache.Origins.of([spec.mirror, *config.extra_repos], config.proxy))
    untestable = _is_testable(backend, config, hooks)
    if untestable is not None:
        return [untestable], info
    results = []
    plan = distupgrade.Plan(config, backend, lambda chroot: prepare_instance(chroot, config, hooks))
    for scenario in _scenarios(config):
        if scenario is install_upgrade_purge and not install_upgrade_purge.upgradable(
                subject, config.upgrade_named_versions):
            results.append(ScenarioResult(scenario.NAME, skipped=install_upgrade_purge.NO_DEBS))
            continue  # no instance needed to know that
        stack: list[Path] = []
        fetch = None
        if scenario is install_purge and backend.capabilities.layers and not config.purge_dependencies:
            stack, info["dependency_layer"], fetch = layers.for_subject(
                backend, subject, lambda chroot: repos.set_up(chroot, config.extra_repos, config.bindmounts,
                                                              config.max_command_runtime),
                settings.deb_cache or config.cache_dir / "debs", config.max_command_runtime,
                config.prompt_timeout, config.extra_repos, hooks, settings.origins)
        with layers.held(stack), backend.instance(stack) as chroot:
            prepare_instance(chroot, config, hooks)
            results.append(_run_scenario(scenario, chroot, subject,
                                         replace(settings, layer_complete=bool(stack), fetch=fetch if stack else None),
                                         plan))
    return results, info


def prepare_instance(chroot: Chroot, config: RunConfig, hooks: Hooks) -> None:
    """The setup hooks, extra repositories and bind mounts of a new instance."""
    hooks.install(chroot)
    _setup_hooks(chroot, hooks, "post_chroot_unpack")
    instance_setup.prepare(chroot, config, hooks)  # piuparts' options that change the instance; apt-get update
    repos.set_up(chroot, config.extra_repos, config.bindmounts, config.max_command_runtime)
    _setup_hooks(chroot, hooks, "post_setup")


def _setup_hooks(chroot: Chroot, hooks: Hooks, phase: str) -> None:
    failed = hooks_mod.failures(hooks.run(chroot, phase))
    if failed:
        raise TestbedError(f"a {phase} hook script failed: {failed[0]}")


def _is_testable(backend: Backend, config: RunConfig, hooks: Hooks) -> ScenarioResult | None:
    """None when the is_testable_ hooks (if any) allow the test; else what to report.

    As in piuparts: a script whose exit status has bit 2 set fails the test,
    any other non-zero status skips it.
    """
    if not any(name.startswith("is_testable") for name in hooks.scripts):
        return None
    with backend.instance() as chroot:
        prepare_instance(chroot, config, hooks)
        results = hooks.run(chroot, "is_testable")
    status = 0
    for _, result in results:
        if not result.ok:  # a signal or a timeout counts as a plain "no" (1)
            status |= result.returncode if result.returncode > 0 else 1
    if status == 0:
        return None
    reason = "; ".join(hooks_mod.failures(results))
    if status & 2:
        log.error("FAIL: the package cannot be tested: %s", reason)
        return ScenarioResult("is-testable", findings=[Finding("hooks", FAIL, "is_testable", reason)])
    log.info("SKIP: the package cannot be tested: %s", reason)
    return ScenarioResult("is-testable", skipped=f"an is_testable_ script says so: {reason}")


def _scenarios(config: RunConfig) -> list[ModuleType]:
    """The scenario modules the configuration asks for, in piuparts' order.

    As in piuparts, more than one distribution means the distupgrade test alone.
    """
    if len(config.distributions) > 1:
        return [distupgrade]
    chosen = [install_purge] if config.install_purge_test else []
    return chosen + ([install_upgrade_purge] if config.upgrade_test else [])


def _run_scenario(scenario: ModuleType, chroot: Chroot, subject: Subject,
                  settings: Settings, plan: distupgrade.Plan) -> ScenarioResult:
    """Run one scenario, or record why it was skipped."""
    if scenario is distupgrade:
        return distupgrade.run(chroot, subject, settings, plan)
    if scenario is install_upgrade_purge:
        reason = install_upgrade_purge.skip_reason(chroot, subject, settings.upgrade_named_versions)
        if reason:
            log.info("Skipping %s: %s", scenario.NAME, reason)
            return ScenarioResult(scenario.NAME, skipped=reason)
    result: ScenarioResult = scenario.run(chroot, subject, settings)
    return result

