"""The one place that starts processes.

Every process the harness starts goes through :func:`run`: an argv list
(never a shell string), stdin closed, a new session (so no controlling
terminal: a maintainer script can never reach the caller's terminal), the
output captured with a cap, and a time limit that ends the whole process
group (SIGTERM, a grace period, then SIGKILL).  Each command is logged so
that it can be pasted into a shell, with its exit code and duration.
"""

from __future__ import annotations

import logging
import os
import selectors
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from piuparts.errors import PiupartsError, TestbedError

log = logging.getLogger("piuparts")

#: Default cap on captured output; the head and the tail are kept.
OUTPUT_CAP = 2 * 1024 * 1024
#: How long output may still be read after the command itself exited
#: (a daemon it started may hold the pipe open forever).
DRAIN_AFTER_EXIT = 1.0


@dataclass(frozen=True)
class Result:
    """What a finished command did."""

    argv: tuple[str, ...]
    returncode: int
    output: str
    elapsed: float
    timed_out: bool = False
    dropped: int = 0  # bytes of output left out by the cap
    timeout: float | None = None

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its time limit."""
        return self.returncode == 0 and not self.timed_out

    @property
    def cmdline(self) -> str:
        """The command as it can be pasted into a shell."""
        return shlex.join(self.argv)

    def tail(self, lines: int = 20) -> str:
        """The last lines of the output, for error messages."""
        return "\n".join(self.output.rstrip("\n").splitlines()[-lines:])


class _Capture:
    """Keeps the first and last ``cap / 2`` bytes of a stream."""

    def __init__(self, cap: int) -> None:
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        excess = len(self.tail) - self.half
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        marker = f"\n[... {self.dropped} bytes left out ...]\n".encode() if self.dropped else b""
        return bytes(self.head + marker + self.tail).decode("utf-8", "replace")


def _start(argv: tuple[str, ...], env: Mapping[str, str] | None, cwd: str | None) -> subprocess.Popen[bytes]:
    """Popen in a new session with stdin closed; start failures as one-line errors."""
    if cwd is not None and not os.path.isdir(cwd):
        raise TestbedError(f"cannot run {argv[0]} in {cwd}: no such directory")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
    except FileNotFoundError:
        raise TestbedError(f"{argv[0]}: command not found; install the Debian package that provides it") from None
    except OSError as err:
        raise TestbedError(f"{argv[0]}: cannot be run ({err.strerror})") from None


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGKILL:
                return
        except subprocess.TimeoutExpired:
            continue
    # The leader is gone after SIGTERM; make sure nothing of its group stays.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _pump(proc: subprocess.Popen[bytes], cap: _Capture, deadline: float | None) -> bool:
    """Read the output until EOF; return True when the deadline passed."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > DRAIN_AFTER_EXIT:
                return False
            if deadline is not None and now >= deadline:
                return exited_at is None  # an exited command is not late for its daemon's sake
            wait = 0.2 if deadline is None else min(0.2, deadline - now)
            if not sel.select(wait):
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                return False
            cap.add(data)


def run(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    shown_env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    error: type[PiupartsError] | None = None,
    what: str | None = None,
    output_cap: int = OUTPUT_CAP,
    grace: float = 5.0,
    level: int = logging.INFO,
) -> Result:
    """Run ``argv`` and return its :class:`Result`.

    With ``error`` set, a failure (non-zero exit or timeout) raises that
    exception class with a one-line message naming ``what`` failed.
    ``level`` is the log level of the command lines (DEBUG for chatter).
    ``shown_env`` (part of ``env``) is logged as ``NAME=value`` assignments
    before the command, so that the logged line can be pasted into a shell.
    """
    argv = tuple(str(a) for a in argv)
    assignments = [f"{name}={shlex.quote(value)}" for name, value in (shown_env or {}).items()]
    log.log(level, "$ %s", " ".join([*assignments, shlex.join(argv)]))
    start = time.monotonic()
    proc = _start(argv, env, cwd)
    cap = _Capture(output_cap)
    timed_out = False
    deadline = None if timeout is None else start + timeout
    try:
        timed_out = _pump(proc, cap, deadline)
        if not timed_out:
            # EOF can come before the exit: wait for it, within the limit.
            try:
                proc.wait(timeout=None if deadline is None else max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        # On a timeout, and on KeyboardInterrupt: never leave the group running.
        if proc.poll() is None:
            _kill_group(proc, grace if timed_out else 0.5)
        if proc.stdout:
            proc.stdout.close()
        proc.wait()
    result = Result(argv, proc.returncode, cap.text(), time.monotonic() - start, timed_out, cap.dropped, timeout)
    _log_result(result, level)
    if error is not None and not result.ok:
        raise error(failure_message(result, what or argv[0]))
    return result


def spawn(argv: Sequence[str], *, level: int = logging.DEBUG) -> subprocess.Popen[bytes]:
    """Start a long-lived helper (a namespace holder) in its own session.

    It gets no stdin and no output pipe; the caller ends it.
    """
    argv = tuple(str(a) for a in argv)
    log.log(level, "$ %s &", shlex.join(argv))
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except FileNotFoundError:
        raise TestbedError(f"{argv[0]}: command not found; install the Debian package that provides it") from None


def failure_message(result: Result, what: str) -> str:
    """One line saying how ``what`` failed, with the last output line."""
    if result.timed_out:
        how = f"did not finish within {result.timeout:g} s and was killed"
    else:
        how = f"failed with exit code {result.returncode}"
    last = result.tail(1).strip()
    return f"{what} {how}" + (f": {last}" if last else "")


def _log_result(result: Result, level: int) -> None:
    if result.timed_out:
        log.error("  killed after %.1f s (time limit %g s)", result.elapsed, result.timeout)
    else:
        log.log(level if result.ok else logging.WARNING,
                "  exit %d in %.2f s", result.returncode, result.elapsed)
    if result.output.strip():
        out_level = logging.DEBUG if result.ok else logging.WARNING
        if log.isEnabledFor(out_level):
            shown = result.output if out_level == logging.DEBUG else result.tail(40)
            for line in shown.rstrip("\n").splitlines():
                log.log(out_level, "  | %s", line)
