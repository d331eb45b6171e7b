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


#: Modules whose tests must not run at the same time as each other's: one
#: unit of work for pytest-xdist, so one worker runs them in turn.  Some count
#: schroot sessions, which are the machine's, not a cache directory's; the
#: others refresh the shared base or read its files (``base_root``).
TOGETHER = {"test_backend_contract": "schroot sessions", "test_backend_schroot": "schroot sessions",
            # refreshes of the shared base's lists (their generations counted), and readers of the base itself
            "test_concurrency": "base generations", "test_upgraded_dependencies": "base generations",
            "test_dropin": "base generations", "test_piuparts_slave": "base generations"}
#: The longest modules first (from ``pytest --durations``), so that no worker
#: is left with one of them at the end while the others wait.
LONGEST_FIRST = ("test_lvm_vm", "test_fault_injection", "test_celery", "test_piuparts_slave", "test_distupgrade",
                 "test_backend_contract",
                 "test_backend_schroot", "test_install_purge", "test_batch", "test_ci", "test_scenarios",
                 "test_layers_keys", "test_backend_tarball")


def _unit(nodeid: str) -> str:
    module = nodeid.partition("::")[0]
    return TOGETHER.get(Path(module).stem, module)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, where it is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With pytest-xdist (``-n``), a module is one unit of work (with TOGETHER's
    exceptions): its module fixtures (a Redis server, a repository, a base of
    another release) are made once, on one worker.  Units go out in the
    suite's order (LONGEST_FIRST), not by their number of tests."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False
    return ByModule(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(item.nodeid.partition("::")[0]).stem, len(rank)))
    if os.environ.get("CI"):
        return  # CI has root and the network: a test that cannot run there must fail, not skip
    for item in items:
        if "root" in item.keywords and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root (mounts, chroots)"))
        if "network" in item.keywords and (reason := _mirror_unreachable()):
            item.add_marker(pytest.mark.skip(reason=reason))


#: What every process of the suite shares in the cache: the bases, the layers,
#: the fetched .debs and the inputs the tests make once (tarballs, schroot and
#: sbuild chroots, the VM's kernel).  Many runs share them safely by design
#: (locks, atomic renames); instances are each worker's own.
SHARED_CACHE = ("archive", "bases", "debs", "layers", "references", "sbuild", "schroot", "test-inputs", "vm")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """One cache (and so one base) for the whole suite, kept between runs.

    With pytest-xdist, each worker gets a cache directory of its own whose
    shared parts are links to the suite's: what a test counts as left behind
    (instances, mounts, processes under them) is its worker's alone, while
    bases and layers are built once for the whole session."""
    path = Path(os.environ.get("PIUPARTS_TEST_CACHE", "/var/tmp/piuparts-ng-tests"))
    path.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return path
    own = path / "workers" / worker
    own.mkdir(parents=True, exist_ok=True)
    for name in SHARED_CACHE:
        (path / name).mkdir(exist_ok=True)
        link = own / name
        if not link.is_symlink():
            link.symlink_to(path / name)
    return own


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
