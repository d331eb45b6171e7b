"""The row of one finished test: its result classified by the section's
known problems, its log compressed and filed under LOGS/SECTION/KIND/,
the ages of the base and the layer it ran on (see :mod:`.engine`, which
writes it, and :mod:`.db`)."""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path
from typing import Sequence

from piuparts import __version__
from piuparts.api import RunConfig, RunResult
from piuparts.batch import problems
from piuparts.batch.config import Config
from piuparts.batch.db import Record
from piuparts.batch.executor import Finished, Task


def make_record(config: Config, known: Sequence[problems.KnownProblem], flags: tuple[str, ...],
                run_config: RunConfig, finished: Finished, run_id: int) -> Record:
    """The row of one finished test of a section (its known problems, the
    piuparts flags and RunConfig it ran with): classified, its log compressed and filed."""
    result = finished.result
    assert result is not None
    task = finished.task
    log_text, log_path = _file_log(config.logs, task, result, finished.started)
    names = problems.classify(result.kind, result.findings, log_text, known)
    data = result.to_json()
    data["log_file"] = log_path
    base = result.testbed.get("base") or {}
    return Record(task.section, task.package, task.version, task.architecture, result.kind, result.exit_code,
                  result.verdict, finished.started, finished.duration, result.tool_version or __version__, data,
                  run_id=run_id, error=result.error, problems=tuple(names), worker=finished.worker,
                  flags=flags, base_age=base.get("age_seconds") if isinstance(base, dict) else None,
                  layer_age=_layer_age(run_config, result), log_path=log_path)


def _layer_age(config: RunConfig, result: RunResult) -> float | None:
    layer = result.testbed.get("dependency_layer") or {}
    name = layer.get("layer") if isinstance(layer, dict) else None
    if not name:
        return None
    path = config.cache_dir / "layers" / name
    try:
        return round(time.time() - path.stat().st_mtime, 1)
    except OSError:
        return None


def _file_log(logs: Path, task: Task, result: RunResult, started: float) -> tuple[str, str | None]:
    """The test's log text, and where its compressed copy now is."""
    if not result.log_file or not Path(result.log_file).is_file():
        return "", None
    source = Path(result.log_file)
    text = source.read_text(errors="replace")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
    target = logs / task.section / result.kind / \
        f"{task.package}_{task.version.replace(':', '%3a')}_{task.architecture}.{stamp}.log.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as plain, gzip.open(target, "wb") as packed:
        shutil.copyfileobj(plain, packed)
    source.unlink()
    return text, str(target)


