"""JUnit XML of a CI pass, as GitLab and Jenkins read it.

Names stay the same from one version to the next, so the CI's history of a
test follows the package: the classname is ``piuparts.CODENAME.ARCH``, a
testcase ``PACKAGE SCENARIO`` (``foo install-purge``, ``foo
install-upgrade-purge``).  The versions go in the text, never in a name.
A package's failure is a ``failure`` whose text is the findings; a test-bed
failure (or an internal error) is an ``error``; a skipped scenario is
``skipped``; a test the run did not get to (Ctrl-C) is ``skipped`` too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

from piuparts.ci.run import Outcome, Report
from piuparts.ci.state import FROM_ARCHIVE, FROM_NOTIFIER, FROM_PREVIOUS_RUN
from piuparts.findings import FAIL
from piuparts.scenarios import ScenarioResult, install_purge, install_upgrade_purge

_FROM = {FROM_NOTIFIER: "our copy, kept by the notifier when reprepro replaced it",
         FROM_PREVIOUS_RUN: "our copy, kept by the previous run",
         FROM_ARCHIVE: "the base distribution's archive (we had no copy)"}


def classname(codename: str, arch: str) -> str:
    """The testcases' classname."""
    return f"piuparts.{codename}.{arch}"


def case_name(package: str, scenario: str) -> str:
    """A testcase's name: the package (or source, with --by-source) and the scenario, no version."""
    return f"{package} {scenario}"


def scenario_names(outcome: Outcome) -> list[str]:
    """The scenarios a unit's test runs."""
    return [install_purge.NAME, *([install_upgrade_purge.NAME] if outcome.unit.upgrade else [])]


def describe(outcome: Outcome) -> str:
    """The lines every testcase of a unit carries: versions, where the old one came from, the log."""
    unit = outcome.unit
    lines = [f"{b.name} {b.version} ({b.architecture})" for b in unit.binaries]
    lines += [f"upgraded from {o.name} {o.version}: {_FROM[o.source]}" + (f" ({o.path})" if o.path else "")
              for o in outcome.olds]
    if outcome.log_file:
        lines.append(f"log: {outcome.log_file}")
    return "\n".join(lines)


def log_excerpt(log_file: str | None, limit: int = 40) -> list[str]:
    """The output of the commands that failed, as the test's log shows it (their lines are warnings)."""
    if not log_file or not Path(log_file).is_file():
        return []
    lines = [line.split(" WARNING:   | ", 1)[1] for line in Path(log_file).read_text(errors="replace").splitlines()
             if " WARNING:   | " in line]
    return (["", "output of the failed commands (from the log):", *lines[-limit:]]) if lines else []


def _finding_lines(scenario: ScenarioResult, packages: list[str]) -> list[str]:
    return [f"{f.severity.upper()} [{f.check}] {f.line()}" for f in scenario.findings
            if not f.blame or set(f.blame) & set(packages)]


def _scenario_case(case: ET.Element, scenario: ScenarioResult, outcome: Outcome) -> str:
    """Fill one testcase from its scenario; what it came to (passed, failure, skipped)."""
    header = describe(outcome)
    if scenario.skipped:
        ET.SubElement(case, "skipped", message=scenario.skipped)
        ET.SubElement(case, "system-out").text = header
        return "skipped"
    lines = _finding_lines(scenario, [b.name for b in outcome.unit.binaries])
    if scenario.passed:
        ET.SubElement(case, "system-out").text = "\n".join([header, *lines])
        return "passed"
    failed = [f for f in scenario.findings if f.severity == FAIL]
    first = failed[0] if failed else None
    message = f"{outcome.unit.name}: {first.check}: {first.line()}" if first else f"{outcome.unit.name}: failed"
    failure = ET.SubElement(case, "failure", message=message, type=first.check if first else "step")
    failure.text = "\n".join([*lines, "", header, *log_excerpt(outcome.log_file)])
    return "failure"


def document(report: Report) -> ET.ElementTree:
    """The XML tree of one pass: one testsuite, a testcase per unit and scenario."""
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=f"piuparts ci {report.codename} {report.arch}")
    counts = dict.fromkeys(("tests", "failure", "error", "skipped"), 0)
    total = 0.0
    for outcome in report.outcomes:
        result = outcome.result
        by_name = {s.name: s for s in result.scenario_results()} if result is not None else {}
        names = list(dict.fromkeys([*scenario_names(outcome), *by_name]))
        elapsed = result.elapsed if result is not None else 0.0
        total += elapsed
        for name in names:
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", classname=classname(report.codename, report.arch),
                                 name=case_name(outcome.unit.name, name), time=f"{elapsed / len(names):.3f}")
            came_to = _case(case, name, by_name.get(name), outcome)
            if came_to in counts:
                counts[came_to] += 1
    for attribute, key in (("tests", "tests"), ("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        suite.set(attribute, str(counts[key]))
    suite.set("time", f"{total:.3f}")
    return ET.ElementTree(root)


def _case(case: ET.Element, name: str, scenario: ScenarioResult | None, outcome: Outcome) -> str:
    result = outcome.result
    if result is None:
        ET.SubElement(case, "skipped", message="not tested: the run was stopped before it")
        return "skipped"
    if result.kind in ("testbed", "usage", "internal"):
        what = "test-bed error" if result.kind != "internal" else "internal error of piuparts-ng"
        error = ET.SubElement(case, "error", message=f"{what}: {result.error}", type=result.kind)
        error.text = f"{result.error}\n(not the package's fault; tested again at the next run)\n\n{describe(outcome)}"
        return "error"
    if scenario is None:  # an is_testable hook's verdict stands for every scenario
        ET.SubElement(case, "skipped", message="not run")
        return "skipped"
    return _scenario_case(case, scenario, outcome)


def text(report: Report) -> bytes:
    """The JUnit XML of ``report``, as :func:`write` writes it."""
    tree = document(report)
    ET.indent(tree)
    root = tree.getroot()
    assert root is not None
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write(path: Path, report: Report) -> None:
    """Write the JUnit XML of ``report`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text(report))


def names(tree: ET.ElementTree) -> Iterable[tuple[str, str]]:
    """(classname, name) of every testcase (for tests and tools)."""
    for case in tree.iter("testcase"):
        yield case.get("classname", ""), case.get("name", "")
