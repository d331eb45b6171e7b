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

Longer than the project's 500 lines on purpose: it is the one seam the unit
tier replaces (``tests/unit/conftest.py`` fakes :func:`run`), and its parts
(the process group's end, the pty reader, the prompt watcher, the output
cap) share one process's lifetime; split, each piece would be a second way
to start a process.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import logging
import os
import re
import selectors
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Callable, Iterator, Mapping, Sequence

import pexpect

from piuparts.errors import Interrupted, PiupartsError, TestbedError

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
        """The question on the terminal: the last non-empty line written so far (a
        terminal's carriage returns resolved), or, from a program that draws a
        screen (whiptail, dialog), the text of its last screen."""
        text = bytes(self.tail or self.head).decode("utf-8", "replace")
        if _CURSOR_MOVES.search(text):
            return _screen_text(text)
        lines = _terminal_text(text).splitlines()
        return next((line.strip() for line in reversed(lines) if line.strip()), "")


#: Escape sequences that move the cursor (CSI ... H / f) or clear the screen (CSI 2 J).
_CURSOR_MOVES = re.compile(r"\x1b\[[0-9;]*[Hf]")
_CLEAR_SCREEN = re.compile(r"\x1b\[2J")
#: Any other escape sequence: CSI, OSC, charset selection, two-character ones.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|.)")
#: Box-drawing characters (U+2500-U+257F) and backspaces, as whiptail draws its frames.
_FRAMES = re.compile("[\u2500-\u257f\x08]+")


def _screen_text(text: str) -> str:
    """The words on the last screen a full-screen program drew, one line of text."""
    screen = _CLEAR_SCREEN.split(text)[-1]
    lines = _ESCAPES.sub("", _CURSOR_MOVES.sub("\n", screen)).splitlines()
    return " ".join(" ".join(_FRAMES.sub(" ", line).split()) for line in lines if _FRAMES.sub(" ", line).strip())


def _terminal_text(text: str) -> str:
    """What a terminal would show of ``text``: CRLF as newlines, a line
    rewritten after a carriage return (progress counters) kept last only."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n"))


#: Prompts known to wait for an answer: caught without waiting for the prompt timeout.
KNOWN_PROMPTS = re.compile(r"\(Y/I/N/O/D/Z\) \[default=N\] \?\s*$|"  # dpkg's conffile question
                           r"^\*\*\* \S+ \(Y/I/N/O/D/Z\)", re.M)
#: ioctl asking a pseudo-terminal master for its number (Linux; not in termios).
_TIOCGPTN = 0x80045430
#: ioctl opening the terminal end of a pseudo-terminal from its master (Linux >= 4.13).
_TIOCGPTPEER = 0x5441
#: /dev/tty's device number: a process that opened it by path reads its controlling terminal.
_DEV_TTY = os.makedev(5, 0)


@dataclass(frozen=True)
class _Waits:
    """The numbers of the system calls that wait for input, in one ABI, by how they name the fds."""

    read: frozenset[int]    # read, readv, pread64, preadv, preadv2: the fd is the first argument
    select: frozenset[int]  # select, pselect6: a bitmap of fds to read
    poll: frozenset[int]    # poll, ppoll: an array of struct pollfd
    epoll: frozenset[int]   # epoll_wait, epoll_pwait, epoll_pwait2: the fds registered with an epoll fd


def _waits(read: set[int], select: set[int], poll: set[int], epoll: set[int]) -> _Waits:
    return _Waits(frozenset(read), frozenset(select), frozenset(poll), frozenset(epoll))


#: (machine, 64-bit process) -> its system call numbers.  A 32-bit process on a
#: 64-bit kernel reports the 32-bit ABI's numbers in /proc/PID/syscall.
_SYSCALLS = {
    ("x86_64", True): _waits({0, 17, 19, 295, 327}, {23, 270}, {7, 271}, {232, 281, 441}),
    ("x86_64", False): _waits({3, 145, 180, 333, 378}, {142, 308, 413}, {168, 309, 414}, {256, 319, 441}),
    ("aarch64", True): _waits({63, 65, 67, 69, 286}, {72}, {73}, {22, 441}),
    ("aarch64", False): _waits({3, 145, 180, 361, 392}, {142, 335, 413}, {168, 336, 414}, {252, 346, 441}),
}
_POLLIN, _POLLPRI = 0x1, 0x2


def _terminal_identity(master: int) -> tuple[int, int]:
    """(st_dev, st_rdev) of the terminal end of the pseudo-terminal whose master is ``master``."""
    try:
        peer = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        st = os.stat(_terminal_name(master))
    else:
        try:
            st = os.fstat(peer)
        finally:
            os.close(peer)
    return st.st_dev, st.st_rdev


def _is_64bit(pid: str) -> bool:
    """True unless the process runs a 32-bit ELF program (ELFCLASS32)."""
    try:
        with open(f"/proc/{pid}/exe", "rb") as exe:
            return exe.read(5)[4:5] != b"\x01"
    except OSError:
        return True


def _memory(pid: str, address: int, size: int) -> bytes | None:
    """``size`` bytes of the process's memory at ``address`` (None when they cannot be read)."""
    if address == 0 or not 0 < size <= 65536:
        return None
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(address)
            return mem.read(size)
    except (OSError, OverflowError, ValueError):
        return None


def _all_fds(pid: str) -> list[int]:
    return [int(fd) for fd in os.listdir(f"/proc/{pid}/fd")]


def _epoll_fds(pid: str, epfd: int) -> list[int]:
    """The fds registered with the epoll instance ``epfd`` of the process."""
    with open(f"/proc/{pid}/fdinfo/{epfd}") as info:
        return [int(line.split()[1]) for line in info if line.startswith("tfd:")]


def _waited_fds(pid: str, call: list[str]) -> list[int]:
    """The fds the process is blocked waiting to read (all its fds when that cannot be told)."""
    nr, args = int(call[0]), [int(arg, 16) for arg in call[1:7]]
    table = _SYSCALLS.get((os.uname().machine, _is_64bit(pid)))
    if table is None:  # another machine: any fd it has open
        return _all_fds(pid) if nr >= 0 else []
    if nr in table.read:
        return [args[0]]
    if nr in table.select:
        bitmap = _memory(pid, args[1], (args[0] + 7) // 8)
        if bitmap is None:
            return _all_fds(pid) if args[1] else []
        return [fd for fd in range(args[0]) if bitmap[fd // 8] >> (fd % 8) & 1]
    if nr in table.poll:
        fds = _memory(pid, args[0], args[1] * 8)
        if fds is None:
            return _all_fds(pid) if args[1] else []
        entries = [struct.unpack_from("=ih", fds, 8 * i) for i in range(len(fds) // 8)]
        return [fd for fd, events in entries if fd >= 0 and events & (_POLLIN | _POLLPRI)]
    if nr in table.epoll:
        return _epoll_fds(pid, args[0])
    return []


def _reading_terminal(session: int, terminal: tuple[int, int]) -> bool:
    """True when a process of ``session`` is blocked waiting to read ``terminal``
    ((st_dev, st_rdev) of its terminal end): in read(2) and its kin, select,
    poll or epoll, on an fd of that terminal, or of /dev/tty when that terminal
    is the process's controlling terminal.  Terminals are told apart by device
    number, never by path (a chroot's /dev/pts is not the host's)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry.name}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
            if int(fields[3]) != session:
                continue
            call = open(f"/proc/{entry.name}/syscall").read().split()  # noqa: SIM115 - short read
            if len(call) < 7:  # "running", or not in a system call
                continue
            controlling = int(fields[4]) == terminal[1]
            for fd in _waited_fds(entry.name, call):
                st = os.stat(f"/proc/{entry.name}/fd/{fd}")
                if (st.st_dev, st.st_rdev) == terminal or (controlling and st.st_rdev == _DEV_TTY):
                    return True
        except (OSError, ValueError, IndexError, struct.error):
            continue
    return False


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None).prctl  # looked up here: the child after fork only calls it
#: The signals that stop a run (see piuparts.cli).
_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


#: The first interrupt Python could not pass on (see :func:`_keep_lost_interrupt`); the
#: ones after it are the same stop repeated.
_lost_interrupt: BaseException | None = None
_unraisable_before = sys.unraisablehook


def _keep_lost_interrupt(unraisable: "sys.UnraisableHookArgs") -> None:
    """``sys.unraisablehook``: keep a Ctrl-C or a stopping signal that came
    while a finalizer ran (pexpect's ``PtyProcess.__del__``, garbage
    collected at any moment).  Python prints "Exception ignored" and goes on
    there, so the run would carry on as if never stopped; kept, the next
    command raises it instead (:func:`_raise_lost_interrupt`).  Any other
    unraisable exception goes to the hook that was there before."""
    global _lost_interrupt
    if isinstance(unraisable.exc_value, (KeyboardInterrupt, Interrupted)):
        _lost_interrupt = _lost_interrupt or unraisable.exc_value
        return
    _unraisable_before(unraisable)


def _raise_lost_interrupt() -> None:
    """Raise the interrupt a finalizer swallowed, if one did; not while the
    stopping signals are held (a setup or cleanup step that must end: see
    :class:`piuparts.resources.signals_deferred`), where it waits for the
    next command."""
    global _lost_interrupt
    if _lost_interrupt is not None and not set(_STOPPING) & signal.pthread_sigmask(signal.SIG_BLOCK, []):
        lost, _lost_interrupt = _lost_interrupt, None
        raise lost.with_traceback(None)


sys.unraisablehook = _keep_lost_interrupt


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


def _start(argv: tuple[str, ...], env: Mapping[str, str] | None, cwd: str | None,
           stdin: bytes | None = None) -> subprocess.Popen[bytes]:
    """Popen in a new session with stdin closed (or reading ``stdin`` from an
    unnamed file, gone when closed); start failures as one-line errors."""
    if cwd is not None and not os.path.isdir(cwd):
        raise TestbedError(f"cannot run {argv[0]} in {cwd}: no such directory")
    with contextlib.ExitStack() as stack:
        source: int | IO[bytes] = subprocess.DEVNULL
        if stdin is not None:
            source = stack.enter_context(tempfile.TemporaryFile())  # the child keeps its own descriptor
            source.write(stdin)
            source.seek(0)
        try:
            return subprocess.Popen(argv, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
                                    preexec_fn=_dies_with_us())
        except FileNotFoundError:
            raise TestbedError(f"{argv[0]}: command not found; install the Debian package that provides it") \
                from None
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


#: The log record's attribute with its short form for the terminal (see :func:`run`).
SHORT = "short_message"


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
    stdin: bytes | None = None,
    short: str | None = None,
) -> Result:
    """Run ``argv`` and return its :class:`Result`.

    With ``error`` set, a failure (non-zero exit or timeout) raises that
    exception class with a one-line message naming ``what`` failed.
    ``level`` is the log level of the command lines (DEBUG for chatter).
    ``shown_env`` (part of ``env``) is logged as ``NAME=value`` assignments
    before the command, so that the logged line can be pasted into a shell.
    ``terminal`` runs it under a pseudo-terminal with prompt detection;
    otherwise ``stdin`` is what it reads on its standard input (none: closed).
    ``short`` is how the terminal shows the command (its log files keep the
    whole line): the command inside an instance, without the wrapper that
    confines it.
    """
    assert not (terminal and stdin is not None), "a command under a terminal reads the terminal"
    _raise_lost_interrupt()
    argv = tuple(str(a) for a in argv)
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout  # nothing runs without a limit
    assignments = [f"{name}={shlex.quote(value)}" for name, value in (shown_env or {}).items()]
    log.log(level, "$ %s", " ".join([*assignments, shlex.join(argv)]),
            extra={SHORT: f"$ {short}"} if short is not None else None)
    if terminal:
        result = _run_terminal(argv, env, cwd, timeout, prompt_timeout, output_cap, grace)
        _log_result(result, level)
        _raise_lost_interrupt()
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
            proc = _start(argv, env, cwd, stdin)
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
    _raise_lost_interrupt()
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
        terminal = _terminal_identity(child.child_fd)
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
    _raise_lost_interrupt()
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
