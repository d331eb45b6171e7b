"""The progress display: rich on a terminal, plain lines otherwise.

On a terminal: a bar (tests done of done + running + queued), the ETA, the
counts per state and the packages running now.  Not on a terminal (cron,
a log file): one line a test started and one a test ended.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from piuparts.batch import states as st
from piuparts.batch.db import Record
from piuparts.batch.engine import Display, SectionRun
from piuparts.batch.executor import Finished, Running

_SHORT = {st.PASSED: "passed", st.FAILED: "failed", st.CANNOT: "cannot", st.WAITING: "waiting",
          st.WAITING_DEP: "waiting-dep", st.DEP_FAILED: "dep-failed", st.DEP_CANNOT: "dep-cannot",
          st.DEP_MISSING: "dep-missing", st.UNKNOWN: "unknown"}


def describe(finished: Finished, record: Record | None) -> str:
    """``SECTION PACKAGE VERSION: PASS (12.3 s, worker)`` and the problems or the error."""
    task = finished.task
    head = f"{task.section} {task.package} {task.version}"
    if record is None:
        return f"{head}: not finished ({finished.reason}); it waits again"
    what = record.verdict if record.kind in ("pass", "fail") else f"{record.kind} error"
    tail = ", ".join(record.problems) if record.problems else (record.error or "")
    return f"{head}: {what} ({finished.duration:.1f} s, {finished.worker})" + (f": {tail}" if tail else "")


def counts_line(runs: dict[str, SectionRun]) -> str:
    """``12 passed, 1 failed, ...`` over every section."""
    total = dict.fromkeys(st.STATES, 0)
    for run in runs.values():
        for state, number in st.counts(run.computed).items():
            total[state] += number
    return ", ".join(f"{n} {_SHORT[s]}" for s, n in total.items() if n)


class PlainDisplay(Display):
    """One line an event, for logs and cron mail."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.done = 0

    def _print(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=self.out, flush=True)

    def started(self, running: Running) -> None:
        """A test was handed to a worker."""
        self._print(f"start {running.task.section} {running.task.package} {running.task.version} "
                    f"({running.worker})")

    def finished(self, finished: Finished, record: Record | None) -> None:
        """A test ended."""
        self.done += 1
        self._print(f"done  {describe(finished, record)}")

    def message(self, text: str) -> None:
        """A line for the user."""
        self._print(text)


class RichDisplay(Display):
    """A live bar, counts and the running packages (rich)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.console = Console()
        self.progress = Progress(TextColumn("[bold]testing"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=self.console)
        self.bar = self.progress.add_task("tests", total=None)
        self.counts = ""
        self.running: list[Running] = []
        self.done = 0
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text
        now = time.time()
        lines = [f"  {r.task.section} {r.task.package} {r.task.version} "
                 f"({r.worker}, {now - r.started:.0f} s)" for r in self.running]
        return Group(self.progress, Text(self.counts or "reading the sections..."), Text("\n".join(lines)))

    def started(self, running: Running) -> None:
        """A test was handed to a worker."""
        self.running.append(running)
        self.live.update(self._render())

    def finished(self, finished: Finished, record: Record | None) -> None:
        """A test ended: a line above the bar."""
        self.running = [r for r in self.running if r.task.id != finished.task.id]
        self.done += 1
        self.console.print(describe(finished, record), highlight=False)
        self.progress.update(self.bar, completed=self.done)
        self.live.update(self._render())

    def update(self, runs: dict[str, SectionRun], running: list[Running], queued: int) -> None:
        """New counts and total."""
        self.counts = counts_line(runs)
        self.running = running
        self.progress.update(self.bar, total=self.done + len(running) + queued, completed=self.done)
        self.live.update(self._render())

    def message(self, text: str) -> None:
        """A line above the bar."""
        self.console.print(text, highlight=False)

    def close(self) -> None:
        """Leave the last picture on the screen."""
        self.live.stop()


def display_for(out: TextIO | None = None) -> Display:
    """Rich on a terminal, plain lines otherwise."""
    stream = out or sys.stdout
    return RichDisplay() if stream.isatty() else PlainDisplay(stream)
