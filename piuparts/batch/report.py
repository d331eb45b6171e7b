"""What a run says about the sections: ``status`` (text and JSON) and ``summary.json``.

``status --json``::

    {"sections": {NAME: {"counts": {STATE: N},
                         "packages": {PKG: {"version": V, "state": S, "problems": [...],
                                            "blocked_by": [...]}}}}}

``summary.json``, in the spirit of piuparts.debian.org's: by source
package, for each section and ``overall``, ``[FLAG, BLOCKED, URL]`` with FLAG
``F`` failed, ``X`` blocked (cannot be tested, or a dependency failed,
cannot be tested or does not exist), ``W`` waiting, ``P`` passed, ``-``
unknown (the worst of the source's binaries, F the worst); BLOCKED is how
many packages wait on, or are held back by, the source's binaries; URL is
the page the report site makes (``SECTION/source/S/SOURCE.html``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Protocol

from piuparts.batch import schedule, states as st
from piuparts.batch.archive import Archive


class SectionRun(Protocol):
    """What these reports read of a section during a run (the engine's
    :class:`piuparts.batch.engine.SectionRun`; named here so that the engine
    imports its reports and not the other way round)."""

    archive: Archive
    computed: dict[str, st.Result]
    outcomes: dict[str, schedule.Outcome]

    def status(self) -> dict[str, Any]: ...


FLAGS = {st.FAILED: "F", st.CANNOT: "X", st.DEP_FAILED: "X", st.DEP_CANNOT: "X", st.DEP_MISSING: "X",
         st.WAITING: "W", st.WAITING_DEP: "W", st.PASSED: "P", st.UNKNOWN: "-"}
_WORST = "FXWP-"


def section_status(computed: Mapping[str, st.Result], outcomes: Mapping[str, schedule.Outcome],
                   packages: Mapping[str, Any]) -> dict[str, Any]:
    """``status --json``'s shape for one section: the counts, and each package's version,
    state, problems and what blocks it."""
    found = {}
    for name, (state, blocked_by) in computed.items():
        found[name] = {"version": packages[name].version, "state": state,
                       "problems": list(outcomes[name].problems), "blocked_by": list(blocked_by)}
    return {"counts": st.counts(computed), "packages": found}


def status_json(runs: Mapping[str, SectionRun]) -> dict[str, Any]:
    """The ``status --json`` document."""
    return {"sections": {name: run.status() for name, run in runs.items()}}


def status_text(runs: Mapping[str, SectionRun]) -> str:
    """A few lines a section: counts, then the packages that need a person."""
    lines = []
    for name, run in runs.items():
        counts = {s: n for s, n in st.counts(run.computed).items() if n}
        lines.append(f"[{name}] {len(run.computed)} packages: "
                     + ", ".join(f"{n} {s}" for s, n in counts.items()))
        for package, (state, blocked_by) in run.computed.items():
            outcome = run.outcomes[package]
            if state in (st.FAILED, st.CANNOT):
                detail = ", ".join(outcome.problems) or outcome.reason or ""
                lines.append(f"  {state:18} {package} {run.archive.packages[package].version}"
                             + (f": {detail}" if detail else ""))
            elif state in (st.DEP_FAILED, st.DEP_CANNOT, st.DEP_MISSING):
                lines.append(f"  {state:18} {package}: {', '.join(blocked_by)}")
    return "\n".join(lines)


def _blocked_counts(computed: Mapping[str, st.Result]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for _, blocked_by in computed.values():
        for name in blocked_by:
            tally[name] = tally.get(name, 0) + 1
    return tally


def summary(runs: Mapping[str, SectionRun]) -> dict[str, Any]:
    """The ``summary.json`` document."""
    packages: dict[str, dict[str, list[Any]]] = {}
    for name, run in runs.items():
        blocked = _blocked_counts(run.computed)
        for binary, (state, _) in run.computed.items():
            source = run.archive.packages[binary].source or binary
            url = f"{name}/source/{source[:4] if source.startswith('lib') else source[0]}/{source}.html"
            entry = [FLAGS[state], blocked.get(binary, 0), url]
            for key in (name, "overall"):
                old = packages.setdefault(source, {}).get(key)
                packages[source][key] = entry if old is None else _worse(old, entry)
    return {"_id": "Piuparts Package Test Results Summary", "_version": "1.0", "_type": "source",
            "_comment": "piuparts-ng batch results", "_date": time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()),
            "packages": packages}


def _worse(old: list[Any], new: list[Any]) -> list[Any]:
    """The worse flag of the two, with the blocked counts added."""
    flag_of = old if _WORST.index(old[0]) <= _WORST.index(new[0]) else new
    return [flag_of[0], old[1] + new[1], flag_of[2]]


def write_summary(path: Path, runs: Mapping[str, SectionRun]) -> None:
    """Write ``summary.json`` (under a temporary name, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(summary(runs), indent=1, sort_keys=True) + "\n")
    temporary.replace(path)
