"""The verdict and the findings at the end of the text log."""

from __future__ import annotations

import logging
from itertools import groupby

from piuparts.scenarios import ScenarioResult

log = logging.getLogger("piuparts")


def summary(scenarios: list[ScenarioResult], label: str) -> str:
    """The closing lines: the verdict, then the findings grouped by check."""
    passed = all(s.passed for s in scenarios)
    lines = [f"{'PASS' if passed else 'FAIL'}: {label}"]
    for scenario in scenarios:
        status = f"skipped ({scenario.skipped})" if scenario.skipped else "passed" if scenario.passed else "FAILED"
        lines.append(f"  scenario {scenario.name}: {status}")
        ordered = sorted(scenario.findings, key=lambda f: f.check)
        for check, group in groupby(ordered, key=lambda f: f.check):
            findings = list(group)
            lines.append(f"    {check} ({len(findings)}):")
            lines += [f"      {f.severity.upper()}: {f.line()}" for f in findings]
    return "\n".join(lines)
