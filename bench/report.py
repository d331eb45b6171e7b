#!/usr/bin/env python3
"""Benchmark: the report site of a synthetic 10,000-package database.

Run from the project directory (no root, no network):

    .venv/bin/python bench/report.py [--packages 10000] [--days 30] [--work-dir DIR]

Makes a section of PACKAGES packages (a Packages file on a file:// mirror,
a source every three binaries, fifty maintainers, some dependencies), a
state database with a result for each (an older version first for one in
four, a failure for one in ten, a run a day over DAYS days) and a small log
per result, as ``tests/unit/test_report_site.py``'s ``synthetic`` does.  Then
times ``piuparts report`` twice: into an empty directory (every file
written), and again (nothing changed, nothing rewritten).  The target:
under a minute for the first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from piuparts.report.html import site  # noqa: E402
from tests.unit.test_report_site import NOW, synthetic  # noqa: E402


def main() -> int:
    """Make the database, render twice, print the times."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packages", type=int, default=10_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--work-dir", help="where the database and the site go (default: a temporary directory)")
    args = p.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="pp-bench-report-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.monotonic()
    config = synthetic(work, args.packages, args.days)
    print(f"database of {args.packages} packages over {args.days} days made in {time.monotonic() - start:.1f} s")
    first = site.generate(config, work / "site", now=NOW)
    print(f"first render:  {first.seconds:.1f} s, {first.written} files written (target: under 60 s)")
    again = site.generate(config, work / "site", now=NOW)
    print(f"second render: {again.seconds:.1f} s, {again.written} files written, {again.unchanged} unchanged")
    if not args.work_dir:
        shutil.rmtree(work)
    return 0 if first.seconds < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
