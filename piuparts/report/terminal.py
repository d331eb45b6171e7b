"""What one run shows on a terminal: a line per step with its time, and a
live line saying what runs now.

    Testing python3-oslo.i18n on bookworm (amd64) from http://mirror/debian
    Dependencies: 28 packages from the cached layer 15b9728b05deefaa
    install-purge: python3-oslo.i18n
      ok    install                       0.9 s
      ok    checks after install          0.1 s
      ok    remove                        0.9 s
      ...
      FAIL  checks after purge            0.2 s  2 failed

It is a logging handler (the console's, on a terminal, without -v): the
records the run marks for it (:data:`piuparts.log.VIEW`) become those
lines, warnings and errors are shown as they come, and every other record
(each command, its exit status) goes to the log file alone.  The live line
(rich) shows the scenario, the step, its time so far and the command
running, shortened to the terminal's width; it goes when the run ends, so
that what stays on the screen is the steps, the verdict and where the log is.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from piuparts.command import SHORT
from piuparts.log import VIEW

#: The width of a step's name in its line.
NAME_WIDTH = 26


def step_line(ok: bool, name: str, seconds: float, failed: int = 0) -> str:
    """``  ok    install                   0.9 s``; the checks add how many of
    their findings fail (the findings themselves follow the verdict)."""
    tail = f"  {failed} failed" if failed else ""
    return f"  {'ok' if ok and not failed else 'FAIL':<5} {name:<{NAME_WIDTH}} {seconds:6.1f} s{tail}"


class _Now:
    """The live line: a spinner, what runs and for how long, the command,
    cut to the terminal's width (one line, never wrapped)."""

    def __init__(self) -> None:
        self.spinner = Spinner("dots")
        self.label = "starting"
        self.since = time.monotonic()
        self.command = ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        what = f"{self.label} {time.monotonic() - self.since:.0f} s"
        text = Text(f"{what}  {self.command}" if self.command else what, no_wrap=True, overflow="ellipsis")
        text.truncate(max(1, options.max_width - 3), overflow="ellipsis")
        self.spinner.update(text=text)
        yield self.spinner


@dataclass
class _Pending:
    """A line not printed yet: a step (its time is until the next line's
    start) or the checks at one point (their time is their own)."""

    name: str
    started: float
    step: Any = None
    seconds: float = 0.0
    failed: int = 0


class StepView(logging.Handler):
    """The terminal's view of a run (see the module's docstring)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.console = Console(file=stream, highlight=False, soft_wrap=False)
        self.now = _Now()
        self.live: Live | None = Live(self.now, console=self.console, refresh_per_second=8, transient=True)
        self.live.start()
        self.scenario = ""
        #: The step (or the checks) under way, printed when the next begins.
        self.pending: _Pending | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record)
        except Exception:  # a view must not end the run
            self.handleError(record)

    def _emit(self, record: logging.LogRecord) -> None:
        view = getattr(record, VIEW, None)
        if view == "headline":
            self._print(record.getMessage())
        elif isinstance(view, tuple) and view[0] == "scenario":
            self._end_step(record.created)
            self.scenario = view[1].name
            self._print(record.getMessage().removeprefix("Scenario "))
            self._live(self.scenario, record.created)
        elif isinstance(view, tuple) and view[0] == "step":
            self._end_step(record.created)
            self.pending = _Pending(view[1].name, record.created, step=view[1])
            self._live(f"{self.scenario}: {view[1].name}", record.created)
        elif isinstance(view, tuple) and view[0] == "checks":
            _, point, seconds, failed = view
            name = "checks " + point.replace("_", " ")
            if self.pending is not None and self.pending.name == name and self.pending.step is None:
                self.pending.seconds += seconds  # the checks at one point look in two rounds
                self.pending.failed += failed
            else:
                self._end_step(record.created - seconds)
                self.pending = _Pending(name, record.created - seconds, seconds=seconds, failed=failed)
            self._live(self.scenario, record.created)
        elif record.levelno >= logging.ERROR:
            self._end_step(record.created)
            self._print(f"{record.levelname}: {record.getMessage()}")
        elif record.levelno >= logging.WARNING:
            self._print(f"{record.levelname}: {record.getMessage()}")
        elif record.levelno >= logging.INFO:
            short = getattr(record, SHORT, None)
            if short is not None:  # "$ [ROOT] COMMAND": the command alone, the root is the instance's
                self.now.command = re.sub(r"^\$ (\[[^]]*\] )?", "", short)

    def _live(self, label: str, since: float) -> None:
        self.now.label = label
        self.now.since = time.monotonic() - max(0.0, time.time() - since)
        self.now.command = ""

    def _end_step(self, when: float) -> None:
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        ok = pending.step is None or pending.step.ok
        seconds = pending.seconds if pending.step is None else max(0.0, when - pending.started)
        self._print(step_line(ok, pending.name, seconds, pending.failed))

    def _print(self, text: str) -> None:
        self.console.print(Text(text), highlight=False)

    def close(self) -> None:
        """The last step's line; the live line goes (what is printed next stays below the steps)."""
        self.acquire()
        try:
            self._end_step(time.time())
            if self.live is not None:
                self.live.stop()
                self.live = None
        finally:
            self.release()
        super().close()


def wanted(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal a person reads (not TERM=dumb)."""
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


#: The terminal view's full logs kept under the cache directory's logs/.
KEEP_LOGS = 50


def log_path(cache_dir: Path) -> Path:
    """Where the full log of a run on a terminal goes: CACHE/logs/run-STAMP-PID.log.
    The oldest logs there beyond the newest :data:`KEEP_LOGS` are removed."""
    directory = cache_dir / "logs"
    try:
        kept = sorted(directory.glob("run-*.log"), key=lambda p: p.stat().st_mtime)
    except OSError:
        kept = []
    for old in kept[:max(0, len(kept) - KEEP_LOGS + 1)]:
        old.unlink(missing_ok=True)
    return directory / f"run-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
