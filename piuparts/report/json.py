"""Writing the result as JSON (its form is :meth:`piuparts.api.RunResult.to_json`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any



def write(path: Path, data: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Write ``data`` (one result, or a list of them) to ``path`` (atomically: a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
