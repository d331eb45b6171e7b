"""JUnit XML, as GitLab and Jenkins read it: a testsuite per run, a testcase
per scenario and package, findings as the failure text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from piuparts.findings import FAIL
from piuparts.scenarios import ScenarioResult


def document(scenarios: list[ScenarioResult], packages: list[str], suite_name: str) -> ET.ElementTree:
    """The XML tree of one run."""
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=suite_name)
    tests = failures = skipped = 0
    total = 0.0
    for scenario in scenarios:
        elapsed = sum(step.elapsed for step in scenario.steps)
        total += elapsed
        for package in packages:
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=f"piuparts.{scenario.name}", name=package,
                                 time=f"{elapsed / len(packages):.3f}")
            if scenario.skipped:
                ET.SubElement(case, "skipped", message=scenario.skipped)
                skipped += 1
                continue
            mine = [f for f in scenario.findings
                    if not f.blame or package in f.blame]
            failed = [f for f in mine if f.severity == FAIL]
            failed_steps = [s for s in scenario.steps if not s.ok]
            if failed or failed_steps:
                failures += 1
                first = failed[0] if failed else None
                message = f"{first.check}: {first.line()}" if first else failed_steps[0].message
                failure = ET.SubElement(case, "failure", message=message, type=first.check if first else "step")
                failure.text = "\n".join(f"{f.severity.upper()} [{f.check}] {f.line()}" for f in mine)
            elif mine:
                ET.SubElement(case, "system-out").text = "\n".join(
                    f"{f.severity.upper()} [{f.check}] {f.line()}" for f in mine)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", f"{total:.3f}")
    return ET.ElementTree(root)


def write(path: Path, scenarios: list[ScenarioResult], packages: list[str], suite_name: str) -> None:
    """Write the JUnit XML of one run to ``path``."""
    tree = document(scenarios, packages, suite_name)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
