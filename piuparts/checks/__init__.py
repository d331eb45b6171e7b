"""Checks: one module each, registered by name; each returns Findings.

Importing this package registers every check module in it; the order here
is the order in which they run and report.
"""

from piuparts.checks.base import SKIP, Check, Context, make_checks
from piuparts.checks import processes, purge_status, leftovers  # noqa: F401  (register themselves)

__all__ = ["SKIP", "Check", "Context", "make_checks"]
