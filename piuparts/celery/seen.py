"""The workers a coordinator has seen, and what each runs: ``LOGS/workers.json``.

The Celery executor writes it while it runs (the coordinator alone writes;
workers publish themselves on the broker); ``piuparts batch status`` reads
it.  One entry a worker node: its host, tool version, concurrency, cache
directory, when it was last seen, the backend and base age of its last
result, and the tests it runs now.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

FILE = "workers.json"


def write(logs: Path, workers: dict[str, dict[str, Any]]) -> None:
    """Replace the file (atomically: a reader sees the old one or the new one)."""
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / FILE
    temporary = path.with_name(f".{FILE}.{os.getpid()}")
    temporary.write_text(json.dumps({"written": time.time(), "workers": workers}, indent=1, sort_keys=True))
    temporary.replace(path)


def read(logs: Path) -> dict[str, dict[str, Any]]:
    """The workers of the last Celery run ({} when there was none)."""
    try:
        data = json.loads((logs / FILE).read_text())
    except (OSError, ValueError):
        return {}
    workers = data.get("workers") if isinstance(data, dict) else None
    return workers if isinstance(workers, dict) else {}


def text(workers: dict[str, dict[str, Any]], now: float | None = None) -> str:
    """``batch status``'s lines about the workers (empty when none was seen)."""
    if not workers:
        return ""
    now = time.time() if now is None else now
    lines = [f"workers seen: {len(workers)}"]
    for node, info in sorted(workers.items()):
        age = info.get("base_age")
        lines.append(f"  {node}: host {info.get('host', '?')}, piuparts-ng {info.get('tool_version', '?')}, "
                     f"{info.get('concurrency', '?')} at once, backend {info.get('backend') or '?'}, base age "
                     f"{'?' if age is None else f'{age / 3600:.1f} h'}, last seen "
                     f"{max(0, now - float(info.get('last_seen', now))):.0f} s ago")
        for job in info.get("running", []):
            lines.append(f"    running {job['task']} since {time.strftime('%H:%M:%S', time.localtime(job['since']))}")
        if not info.get("running"):
            lines.append("    idle")
    return "\n".join(lines)
