"""The ``piuparts`` command as installed: the single-run command line
(:mod:`piuparts.cli`) with the modes it hands over to by their first word.

This module sits above every mode, so that none of them, nor the command
line they use to read piuparts' options, imports another mode to be found.
"""

from __future__ import annotations

from typing import Sequence

from piuparts import cli
from piuparts.batch import cli as batch_cli
from piuparts.ci import cli as ci_cli
from piuparts.report.html import cli as report_cli


def _worker(argv: list[str]) -> int:
    """``piuparts worker``: Celery is imported only here (and by ``--executor celery``)."""
    from piuparts.celery import worker
    return worker.main(argv)


#: ``piuparts NAME ...``: the mode that takes over, by NAME.
MODES: dict[str, cli.Mode] = {"batch": batch_cli.main, "ci": ci_cli.main, "report": report_cli.main,
                              "worker": _worker}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``piuparts`` command; returns the exit code."""
    return cli.main(argv, MODES)
