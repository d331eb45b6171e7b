"""The argv prefix of a command inside an instance, exactly (no root needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from piuparts.backends import overlay
from piuparts.backends.overlay import ALLOWED_CAPABILITIES, SECCOMP_EXEC, Namespaces, _inside, dropped_capabilities
from piuparts.chroot import Chroot
from piuparts.debcache import download_argv


def spaces(network: bool) -> Namespaces:
    return Namespaces(cast(Any, None), 4242, network)


def test_a_command_inside_enters_every_namespace_then_the_filter_then_capsh_chroots_and_drops(monkeypatch):
    monkeypatch.setattr(overlay, "_last_capability", lambda: 40)
    drop = dropped_capabilities()
    assert _inside(spaces(False).enter(), Path("/c/root")) == [
        "nsenter", "--pid=/proc/4242/ns/pid", "--mount=/proc/4242/ns/mnt", "--uts=/proc/4242/ns/uts",
        "--ipc=/proc/4242/ns/ipc", "--", "/usr/bin/python3", "-I", "-S", str(SECCOMP_EXEC), "capsh",
        "--chroot=/c/root", "--drop=" + ",".join(drop), "--inh=", "--noamb", "--shell=/usr/bin/env", "--"]
    # An allow-list: every capability of the kernel but the ten a maintainer script needs.
    assert len(drop) == 41 - len(ALLOWED_CAPABILITIES) == 31
    for cap in ("sys_ptrace", "sys_chroot", "sys_admin", "dac_read_search", "mknod", "sys_module", "net_admin",
                "linux_immutable", "setpcap", "bpf", "checkpoint_restore"):
        assert f"cap_{cap}" in drop
    assert not {f"cap_{cap}" for cap in ALLOWED_CAPABILITIES} & set(drop)


def test_a_capability_newer_than_the_table_is_dropped_by_its_number(monkeypatch):
    monkeypatch.setattr(overlay, "_last_capability", lambda: 42)
    assert dropped_capabilities()[-2:] == ["41", "42"]
    assert dropped_capabilities(keep=())[:2] == ["cap_chown", "cap_dac_override"]


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
