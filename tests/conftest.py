"""Markers (root, network) that skip with a reason where the machine lacks them,
and the fixtures every tier shares."""

from __future__ import annotations

import os
import signal
import socket
import sys
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.debs import DebSpec


@lru_cache(maxsize=1)
def _mirror_unreachable() -> str | None:
    """None when the host's mirror answers, else the reason."""
    from piuparts import aptsources
    try:
        _, mirror = aptsources.default_distribution_and_mirror(
            aptsources.read_host_sources(), aptsources.host_codename())
    except Exception as err:  # noqa: BLE001 - any reason is a skip reason
        return f"no mirror in the host's apt sources: {err}"
    url = urlparse(mirror)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), 5).close()
    except OSError as err:
        return f"the mirror {mirror} is unreachable: {err}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI"):
        return  # CI has root and the network: a test that cannot run there must fail, not skip
    for item in items:
        if "root" in item.keywords and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root (mounts, chroots)"))
        if "network" in item.keywords and (reason := _mirror_unreachable()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """One cache (and so one base) for the whole suite, kept between runs."""
    path = Path(os.environ.get("PIUPARTS_TEST_CACHE", "/var/tmp/piuparts-ng-tests"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory):
    """Build fixture packages once per session: ``debs(SPEC) -> Path``."""
    outdir = tmp_path_factory.mktemp("debs")
    built: dict[tuple[str, str], Path] = {}

    def build(spec: DebSpec) -> Path:
        key = (spec.name, spec.version)
        if key not in built:
            built[key] = spec.build(outdir)
        return built[key]
    return build


PIUPARTS = [sys.executable, "-m", "piuparts"]

# A shell that starts the suite in the background (``cmd &`` without job
# control) makes it ignore SIGINT, and the commands the tests start would
# inherit that and shrug off the Ctrl-C the tests send them.  A handler
# here (not an ignore) gives every child the default disposition back.
signal.signal(signal.SIGINT, signal.default_int_handler)
