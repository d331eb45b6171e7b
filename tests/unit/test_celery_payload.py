"""The Celery side's checks that need no broker: broker URLs, payloads, the workers-seen text."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest

from piuparts import __version__
from piuparts.celery import broker, seen
from piuparts.celery.payload import Answer, Payload
from piuparts.config import RunConfig
from piuparts.errors import UsageError

CACHE = Path("/srv/worker-cache")


def config(**changes: Any) -> dict[str, Any]:
    base = RunConfig(("bookworm",), "http://mirror.invalid/debian", ("main",), "amd64", Path("/var/cache/pp"))
    return {**base.to_json(), **changes}


def payload(**changes: Any) -> dict[str, Any]:
    data = {"payload_version": 1, "tool_version": __version__, "namespace": "0123456789abcdef",
            "attempt": uuid.uuid4().hex, "task_id": "team/foo/1.0-1/amd64", "config": config(),
            "subject": {"debs": [], "apt": ["foo=1.0-1"]}, "lease_seconds": 60, "longest_test": 18000.0, "avoid": []}
    return {**data, **changes}


@pytest.mark.parametrize("url", ["redis://:pw@10.0.0.5:6379/0", "rediss://user:pw@broker.example.org:6380/1",
                                 "redis://127.0.0.1:6379/0?insecure"])
def test_broker_urls_accepted(url: str) -> None:
    assert broker.check_url(url, insecure=url.endswith("insecure")) == url


@pytest.mark.parametrize("url, insecure, said", [
    ("redis://10.0.0.5:6379/0", False, "no password; give one"),
    ("redis://10.0.0.5:6379/0", True, "--insecure-broker is only for a loopback address"),
    ("redis://user@10.0.0.5:6379/0", False, "no password"),
    ("redis://localhost:6379/0", False, "or --insecure-broker for a broker on this machine's loopback"),
    ("amqp://:pw@10.0.0.5/", False, "expected redis://:PASSWORD@HOST:6379/0"),
    ("redis://:pw@host:port/0", False, "the port is not a number"),
])
def test_broker_urls_refused(url: str, insecure: bool, said: str) -> None:
    with pytest.raises(UsageError, match=said.replace("(", r"\(")) as err:
        broker.check_url(url, insecure)
    assert "pw" not in str(err.value).replace("PASSWORD", "")  # the password is never shown


def test_loopback_without_password_with_insecure() -> None:
    for host in ("127.0.0.1", "localhost", "[::1]"):
        assert broker.check_url(f"redis://{host}:6379/0", insecure=True)


def test_tls_options_from_the_url() -> None:
    url = "rediss://:pw@b:6380/0?ssl_ca_certs=/etc/ssl/ca.pem&ssl_cert_reqs=required"
    assert broker.ssl_options(url) == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ssl/ca.pem"}
    assert broker.ssl_options("redis://:pw@b:6379/0") is None
    assert broker.plain_url(url) == "rediss://:pw@b:6380/0"
    assert broker.make_app(url).conf.broker_use_ssl["ssl_ca_certs"] == "/etc/ssl/ca.pem"


def test_app_settings_both_sides_share() -> None:
    conf = broker.make_app("redis://:pw@127.0.0.1:6379/0", visibility_timeout=7200).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.broker_transport_options["visibility_timeout"] == 7200


def test_payload_round_trip_and_the_worker_config() -> None:
    checked = Payload.from_json(payload())
    assert Payload.from_json(checked.to_json()) == checked
    run = checked.run_config(CACHE)
    assert run.cache_dir == CACHE and run.distributions == ("bookworm",)
    assert checked.test_subject().apt_names == ("foo=1.0-1",)


@pytest.mark.parametrize("changes, said", [
    ({"command": "id"}, "unknown field 'command'"),
    ({"payload_version": 2}, "task payload version 2 is not 1"),
    ({"tool_version": "0.0.1"}, "task from piuparts-ng '0.0.1', this worker is piuparts-ng"),
    ({"attempt": "../../etc"}, "'attempt' 32 hexadecimal digits"),
    ({"task_id": "a b;rm"}, "'task_id' has characters outside"),
    ({"lease_seconds": 0}, "'lease_seconds' must be 1-3600"),
    ({"config": "x"}, "'config' has the wrong type"),
    ({"avoid": "w1"}, "'avoid' must be a list of worker names"),
])
def test_payload_refused(changes: dict[str, Any], said: str) -> None:
    with pytest.raises(UsageError, match=said.replace("(", r"\(")):
        Payload.from_json(payload(**changes))


def test_missing_field() -> None:
    data = payload()
    del data["subject"]
    with pytest.raises(UsageError, match="field 'subject' is missing"):
        Payload.from_json(data)


@pytest.mark.parametrize("changes, said", [
    ({"save_tarball": "/etc/evil.tgz"}, "'save_tarball' names something on another machine"),
    ({"backend_options": {"basetgz": "/root/base.tgz"}}, "the debootstrap backend takes no option 'basetgz'"),
    ({"backend": "tarball", "backend_options": {"basetgz": "/root/base.tgz"}}, "backend 'tarball'"),
    ({"bindmounts": ["/"]}, "--bindmount and --scriptsdir"),
    ({"scriptsdirs": ["/srv/hooks"]}, "--bindmount and --scriptsdir"),
    ({"backend": "existing", "backend_options": {"existing_chroot": "/"}}, "backend 'existing'"),
    ({"extra_repos": ["deb [trusted=yes] file:///etc ./"]}, "a local directory outside the worker's --repo-dir"),
    ({"mirror": "file:///srv/mirror"}, "mirror file:///srv/mirror is a local directory outside"),
    ({"mirror": "ftp://x/debian"}, "only http://, https:// or file:// under --repo-dir"),
    ({"distributions": ["../../x"]}, "is not a distribution, component or architecture name"),
    ({"tmpfs_size": "1G,exec"}, "is not a size"),
    # distros.conf's chains: sources no further than extra repositories, target releases names.
    ({"apt_sources": "deb http://deb.example/debian bookworm main\ndeb file:///root ./\n"},
     "extra repository file:///root is a local directory outside"),
    ({"distributions": ["bookworm", "trixie"], "upgrades": [["deb copy:///etc x main\n", ""]]},
     "extra repository copy:///etc is a local directory outside"),
    ({"default_release": 'pp"; Dir "/'}, "'pp\"; Dir \"/' is not a distribution"),
    ({"distributions": ["bookworm", "trixie"], "upgrades": [["", "x y"]]}, "'x y' is not a distribution"),
    ({"cache_dir": "relative"}, "'cache_dir' must be an absolute path"),
    ({"frobnicate": 1}, "run configuration: unknown key 'frobnicate'"),
])
def test_configs_a_worker_refuses(changes: dict[str, Any], said: str) -> None:
    checked = Payload.from_json(payload(config=config(**changes)))
    with pytest.raises(UsageError, match=said.replace("(", r"\(")):
        checked.run_config(CACHE)


def test_local_repository_under_a_repo_dir(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    line = f"deb [trusted=yes] file://{tmp_path}/repo pp main"
    checked = Payload.from_json(payload(config=config(extra_repos=[line])))
    assert checked.run_config(CACHE, (tmp_path,)).extra_repos == (line,)
    sneaky = f"deb [trusted=yes] file://{tmp_path}/../ pp main"
    with pytest.raises(UsageError, match="outside the worker's --repo-dir"):
        Payload.from_json(payload(config=config(extra_repos=[sneaky]))).run_config(CACHE, (tmp_path / "repo",))


@pytest.mark.parametrize("subject, said", [
    ({"debs": ["/etc/passwd"], "apt": []}, "may only name archive packages"),
    ({"apt": ["-oDir::Etc=/tmp"]}, "list of NAME or NAME=VERSION"),
    ({"apt": []}, "list of NAME or NAME=VERSION"),
    ({"apt": ["foo"], "cmd": "x"}, "may only name archive packages"),
])
def test_subjects_a_worker_refuses(subject: dict[str, Any], said: str) -> None:
    with pytest.raises(UsageError, match=said):
        Payload.from_json(payload(subject=subject)).test_subject()


def test_keys_and_namespace() -> None:
    keys = broker.Keys("0123456789abcdef")
    assert keys.lease("a" * 32) == "pp:0123456789abcdef:lease:" + "a" * 32
    with pytest.raises(UsageError, match="16 hexadecimal digits"):
        broker.Keys("pp:*")


def test_answer_round_trip() -> None:
    answer = Answer("a" * 32, "t/p/1/amd64", {"name": "w1@h/1"}, 1.0, 2.5, error="refused")
    assert Answer.from_json(answer.to_json()) == answer


def test_workers_seen_text(tmp_path: Path) -> None:
    workers = {"w1@h": {"host": "h", "tool_version": "0.1.0", "concurrency": 2, "backend": "debootstrap",
                        "base_age": 7200.0, "last_seen": 100.0,
                        "running": [{"task": "team/foo/1.0-1/amd64", "worker": "w1@h/1", "since": 90.0}]},
               "w2@g": {"host": "g", "tool_version": "0.1.0", "concurrency": 1, "last_seen": 95.0, "running": []}}
    seen.write(tmp_path, workers)
    assert seen.read(tmp_path) == workers
    text = seen.text(workers, now=110.0).splitlines()
    assert text[0] == "workers seen: 2"
    assert text[1] == ("  w1@h: host h, piuparts-ng 0.1.0, 2 at once, backend debootstrap, base age 2.0 h, "
                       "last seen 10 s ago")
    assert text[2].startswith("    running team/foo/1.0-1/amd64 since ")
    assert text[3].endswith("backend ?, base age ?, last seen 15 s ago") and text[4] == "    idle"
    assert seen.read(tmp_path / "none") == {} and seen.text({}) == ""


@pytest.mark.parametrize("asked, worker_allows, isolated", [
    (False, False, True),   # a section that asks for the network: not on a worker that does not allow it
    (True, False, True),
    (False, True, False),   # --scripts-network on both sides: the scripts get the worker's network
    (True, True, True),
])
def test_scripts_get_the_workers_network_only_when_the_worker_allows_it(asked, worker_allows, isolated) -> None:
    checked = Payload.from_json(payload(config=config(no_network=asked)))
    assert checked.run_config(CACHE, scripts_network=worker_allows).no_network is isolated
