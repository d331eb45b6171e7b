"""What a section tests next: pure functions over its history and states.

- :func:`outcome` turns a package version's history into what counts for
  its state: the last verdict (pass, fail; an internal error is
  ``cannot-be-tested``, not retried), or, when only test-bed failures (and
  usage errors, which at test time mean the test bed's apt lists disagree
  with the Packages read) were recorded, a retry with back-off:
  ``testbed-retry-delay`` seconds, doubled after each attempt; an attempt
  made by an earlier run is due at once (a night is back-off enough).  A
  run never sits idle for a retry: one not due when the run has nothing
  else to do is left to the next run.
  After ``testbed-retries`` retries the package is ``cannot-be-tested``
  with the last reason.  A test-bed failure is never the package's failure.
- Rescheduling as piuparts-master: passes older than
  ``reschedule-old-days`` (at most ``reschedule-old-count`` a run, oldest
  first) and fails older than ``reschedule-fail-days`` (at most
  ``reschedule-fail-count``) are tested again when they are testable (all
  their dependencies good); their old result counts until the new one
  comes, unless it is older than ``expire-old-days`` / ``expire-fail-days``
  (0: never), when it no longer counts at all.  ``batch reschedule``
  requests come first.
- :func:`order`: waiting packages, the ones that block the most others
  first, then rescheduled ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from piuparts.batch import states as st
from piuparts.batch.config import Section
from piuparts.batch.db import Record

DAY = 86400.0
RETRYABLE = ("testbed", "usage")


@dataclass(frozen=True)
class Outcome:
    """What a package version's history amounts to."""

    #: successfully-tested, failed-testing, cannot-be-tested, or None (untested: it waits).
    state: str | None
    #: The reason of a cannot-be-tested, or of the pending retry.
    reason: str | None = None
    #: The record that decided the state (None: no verdict yet).
    decisive: Record | None = None
    #: Test-bed attempts since the last verdict.
    attempts: int = 0
    #: When the next attempt is due (0: now).
    due: float = 0.0
    #: Known-problem names of the deciding result.
    problems: tuple[str, ...] = ()


_KIND_STATE = {"pass": st.PASSED, "fail": st.FAILED, "internal": st.CANNOT}


def outcome(history: Sequence[Record], section: Section, run_id: int | None = None,
            now: float | None = None) -> Outcome:
    """The state a package version's results give it (see the module's docstring)."""
    now = time.time() if now is None else now
    at = next((i for i in range(len(history) - 1, -1, -1) if history[i].kind in _KIND_STATE), -1)
    decisive = history[at] if at >= 0 else None
    retries = [r for r in history[at + 1:] if r.kind in RETRYABLE]
    if decisive is not None and not _expired(decisive, section, now):
        reason = f"internal error: {decisive.error}" if decisive.kind == "internal" else decisive.error
        return Outcome(_KIND_STATE[decisive.kind], reason, decisive, len(retries), problems=decisive.problems)
    if not retries:
        return Outcome(None)
    last = retries[-1]
    reason = f"test bed: {last.error}" if last.kind == "testbed" else f"usage error: {last.error}"
    if len(retries) > section.testbed_retries:
        return Outcome(st.CANNOT, f"{reason} (after {len(retries)} attempts)", last, len(retries))
    due = 0.0
    if run_id is not None and last.run_id == run_id:
        due = last.started + last.duration + section.testbed_retry_delay * 2 ** (len(retries) - 1)
    return Outcome(None, reason, None, len(retries), due)


def _expired(record: Record, section: Section, now: float) -> bool:
    """A verdict older than expire-old-days (a pass) or expire-fail-days (a fail) no longer counts."""
    days = section.expire_old_days if record.kind == "pass" else section.expire_fail_days
    return record.kind in ("pass", "fail") and days > 0 and now - record.started > days * DAY


def results_for_states(outcomes: Mapping[str, Outcome]) -> dict[str, str]:
    """The ``results`` argument of :func:`states.compute`."""
    return {name: o.state for name, o in outcomes.items() if o.state is not None}


def due_for_reschedule(outcomes: Mapping[str, Outcome], section: Section, requests: Mapping[str, str],
                       now: float | None = None) -> list[str]:
    """Packages whose verdict is to be checked again: requests, then the oldest passes and fails."""
    now = time.time() if now is None else now
    chosen = sorted(n for n in requests if n in outcomes and outcomes[n].decisive is not None)
    if not section.auto_reschedule:
        return chosen
    for kind, days, count in (("pass", section.reschedule_old_days, section.reschedule_old_count),
                              ("fail", section.reschedule_fail_days, section.reschedule_fail_count)):
        old = [(o.decisive.started, n) for n, o in outcomes.items()
               if o.decisive is not None and o.decisive.kind == kind and n not in chosen
               and now - o.decisive.started > days * DAY]
        chosen += [n for _, n in sorted(old)[:count]]
    return chosen


def testable_again(packages: Mapping[str, st.Package], results: Mapping[str, str],
                   outside: Mapping[str, str], names: Sequence[str]) -> list[str]:
    """Of ``names`` (rescheduled), the ones whose dependencies are all good: with their own
    results set aside, they would be waiting-to-be-tested."""
    if not names:
        return []
    aside = set(names)
    without = {n: s for n, s in results.items() if n not in aside}
    again = st.compute(packages, without, outside)
    return [n for n in names if again.get(n, (None,))[0] == st.WAITING]


def order(computed: Mapping[str, st.Result], rescheduled: Sequence[str] = ()) -> list[str]:
    """Waiting packages, the most blocking first (then by name); then the rescheduled ones."""
    weights = st.blocking(computed)
    waiting = sorted(weights, key=lambda n: (-weights[n], n))
    return waiting + [n for n in rescheduled if n not in weights]
