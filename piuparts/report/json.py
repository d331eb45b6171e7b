"""The result as JSON: verdict, steps with their commands and timings, findings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from piuparts.scenarios import ScenarioResult


def document(scenarios: list[ScenarioResult], info: dict[str, Any], exit_code: int) -> dict[str, Any]:
    """The whole result as plain data."""
    return {
        "verdict": "PASS" if all(s.passed for s in scenarios) else "FAIL",
        "exit_code": exit_code,
        **info,
        "scenarios": [s.to_json() for s in scenarios],
    }


def write(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` (atomically: a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
