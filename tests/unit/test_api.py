"""The library API: RunConfig and RunResult as versioned JSON, the kinds of
outcome and their exit codes, and a log file per test."""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from piuparts import api, cli
from piuparts.backends import Backend, BaseSpec, Capabilities
from piuparts.config import CONFIG_VERSION, RunConfig, replace_config
from piuparts.errors import Interrupted, PackageFailed, TestbedError, UsageError
from piuparts.findings import FAIL, WARN, Finding
from piuparts.inputs import TestSubject
from piuparts.scenarios import ScenarioResult

REPO = "deb [trusted=yes] http://repo.invalid/openstack bookworm main"
ARGV = ["-d", "bookworm", "-m", "http://mirror.invalid/debian main contrib", "--arch", "amd64",
        "--warn-on-others", "--extra-repo", REPO, "-I", "/var/lib/foo/.*", "--cache-dir", "/var/tmp/cache"]


def config() -> RunConfig:
    cfg, subject = cli.config_from_argv(ARGV)
    assert subject is None
    return cfg


def test_config_from_argv_records_what_was_asked():
    cfg = config()
    assert cfg.distributions == ("bookworm",)
    assert cfg.mirror == "http://mirror.invalid/debian"
    assert cfg.components == ("main", "contrib")
    assert cfg.extra_repos == (REPO,)
    assert cfg.severities == (("dependency-leftovers", "warn"),)
    assert cfg.cache_dir == Path("/var/tmp/cache")
    assert cfg.ignores.match("/var/lib/foo/bar") is not None


def test_configure_builds_a_run_config_from_typed_values_without_argv():
    cfg = api.configure(distributions=("bookworm",), mirror="http://mirror.invalid/debian",
                        components=("main", "contrib"), architecture="amd64", cache_dir=Path("/var/tmp/cache"),
                        extra_repos=(REPO,), ignore_regexes=("/var/lib/foo/.*",),
                        severities=(("dependency-leftovers", "warn"),), warn_on_others=True)
    assert cfg == config()  # the same settings as the command line's spelling of them


@pytest.mark.parametrize("values, message", [
    ({"bogus": 1}, "run configuration: unknown key 'bogus'"),
    ({"severities": "adequate=fail"}, "run configuration: 'severities' must be a list"),
    ({"ignore_regexes": ("(",)}, "-I '(': not a valid regular expression"),
])
def test_configure_refuses_what_the_json_reader_refuses(values, message):
    with pytest.raises(UsageError) as caught:
        api.configure(distributions=("bookworm",), mirror="http://mirror.invalid/debian", architecture="amd64",
                      **values)
    assert str(caught.value).startswith(message)


def test_the_modes_isolate_scripts_unless_the_flags_give_them_a_network():
    assert cli.config_from_argv(ARGV)[0].no_network is False  # a single run: as piuparts
    assert cli.config_from_argv(ARGV, isolated=True)[0].no_network is True  # batch run, ci
    assert cli.config_from_argv([*ARGV, "--scripts-network"], isolated=True)[0].no_network is False
    with pytest.raises(UsageError, match="--no-network and --scripts-network contradict each other"):
        cli.config_from_argv([*ARGV, "--scripts-network", "--no-network"], isolated=True)


def test_config_round_trips_through_json():
    cfg = config()
    text = json.dumps(cfg.to_json())
    assert RunConfig.from_json(json.loads(text)) == cfg


@pytest.mark.parametrize("change, message", [
    ({"bogus": 1}, "run configuration: unknown key 'bogus'"),
    ({"version": CONFIG_VERSION - 1}, f"run configuration version {CONFIG_VERSION - 1} is not the version"),
    ({"backend": "chroot"}, "run configuration: unknown backend 'chroot'; known: debootstrap, existing, lvm"),
    ({"backend_options": {"basetgz": "/srv/base.tgz"}},
     "run configuration: the debootstrap backend takes no option 'basetgz' (its options: none)"),
    ({"backend": "tarball", "backend_options": {"basetgz": "base.tgz"}},
     "run configuration: the tarball backend's 'basetgz' must be an absolute path"),
    ({"backend": "existing", "backend_options": {"existing_chroot": "/srv/sid", "hard_link": "yes"}},
     "run configuration: the existing backend's 'hard_link' must be true or false"),
    ({"backend": "lvm", "backend_options": {"lvm_volume": "vg/base", "basetgz": "/srv/base.tgz"}},
     "run configuration: the lvm backend takes no option 'basetgz' (its options: lvm_volume, lvm_snapshot_size)"),
    ({"backend_options": ["basetgz"]}, "run configuration: 'backend_options' must be a JSON object"),
    ({"extra_repos": "deb x"}, "run configuration: 'extra_repos' must be a list"),
    ({"cache_dir": "relative/dir"}, "run configuration: 'cache_dir' must be an absolute path"),
    ({"max_command_runtime": "10"}, "run configuration: 'max_command_runtime' must be of type float, not str"),
    ({"upgrade_test": 1}, "run configuration: 'upgrade_test' must be of type bool, not int"),
    ({"severities": [["leftovers"]]}, "run configuration: 'severities' must have 2 items"),
])
def test_config_from_json_refuses_what_is_wrong(change, message):
    data = {**config().to_json(), **change}
    with pytest.raises(UsageError) as err:
        RunConfig.from_json(data)
    assert str(err.value).startswith(message)


def test_config_from_json_needs_the_required_keys():
    data = config().to_json()
    del data["mirror"]
    with pytest.raises(UsageError, match="'mirror' is missing"):
        RunConfig.from_json(data)


def test_replace_config_checks_the_change():
    cfg = replace_config(config(), extra_repos=())
    assert cfg.extra_repos == ()
    with pytest.raises(UsageError):
        replace_config(cfg, upgrade_test="no")


def test_subject_round_trips_and_refuses_unknown_keys(tmp_path):
    subject = TestSubject(apt_names=("foo=1.0-1", "bar"))
    assert TestSubject.from_json(subject.to_json()) == subject
    with pytest.raises(UsageError, match="keys 'debs' and 'apt' only"):
        TestSubject.from_json({"apt": ["foo"], "argv": ["rm", "-rf", "/"]})
    with pytest.raises(UsageError, match="no such file"):
        TestSubject.from_json({"debs": [str(tmp_path / "missing.deb")]})


def scenario() -> ScenarioResult:
    result = ScenarioResult("install-purge")
    step = result.step("install")
    step.ok, step.message = False, "install failed: post-installation script returned error exit status 1"
    result.findings += [Finding("steps", FAIL, "install", step.message, blame=("pp-fail",)),
                        Finding("leftovers", WARN, "/etc/x", "left behind after purge", (), ("pp-fail",)),
                        Finding("others-files", FAIL, "/etc/issue", "modified", ("base-files",), ("pp-fail",))]
    return result


def test_result_round_trips_with_findings_as_lists_of_names():
    result = api.RunResult(kind="fail", subject=api.subject_json(TestSubject(apt_names=("pp-fail",))),
                           scenarios=[scenario().to_json()], testbed={"distribution": "bookworm"})
    data = json.loads(json.dumps(result.to_json()))
    assert (data["verdict"], data["kind"], data["exit_code"]) == ("FAIL", "fail", 1)
    assert data["scenarios"][0]["findings"][1]["owners"] == []
    assert data["scenarios"][0]["findings"][2]["owners"] == ["base-files"]
    assert data["scenarios"][0]["findings"][2]["blame"] == ["pp-fail"]
    again = api.RunResult.from_json(data)
    assert again.to_json() == result.to_json()
    assert [f.line() for f in again.findings] == [
        "install: install failed: post-installation script returned error exit status 1",
        "/etc/x (not owned): left behind after purge", "/etc/issue (owned by base-files): modified"]
    assert again.scenario_results()[0].verdict == "FAIL"


def test_result_from_json_refuses_another_version():
    with pytest.raises(UsageError, match="result version 99"):
        api.RunResult.from_json({"version": 99, "kind": "pass"})


@pytest.mark.parametrize("kind, code, verdict", [("pass", 0, "PASS"), ("fail", 1, "FAIL"), ("usage", 2, "ERROR"),
                                                  ("testbed", 3, "ERROR"), ("internal", 4, "ERROR")])
def test_every_kind_has_its_exit_code(kind, code, verdict):
    result = api.RunResult(kind=kind, subject={})
    assert (result.exit_code, result.verdict) == (code, verdict)


class Raising(Backend):
    """A backend whose instances fail in the way a test asks (the unit tier's
    seam; not registered, so no other test sees it)."""

    name = "test-raising"
    capabilities = Capabilities(host_root=False, upper_dir=False)
    error: BaseException = RuntimeError("boom")

    def _do_prepare(self) -> None:
        pass

    @contextmanager
    def _do_instance(self, layers):
        raise self.error
        yield  # pragma: no cover


@pytest.fixture
def session(tmp_path):
    backend = Raising(BaseSpec("bookworm", "http://mirror.invalid/debian", "amd64"), tmp_path)
    backend.prepare()
    cfg = replace_config(config(), cache_dir=str(tmp_path), upgrade_test=False)
    s = api.Session(cfg, log_dir=tmp_path / "logs")
    s.backend = backend  # what __enter__ does, without needing root
    return s


@pytest.mark.parametrize("error, kind, code", [
    (TestbedError("the mirror is down"), "testbed", 3),
    (UsageError("--apt foo: no repository has this package"), "usage", 2),
    (PackageFailed("it broke"), "fail", 1),
    (KeyError("oops"), "internal", 4),
])
def test_session_turns_every_failure_into_a_result(session, error, kind, code):
    Raising.error = error
    result = session.test(TestSubject(apt_names=("pp-x",)))
    assert (result.kind, result.exit_code) == (kind, code)
    assert result.error is not None and (str(error) in result.error)
    if kind == "internal":
        assert result.error == "internal error: KeyError: 'oops'"
    log = Path(result.log_file).read_text()
    assert result.error.splitlines()[0] in log


@pytest.mark.parametrize("error", [KeyboardInterrupt(), Interrupted(15)])
def test_session_lets_interruptions_through(session, error):
    Raising.error = error
    with pytest.raises(type(error)):
        session.test(TestSubject(apt_names=("pp-x",)))


def test_each_thread_logs_to_its_own_file(tmp_path):
    from piuparts.log import thread_log
    log = logging.getLogger("piuparts")
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        with thread_log(tmp_path / f"{name}.log"):
            barrier.wait()
            log.debug("line of %s", name)
            barrier.wait()
    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (tmp_path / "a.log").read_text().endswith("DEBUG: line of a\n")
    assert "line of b" not in (tmp_path / "a.log").read_text()
    assert "line of a" not in (tmp_path / "b.log").read_text()
