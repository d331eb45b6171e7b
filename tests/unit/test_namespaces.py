"""The argv prefix of a command inside an instance, exactly (no root needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from piuparts.backends.overlay import DROPPED_CAPABILITIES, Namespaces, _inside
from piuparts.chroot import Chroot
from piuparts.debcache import download_argv

DROP = "--drop=" + ",".join(f"cap_{cap}" for cap in DROPPED_CAPABILITIES)


def spaces(network: bool) -> Namespaces:
    return Namespaces(cast(Any, None), 4242, network)


def test_a_command_inside_enters_every_namespace_then_capsh_chroots_and_drops():
    assert _inside(spaces(False).enter(), Path("/c/root")) == [
        "nsenter", "--pid=/proc/4242/ns/pid", "--mount=/proc/4242/ns/mnt", "--uts=/proc/4242/ns/uts",
        "--ipc=/proc/4242/ns/ipc", "--", "capsh", "--chroot=/c/root", DROP, "--shell=/usr/bin/env", "--"]
    assert "sys_chroot" in DROPPED_CAPABILITIES and "sys_admin" in DROPPED_CAPABILITIES


def test_no_network_adds_the_network_namespace_except_for_downloads():
    offline = spaces(True)
    assert offline.enter()[:6] == ["nsenter", "--pid=/proc/4242/ns/pid", "--mount=/proc/4242/ns/mnt",
                                   "--uts=/proc/4242/ns/uts", "--ipc=/proc/4242/ns/ipc", "--net=/proc/4242/ns/net"]
    assert offline.enter(network=True) == spaces(False).enter()


def test_downloads_come_first_only_offline_and_only_for_what_unpacks():
    online = Chroot(Path("/c/root"), ("p",))
    offline = Chroot(Path("/c/root"), ("p",), online_prefix=("o",))
    install = ["eatmydata", "apt-get", "-y", "install", "/tmp/piuparts-debs/x.deb"]
    assert download_argv(online, install) is None
    assert download_argv(offline, install) == [*install, "--download-only"]
    assert download_argv(offline, ["eatmydata", "apt-get", "-y", "dist-upgrade"]) == [
        "eatmydata", "apt-get", "-y", "dist-upgrade", "--download-only"]
    assert download_argv(offline, ["eatmydata", "apt-get", "-y", "purge", "x"]) is None
    assert download_argv(offline, ["eatmydata", "dpkg", "--purge", "x"]) is None


def test_the_environment_proxies_reach_commands_inside(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert Chroot(Path("/c/root"), ("p",)).env == {"http_proxy": "http://proxy.example:3128"}
    from piuparts.chroot import proxy_env
    assert proxy_env("http://other:8080") == {"http_proxy": "http://other:8080", "https_proxy": "http://other:8080"}
