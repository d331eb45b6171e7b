"""The ``--executor`` options ``batch run`` and ``ci`` share, and the executor they choose.

Apart from :mod:`.executor` (the interface) because choosing needs both
executors, the Celery one included: the interface stays below both of them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from piuparts.batch.executor import Factory


def add_options(p: argparse.ArgumentParser) -> None:
    """``--executor`` and the Celery executor's options (``batch run`` and ``ci`` share them)."""
    p.add_argument("--executor", choices=("local", "celery"), default="local",
                   help="local worker processes (default), or Celery workers over a Redis --broker")
    p.add_argument("--broker", metavar="URL", default=os.environ.get("PIUPARTS_BROKER"),
                   help="with --executor celery: redis://:PASSWORD@HOST:6379/0 (default: $PIUPARTS_BROKER)")
    p.add_argument("--insecure-broker", action="store_true", help="allow a loopback broker URL without a password")
    p.add_argument("--lease", type=float, default=60.0, metavar="SECONDS",
                   help="with --executor celery: re-queue a test whose worker is silent this long (default: 60)")


def factory(args: argparse.Namespace, db: Path) -> Factory:
    """The executor ``args`` choose; a bad ``--broker`` or ``--lease`` is a UsageError now, before
    anything starts.  ``db``: the coordinator's database (a restarted coordinator with the same
    one takes over the Celery attempts it left)."""
    if args.executor == "celery":
        from piuparts.celery.executor import CeleryExecutor, check_args, namespace_for
        url = check_args(args)
        return lambda _workers, logs: CeleryExecutor(url, namespace_for(db), logs, lease=args.lease)
    from piuparts.batch.local import LocalExecutor
    return LocalExecutor
