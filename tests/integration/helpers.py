"""Running the real command and looking at what it left on the host."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from piuparts import resources
from tests.conftest import PIUPARTS


#: The [bookworm] section of piuparts.debian.org's piuparts.conf, its flags as the slave passes them.
BOOKWORM_FLAGS = ("--scriptsdir", "/etc/piuparts/scripts-log-alternatives", "--no-eatmydata",
                  "--scriptsdir", "/etc/piuparts/scripts", "--allow-database", "--warn-on-leftovers-after-purge",
                  "--no-upgrade-test")


@dataclass
class Run:
    """A finished ``piuparts`` run: exit code, output and its JSON report."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]

    def findings(self, check: str | None = None) -> list[dict[str, Any]]:
        """Every finding of every scenario (of ``check`` if given)."""
        return [f for s in self.report.get("scenarios", []) for f in s["findings"]
                if check is None or f["check"] == check]


def piuparts(cache_dir: Path, tmp_path: Path, *args: str, timeout: float = 900) -> Run:
    """Run the command as a user would, with a JSON report beside it."""
    report = tmp_path / "report.json"
    proc = subprocess.run([*PIUPARTS, "--cache-dir", str(cache_dir), "--json", str(report), *args],
                          capture_output=True, text=True, timeout=timeout)
    data = json.loads(report.read_text()) if report.exists() else {}
    return Run(proc.returncode, proc.stdout, proc.stderr, data)


def leaks(cache_dir: Path) -> list[str]:
    """Mounts and instance directories under the cache that a run left."""
    instances = cache_dir / "instances"
    left = resources.mounts_under(cache_dir)
    if instances.is_dir():
        left += [str(p) for p in instances.iterdir()]
    builds = cache_dir / "bases"
    if builds.is_dir():
        # bases may be shared with runs that go on now: a build of a live run is not left behind
        left += [str(p) for p in [*builds.glob(".build-*"), *builds.glob("*/.build-*")] if not resources.owner_alive(p)]
    return left


def owner_text(finding: dict[str, Any]) -> str | None:
    """A JSON finding's owners as the text report shows them: ``not owned``, ``owned by a, b``."""
    owners = finding["owners"]
    if owners is None:
        return None
    return "owned by " + ", ".join(owners) if owners else "not owned"


def blame_text(finding: dict[str, Any]) -> str | None:
    """A JSON finding's blame as one string (None when it blames nobody)."""
    return ", ".join(finding["blame"]) or None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(handler: Any) -> Iterator[http.server.ThreadingHTTPServer]:
    """An HTTP server on 127.0.0.1 (a free port) in a thread, for the block;
    ``server.seen`` is for the handler to record what it saw."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve_directory(directory: Path) -> Any:
    """``serve`` over the files of ``directory`` (an apt repository)."""
    class Handler(_Quiet):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)
    return serve(Handler)


def reference_leaks(cache_dir: Path) -> list[Path]:
    return list((cache_dir / "references").glob(".build-*"))


def forget_references(cache_dir: Path, marker: str) -> None:
    """Remove the cached references made with ``marker`` (a temporary path) in
    their key, and their lock files: no later run has that key."""
    for meta in (cache_dir / "references").glob("*/meta.json"):
        if marker in meta.read_text():
            shutil.rmtree(meta.parent)
            Path(f"{meta.parent}.lock").unlink()


def end(proc: subprocess.Popen[Any], seconds: float = 30) -> None:
    """SIGTERM, then SIGKILL, of one process we started (by its PID)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
