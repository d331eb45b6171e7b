"""The one place that starts processes.

Every process the harness starts goes through :func:`run`: an argv list
(never a shell string), stdin closed, a new session (so no controlling
terminal: a maintainer script can never reach the caller's terminal), the
output captured with a cap, and a time limit that ends the whole process
group (SIGTERM, a grace period, then SIGKILL).  Each command is logged so
that it can be pasted into a shell, with its exit code and duration.

Maintainer-script steps run with ``terminal=True``: under a pseudo-terminal
of the harness's own (pexpect), as they would for a person at a console.
A script that asks a question there and waits is caught: when one of the
command's processes is blocked reading that terminal and nothing has been
written for ``prompt_timeout`` seconds (at once for dpkg's conffile
prompt), the command is killed and its :class:`Result` quotes the prompt.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import logging
import os
import re
import selectors
import shlex
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import pexpect

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
    #: The question a step was waiting to have answered on its terminal.
    prompt: str | None = None

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its time limit, asking nothing."""
        return self.returncode == 0 and not self.timed_out and self.prompt is None

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

    def last_line(self) -> str:
        """The last non-empty line written so far (a terminal's carriage returns resolved)."""
        lines = _terminal_text(bytes(self.tail or self.head).decode("utf-8", "replace")).splitlines()
        return next((line.strip() for line in reversed(lines) if line.strip()), "")


def _terminal_text(text: str) -> str:
    """What a terminal would show of ``text``: CRLF as newlines, a line
    rewritten after a carriage return (progress counters) kept last only."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n"))


#: Prompts known to wait for an answer: caught without waiting for the prompt timeout.
KNOWN_PROMPTS = re.compile(r"\(Y/I/N/O/D/Z\) \[default=N\] \?\s*$|"  # dpkg's conffile question
                           r"^\*\*\* \S+ \(Y/I/N/O/D/Z\)", re.M)
#: ioctl asking a pseudo-terminal master for its number (Linux; not in termios).
_TIOCGPTN = 0x80045430
#: x86-64 and generic syscall numbers of read(2) and readv(2).
_READ_SYSCALLS = {"0", "19", "63", "65"}


def _reading_terminal(session: int, terminal: str) -> bool:
    """True when a process of ``session`` is blocked in read(2) on ``terminal``."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry.name}/stat").read()  # noqa: SIM115 - short read
            if int(stat.rsplit(")", 1)[1].split()[3]) != session:
                continue
            call = open(f"/proc/{entry.name}/syscall").read().split()
            if call and call[0] in _READ_SYSCALLS and os.readlink(f"/proc/{entry.name}/fd/{int(call[1], 16)}") == terminal:
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None).prctl  # looked up here: the child after fork only calls it
#: The signals that stop a run (see piuparts.cli).
_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _forking() -> Iterator[None]:
    """Hold the signals that stop a run while a child is forked.

    Right after a fork, Python runs its at-fork hooks (logging's) in the
    parent, and an exception that a signal handler raises there is lost
    ("Exception ignored"): the run would go on as if never stopped.  Held,
    the signal comes when the block ends, once the caller knows the child
    and can end it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _dies_with_us() -> Callable[[], None]:
    """A ``preexec_fn``: the child starts with no signal blocked, and is
    SIGKILLed when this process dies, so a killed run leaves no command of
    its own running (what such a command started is ended by the next
    reap: see piuparts.resources)."""
    parent = os.getpid()

    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # died before the prctl took effect
            os._exit(137)
    return preexec


def _start(argv: tuple[str, ...], env: Mapping[str, str] | None, cwd: str | None) -> subprocess.Popen[bytes]:
    """Popen in a new session with stdin closed; start failures as one-line errors."""
    if cwd is not None and not os.path.isdir(cwd):
        raise TestbedError(f"cannot run {argv[0]} in {cwd}: no such directory")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
                                preexec_fn=_dies_with_us())
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


#: The time limit of a command whose caller names none: nothing may run forever.
DEFAULT_TIMEOUT = 3600.0


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
    terminal: bool = False,
    prompt_timeout: float = 60.0,
) -> Result:
    """Run ``argv`` and return its :class:`Result`.

    With ``error`` set, a failure (non-zero exit or timeout) raises that
    exception class with a one-line message naming ``what`` failed.
    ``level`` is the log level of the command lines (DEBUG for chatter).
    ``shown_env`` (part of ``env``) is logged as ``NAME=value`` assignments
    before the command, so that the logged line can be pasted into a shell.
    ``terminal`` runs it under a pseudo-terminal with prompt detection.
    """
    argv = tuple(str(a) for a in argv)
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout  # nothing runs without a limit
    assignments = [f"{name}={shlex.quote(value)}" for name, value in (shown_env or {}).items()]
    log.log(level, "$ %s", " ".join([*assignments, shlex.join(argv)]))
    if terminal:
        result = _run_terminal(argv, env, cwd, timeout, prompt_timeout, output_cap, grace)
        _log_result(result, level)
        if error is not None and not result.ok:
            raise error(failure_message(result, what or argv[0]))
        return result
    start = time.monotonic()
    cap = _Capture(output_cap)
    timed_out = False
    deadline = None if timeout is None else start + timeout
    proc: subprocess.Popen[bytes] | None = None
    try:
        with _forking():
            proc = _start(argv, env, cwd)
        timed_out = _pump(proc, cap, deadline)
        if not timed_out:
            # EOF can come before the exit: wait for it, within the limit.
            try:
                proc.wait(timeout=None if deadline is None else max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        # On a timeout, and on KeyboardInterrupt: never leave the group running.
        if proc is not None:
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


def _run_terminal(argv: tuple[str, ...], env: Mapping[str, str] | None, cwd: str | None,
                  timeout: float | None, prompt_timeout: float, output_cap: int, grace: float) -> Result:
    """:func:`run` under a pseudo-terminal: the command is a session leader
    whose controlling terminal is ours; a prompt it waits on ends it."""
    if cwd is not None and not os.path.isdir(cwd):
        raise TestbedError(f"cannot run {argv[0]} in {cwd}: no such directory")
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    cap = _Capture(output_cap)
    timed_out, prompt = False, None
    last_output, exited_at = start, None
    child: pexpect.spawn | None = None
    try:
        try:
            with _forking():
                child = pexpect.spawn(argv[0], list(argv[1:]), env={**(env or os.environ), "TERM": "dumb"},
                                      cwd=cwd, echo=False, dimensions=(24, 200), encoding=None,
                                      preexec_fn=_dies_with_us())
        except pexpect.ExceptionPexpect as err:
            raise TestbedError(f"{argv[0]}: cannot be run ({err})") from None
        # pexpect sleeps 0.1 s on close by default; we wait for the exit ourselves.
        child.delayafterclose = child.delayafterterminate = child.ptyproc.delayafterclose = 0
        terminal = _terminal_name(child.child_fd)
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = child.isalive()  # not late for the sake of a daemon holding the terminal
                break
            wait = 0.2 if deadline is None else min(0.2, deadline - now)
            try:
                data = child.read_nonblocking(65536, timeout=wait)
            except pexpect.TIMEOUT:
                if exited_at is None and not child.isalive():
                    exited_at = time.monotonic()
                if exited_at is not None:
                    if time.monotonic() - exited_at > DRAIN_AFTER_EXIT:
                        break  # a daemon it left holds the terminal open
                    continue
                silent = time.monotonic() - last_output
                known = KNOWN_PROMPTS.search(_terminal_text(cap.text()[-400:]))
                if (silent >= prompt_timeout or (known and silent >= 0.5)) \
                        and _reading_terminal(child.pid, terminal):
                    prompt = cap.last_line()
                    break
                continue
            except pexpect.EOF:
                break
            cap.add(data)
            last_output = time.monotonic()
    finally:
        if child is not None:
            if exited_at is None and child.isalive():
                _kill_session(child, grace if timed_out else 0.5)
            child.close(force=True)
    assert child is not None
    returncode = child.exitstatus if child.exitstatus is not None else -(child.signalstatus or 0)
    return Result(argv, returncode, _terminal_text(cap.text()), time.monotonic() - start, timed_out,
                  cap.dropped, timeout, prompt)


def _terminal_name(master: int) -> str:
    """/dev/pts/N of the pseudo-terminal whose master end is ``master``."""
    number = array.array("I", [0])
    fcntl.ioctl(master, _TIOCGPTN, number)
    return f"/dev/pts/{number[0]}"


def _kill_session(child: pexpect.spawn, grace: float) -> None:
    """SIGTERM the child's process group, give the leader ``grace`` seconds,
    then SIGKILL whatever of the group is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + grace
        while sig == signal.SIGTERM and child.isalive() and time.monotonic() < end:
            time.sleep(0.05)


def spawn(argv: Sequence[str], *, level: int = logging.DEBUG) -> subprocess.Popen[bytes]:
    """Start a long-lived helper (a namespace holder) in its own session.

    It gets no stdin and no output pipe; the caller ends it.
    """
    argv = tuple(str(a) for a in argv)
    log.log(level, "$ %s &", shlex.join(argv))
    try:
        with _forking():  # the caller holds the signals until it knows the helper (piuparts.backends.overlay)
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_dies_with_us())
    except FileNotFoundError:
        raise TestbedError(f"{argv[0]}: command not found; install the Debian package that provides it") from None


def failure_message(result: Result, what: str) -> str:
    """One line saying how ``what`` failed, with the last output line."""
    if result.prompt is not None:
        return f"{what} waited for an answer on the terminal and was killed; the question: {result.prompt!r}"
    if result.timed_out:
        how = f"did not finish within {result.timeout:g} s and was killed"
    elif result.returncode < 0:
        names = {member.value: member.name for member in signal.Signals}
        how = f"was killed by {names.get(-result.returncode, f'signal {-result.returncode}')}"
    else:
        how = f"failed with exit code {result.returncode}"
    last = result.tail(1).strip()
    return f"{what} {how}" + (f": {last}" if last else "")


def _log_result(result: Result, level: int) -> None:
    # A failing command of the chatter (DEBUG) kind is its caller's to report.
    failed_level = logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    if result.timed_out:
        log.error("  killed after %.1f s (time limit %g s)", result.elapsed, result.timeout)
    else:
        log.log(level if result.ok else failed_level, "  exit %d in %.2f s", result.returncode, result.elapsed)
    if result.output.strip():
        out_level = logging.DEBUG if result.ok else failed_level
        if log.isEnabledFor(out_level):
            shown = result.output if out_level == logging.DEBUG else result.tail(40)
            for line in shown.rstrip("\n").splitlines():
                log.log(out_level, "  | %s", line)
