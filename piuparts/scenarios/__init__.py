"""Scenarios: ordered steps over a Chroot, each step's commands and outcome kept."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from piuparts.chroot import Chroot
from piuparts.command import Result
from piuparts.findings import FAIL, Finding
from piuparts.log import VIEW
from piuparts.state import Diff, Ignores, diff, diff_layered, diff_overlay, layer_paths, snapshot, snapshot_upper

log = logging.getLogger("piuparts")


@dataclass
class Step:
    """One step of a scenario (install, remove, purge...) and what it ran."""

    name: str
    ok: bool = True
    elapsed: float = 0.0
    message: str = ""
    commands: list[Result] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the JSON report."""
        return {"name": self.name, "ok": self.ok, "elapsed": round(self.elapsed, 3), "message": self.message,
                "commands": [{"cmdline": r.cmdline, "argv": list(r.argv), "returncode": r.returncode,
                              "elapsed": round(r.elapsed, 3), "timed_out": r.timed_out} for r in self.commands]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Step":
        """The inverse of :meth:`to_json` (the commands' output is not kept there)."""
        commands = [Result(tuple(c["argv"]), int(c["returncode"]), "", float(c["elapsed"]), bool(c["timed_out"]))
                    for c in data.get("commands", [])]
        return cls(str(data["name"]), bool(data["ok"]), float(data.get("elapsed", 0.0)),
                   str(data.get("message", "")), commands)


@dataclass
class ScenarioResult:
    """A scenario's steps, findings and timings."""

    name: str
    steps: list[Step] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Why the scenario did not run, when it did not.
    skipped: str | None = None
    #: Bytes the instance's changes took in its tmpfs at each point the checks
    #: looked (after_install is mostly the most), for sizing --tmpfs-size.
    space_used: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No failed step and no FAIL finding (a skipped scenario passes)."""
        return all(s.ok for s in self.steps) and not any(f.severity == FAIL for f in self.findings)

    @property
    def verdict(self) -> str:
        """PASS, FAIL or SKIP."""
        return "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"

    def step(self, name: str) -> Step:
        """Start a new step called ``name``."""
        self.steps.append(Step(name))
        log.debug("Step %s of %s", name, self.name, extra={VIEW: ("step", self.steps[-1])})
        return self.steps[-1]

    def run(self, step: Step, chroot: Chroot, argv: Sequence[str], **kwargs: Any) -> Result:
        """Run ``argv`` in ``chroot`` as part of ``step``."""
        result = chroot.run(argv, **kwargs)
        step.commands.append(result)
        step.elapsed += result.elapsed
        return result

    def timed(self, key: str, start: float) -> None:
        """Add the time since ``start`` to timing ``key``."""
        self.timings[key] = round(self.timings.get(key, 0.0) + time.monotonic() - start, 3)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the JSON report."""
        return {"name": self.name, "verdict": self.verdict, "skipped": self.skipped,
                "steps": [s.to_json() for s in self.steps],
                "findings": [f.to_json() for f in self.findings], "timings": self.timings,
                "space_used": self.space_used}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ScenarioResult":
        """The inverse of :meth:`to_json`."""
        return cls(str(data["name"]), [Step.from_json(s) for s in data.get("steps", [])],
                   [Finding.from_json(f) for f in data.get("findings", [])], dict(data.get("timings", {})),
                   data.get("skipped"), {str(k): int(v) for k, v in (data.get("space_used") or {}).items()})


@dataclass(frozen=True)
class Snapshot:
    """One look at the tree, and whether it is seen over the base alone.

    With dependency layers, the state before the test is the instance's
    upper directory over the base without the layers (the layer's packages
    are not there yet, as far as the test goes); every later state is seen
    over the layers too.
    """

    state: Any
    on_base: bool = False


class TreeWatcher:
    """Takes snapshots of a chroot the fastest way its backend allows."""

    def __init__(self, chroot: Chroot, ignores: Ignores, use_upper: bool | None = None) -> None:
        self.chroot = chroot
        self.ignores = ignores
        self.use_upper = chroot.upper is not None if use_upper is None else use_upper

    def take(self, on_base: bool = False) -> Snapshot:
        """A snapshot: the upper directory's state, or the whole tree's;
        ``on_base``: seen over the base alone (only with layers)."""
        if self.use_upper:
            assert self.chroot.upper is not None
            return Snapshot(snapshot_upper(self.chroot.upper, prune=self.ignores), on_base and bool(self.chroot.layers))
        return Snapshot(snapshot(self.chroot.root, prune=self.ignores))

    def compare(self, before: Snapshot, after: Snapshot) -> Diff:
        """What changed, with the ignored paths left out."""
        if not self.use_upper:
            return self.ignores.filter(diff(before.state, after.state))
        assert self.chroot.lower is not None
        lower, base = self.chroot.lower, self.chroot.base or self.chroot.lower
        if before.on_base == after.on_base:
            return self.ignores.filter(diff_overlay(base if before.on_base else lower, before.state, after.state))
        between = [path for layer in self.chroot.layers for path in cached_layer_paths(layer, base)]
        return self.ignores.filter(diff_layered(
            base if before.on_base else lower, before.state, base if after.on_base else lower, after.state,
            between))


def cached_layer_paths(layer: Path, base: Path) -> list[str]:
    """:func:`piuparts.state.layer_paths` of a cached layer tree, kept beside
    it (``paths``) once listed: a layer never changes."""
    listing = layer.parent / "paths"
    try:
        return [path for path in listing.read_text().split("\0") if path]
    except OSError:
        pass
    paths = list(layer_paths(layer, base))
    tmp = listing.with_name(f".paths.{os.getpid()}")
    try:
        tmp.write_text("\0".join(paths))
        os.rename(tmp, listing)
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only cache: list it again next time
    return paths
