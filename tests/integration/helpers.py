"""Running the real command and looking at what it left on the host."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piuparts import resources
from tests.conftest import PIUPARTS


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
