"""Checks: one module each, registered by name; each returns Findings.

Importing this package registers every check module in it; the order here
is the order in which they run and report.
"""

from piuparts.checks.base import SKIP, Check, Context, make_checks
# Each module registers the checks it defines.
from piuparts.checks import (  # noqa: F401
    processes, purge_status, leftovers, symlinks, diversions, alternatives, users, statoverride, others_files,
    conffiles, cron_logrotate, adequate,
)

__all__ = ["SKIP", "Check", "Context", "make_checks"]
