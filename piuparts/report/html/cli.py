"""``piuparts report CONFIG OUTDIR``: the report site of a batch configuration's database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from piuparts import log as logsetup
from piuparts.batch import config as config_mod


def parser() -> argparse.ArgumentParser:
    """``piuparts report``'s parser."""
    p = argparse.ArgumentParser(prog="piuparts report",
                                description="Write the report site (static HTML, JSON, an Atom feed) of a batch "
                                            "configuration's state database; only changed files are rewritten.")
    p.add_argument("config", metavar="CONFIG", help="the batch configuration (see conf/batch.conf.example)")
    p.add_argument("outdir", metavar="OUTDIR", help="the directory the site goes in (made if need be)")
    p.add_argument("--section", action="append", metavar="NAME", help="only this section (repeatable)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def write(conf: config_mod.Config, outdir: Path, sections: Sequence[str] | None = None) -> str:
    """Write the site; its summary line."""
    from piuparts.report.html import site
    return site.generate(conf, outdir, list(sections) if sections else None).line()


def main(argv: Sequence[str]) -> int:
    """``piuparts report ...``; returns the exit code (errors are raised for cli.py to report)."""
    try:
        args = parser().parse_args(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logsetup.setup(args.verbose, stream=sys.stderr)
    conf = config_mod.load(Path(args.config))
    print(write(conf, Path(args.outdir), args.section), flush=True)
    return 0
