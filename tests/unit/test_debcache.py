"""The shared .deb cache: what the harness downloads into it itself, and when apt need not."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

from piuparts import debcache
from piuparts.chroot import Chroot
from tests.debs import DebSpec


#: The paths the test mirror was asked for.
ASKED: list[str] = []


class _Archive(http.server.SimpleHTTPRequestHandler):
    """A mirror's pool on 127.0.0.1 that remembers what it was asked for."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        ASKED.append(self.path)
        super().do_GET()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness downloads through the proxy of its environment; a package build sets
    one that refuses (http://127.0.0.1:9/), and these mirrors are local."""
    for name in ("http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "mirror"
    root.mkdir()
    ASKED.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Archive(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/debian", root
    finally:
        server.shutdown()
        server.server_close()
    debcache._failed_origins.clear()


def _entry(url: str, deb: Path, data: bytes | None = None) -> debcache.Listed:
    data = deb.read_bytes() if data is None else data
    return (f"{url}/pool/{deb.name}", deb.name, str(len(data)), f"SHA256:{hashlib.sha256(data).hexdigest()}")


def _published(root: Path, tmp_path: Path, name: str) -> Path:
    deb = DebSpec(name, files={f"/usr/share/{name}/data": name * 50}).build(tmp_path)
    target = root / "debian" / "pool" / deb.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(deb.read_bytes())
    return target


def test_what_the_cache_lacks_is_downloaded_from_the_runs_mirror_and_checked(mirror, tmp_path: Path) -> None:
    url, root = mirror
    debs = [_published(root, tmp_path, name) for name in ("pp-one", "pp-two")]
    cache = tmp_path / "cache"
    listing = [_entry(url, deb) for deb in debs]
    assert debcache.fetch(cache, listing, debcache.Origins((url,))) == 2
    assert sorted(p.name for p in cache.iterdir()) == sorted(deb.name for deb in debs)
    assert all((cache / deb.name).read_bytes() == deb.read_bytes() for deb in debs)
    assert sorted(ASKED) == sorted(f"/debian/pool/{deb.name}" for deb in debs)
    # Again: the cache has them, nothing is asked of the mirror.
    assert debcache.fetch(cache, listing, debcache.Origins((url,))) == 0
    assert len(ASKED) == 2


def test_a_download_that_does_not_match_apts_checksum_is_not_kept(mirror, tmp_path: Path) -> None:
    url, root = mirror
    deb = _published(root, tmp_path, "pp-tampered")
    cache = tmp_path / "cache"
    honest = _entry(url, deb)
    deb.write_bytes(deb.read_bytes()[:-1] + b"X")  # the mirror now serves other bytes of the same size
    assert debcache.fetch(cache, [honest], debcache.Origins((url,))) == 0
    assert ASKED == [f"/debian/pool/{deb.name}"]
    assert list(cache.iterdir()) == []  # neither the file nor a temporary one


def test_only_the_runs_own_sources_are_downloaded_from(mirror, tmp_path: Path) -> None:
    url, root = mirror
    deb = _published(root, tmp_path, "pp-elsewhere")
    cache = tmp_path / "cache"
    # An instance's sources.list pointed apt at another path of the host (or another host):
    # the harness does not connect there; apt, inside the instance, may.
    assert debcache.fetch(cache, [_entry(url, deb)], debcache.Origins((f"{url}-other", "file:///srv/mirror"))) == 0
    assert ASKED == [] and not cache.exists()


def test_an_origin_that_does_not_answer_is_left_to_apt_for_the_rest_of_the_run(tmp_path: Path) -> None:
    import socket
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/debian"
    entry = (f"{url}/pool/pp_1_all.deb", "pp_1_all.deb", "10", "SHA256:" + "0" * 64)
    try:
        assert debcache.fetch(tmp_path / "cache", [entry], debcache.Origins((url,))) == 0
        assert any(url in origin for origin in debcache._failed_origins)
    finally:
        debcache._failed_origins.clear()
    assert list((tmp_path / "cache").iterdir()) == []


def test_fill_says_whether_apt_has_anything_left_to_download(mirror, tmp_path: Path) -> None:
    url, root = mirror
    debs = [_published(root, tmp_path, name) for name in ("pp-a", "pp-b")]
    instance = tmp_path / "root"
    (instance / debcache.ARCHIVES.lstrip("/")).mkdir(parents=True)
    chroot = Chroot(instance, [])
    listing = [_entry(url, deb) for deb in debs]
    local = (f"file:{tmp_path}/pp-local_1_all.deb", "pp-local_1_all.deb", "5", "SHA256:" + "1" * 64)
    cache = tmp_path / "cache"
    without = debcache.fill(chroot, cache, [], [], listing=[*listing, local])  # no origins: as before
    assert (without.copied, without.complete) == (0, False)
    filled = debcache.fill(chroot, cache, [], [], listing=[*listing, local],
                            origins=debcache.Origins.of([f"deb {url} bookworm main"]))
    assert (filled.copied, filled.listed, filled.complete) == (2, 2, True)  # apt reads file: URIs in place
    assert sorted(p.name for p in (instance / debcache.ARCHIVES.lstrip("/")).iterdir()) == sorted(
        deb.name for deb in debs)


@pytest.mark.parametrize("line, origin", [
    ("deb http://deb.debian.org/debian bookworm main", "http://deb.debian.org/debian"),
    ("deb [trusted=yes arch=amd64] https://repo.example.org/x ./", "https://repo.example.org/x"),
    ("http://deb.debian.org/debian", "http://deb.debian.org/debian"),
    ("deb file:///srv/repo ./", None),
    ("deb [trusted=yes] copy:/srv/repo ./", None),
])
def test_the_origin_of_a_source_line(line: str, origin: str | None) -> None:
    assert debcache.origin_of(line) == origin


def test_a_killed_runs_partial_download_is_reaped_by_cleanup(tmp_path: Path) -> None:
    from piuparts import prune
    debs = tmp_path / "debs"
    debs.mkdir()
    dead = debs / debcache.partial_name("pp_1_all.deb", pid=2**22 + 1)  # above any pid_max: no such process
    alive = debs / debcache.partial_name("pp_1_all.deb")  # this process's own, still being written
    dead.write_bytes(b"half")
    alive.write_bytes(b"half")
    assert prune.reap_temporaries(tmp_path) == [dead]
    assert alive.exists()
