"""piuparts.command.run: capture, exit codes, time limits, process groups, logging."""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from piuparts import command
from piuparts.command import run
from piuparts.errors import TestbedError, UsageError

ENV_PATH = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

# Programs that close their stdout just before exiting once raced with run()
# (EOF seen before the exit); test_a_command_that_closes_its_output_is_not_killed
# keeps that fixed.


def _alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie nobody reaps counts as gone)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat_line.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _wait_gone(pid: int, within: float = 3.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def piuparts_log(caplog: pytest.LogCaptureFixture):
    """caplog wired straight to the "piuparts" logger (whether or not it propagates)."""
    logger = logging.getLogger("piuparts")
    saved = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# --- output, exit code, cmdline -------------------------------------------------

def test_stdout_and_stderr_are_captured_merged_in_order():
    result = run(["sh", "-c", "echo out; echo err >&2; echo out2"])
    assert result.output == "out\nerr\nout2\n"
    assert result.returncode == 0
    assert result.ok is True
    assert result.timed_out is False
    assert result.dropped == 0


def test_nonzero_exit_code_is_reported_and_not_ok():
    result = run(["sh", "-c", "echo nope; exit 3"])
    assert result.returncode == 3
    assert result.ok is False
    assert result.timed_out is False
    assert result.output == "nope\n"


def test_silent_success_has_empty_output():
    result = run(["true"])
    assert (result.returncode, result.output, result.ok) == (0, "", True)


def test_argv_is_kept_as_strings_and_cmdline_is_shell_quoted(tmp_path: Path):
    argv = ["sh", "-c", 'printf "%s|" "$@"', "sh", "a b", "it's", tmp_path]
    result = run(argv)
    assert result.argv == ("sh", "-c", 'printf "%s|" "$@"', "sh", "a b", "it's", str(tmp_path))
    assert result.cmdline == ("sh -c 'printf \"%s|\" \"$@\"' sh 'a b' 'it'\"'\"'s' "
                              + shlex.quote(str(tmp_path)))
    assert result.cmdline == shlex.join(result.argv)
    # The cmdline pasted into a shell runs the same command.
    pasted = subprocess.run(["sh", "-c", result.cmdline], capture_output=True, text=True, check=True)
    assert pasted.stdout == result.output == f"a b|it's|{tmp_path}|"


def test_tail_gives_the_last_lines():
    result = run(["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done"])
    assert result.tail(2) == "line4\nline5"
    assert result.tail(1) == "line5"
    assert result.tail() == "line1\nline2\nline3\nline4\nline5"


def test_env_replaces_the_environment_and_cwd_is_used(tmp_path: Path):
    result = run(["sh", "-c", 'echo "$PP_UNIT_VAR:${HOME-unset}"; pwd -P'],
                 env={**ENV_PATH, "PP_UNIT_VAR": "value 1"}, cwd=str(tmp_path))
    assert result.output == f"value 1:unset\n{os.path.realpath(tmp_path)}\n"


# --- stdin, terminal, session ------------------------------------------------------

def test_stdin_is_closed_so_cat_returns_at_once():
    start = time.monotonic()
    result = run(["sh", "-c", 'cat; echo "cat exit $?"'], timeout=10)
    assert time.monotonic() - start < 5
    assert result.timed_out is False
    assert result.returncode == 0
    assert result.output == "cat exit 0\n"  # cat read nothing and printed nothing


def test_no_controlling_terminal():
    result = run([sys.executable, "-c", "open('/dev/tty')"], timeout=30)
    assert result.returncode == 1
    assert "No such device or address: '/dev/tty'" in result.output


def test_command_runs_in_a_new_session():
    code = "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid(), os.getsid(0))"
    result = run([sys.executable, "-c", code], timeout=30)
    leader, group_leader, sid = result.output.split()
    assert (leader, group_leader) == ("True", "True")
    assert int(sid) != os.getsid(0)


def test_tty_says_not_a_tty():
    result = run(["sh", "-c", 'tty; echo "tty exit $?"'])
    assert result.output == "not a tty\ntty exit 1\n"


# --- time limit --------------------------------------------------------------------

def test_timeout_kills_the_whole_process_group_including_a_grandchild():
    start = time.monotonic()
    result = run(["sh", "-c", "sleep 100 & echo $!; sleep 100"], timeout=1, grace=0.5)
    elapsed = time.monotonic() - start
    grandchild = int(result.output.split()[0])
    try:
        assert result.timed_out is True
        assert result.ok is False
        assert elapsed < 10
        assert 1 <= result.elapsed < 10
        assert result.returncode == -signal.SIGTERM
        assert _wait_gone(grandchild), f"grandchild {grandchild} survived the time limit"
    finally:
        _kill(grandchild)


def test_timeout_sends_sigkill_after_the_grace_period_when_sigterm_is_ignored():
    start = time.monotonic()
    result = run(["sh", "-c", "trap '' TERM; sleep 100 & echo $!; sleep 100"], timeout=1, grace=0.5)
    elapsed = time.monotonic() - start
    grandchild = int(result.output.split()[0])
    try:
        assert result.timed_out is True
        assert result.returncode == -signal.SIGKILL
        assert 1.4 <= elapsed < 10  # time limit + grace, then SIGKILL
        assert _wait_gone(grandchild), f"grandchild {grandchild} survived SIGKILL"
    finally:
        _kill(grandchild)


def test_output_before_the_timeout_is_kept():
    result = run(["sh", "-c", "echo started; sleep 100"], timeout=1, grace=0.5)
    assert result.timed_out is True
    assert result.output == "started\n"


def test_a_daemon_holding_the_pipe_does_not_make_run_wait():
    start = time.monotonic()
    result = run(["sh", "-c", "(sleep 30 & echo $!) ; echo done"])
    elapsed = time.monotonic() - start
    daemon = int(result.output.split()[0])
    try:
        assert elapsed < 5
        assert result.output.splitlines()[1:] == ["done"]
        assert result.returncode == 0
        assert result.ok is True
        assert result.timed_out is False
    finally:
        _kill(daemon)


def test_a_daemon_holding_the_pipe_is_no_timeout_of_a_command_that_exited():
    result = run(["sh", "-c", "(sleep 5 & echo $!) ; echo done"], timeout=0.5, grace=0.2)
    daemon = int(result.output.split()[0])
    _kill(daemon)
    assert result.returncode == 0
    assert result.timed_out is False
    assert result.ok is True


def test_a_command_that_closes_its_output_is_not_killed():
    result = run(["sh", "-c", "echo before; exec >/dev/null 2>&1; sleep 0.3; exit 7"], timeout=10)
    assert result.output == "before\n"
    assert result.timed_out is False
    assert result.returncode == 7


# --- errors ------------------------------------------------------------------------

def test_error_class_is_raised_with_a_message_naming_what():
    with pytest.raises(TestbedError) as exc:
        run(["sh", "-c", "echo first; echo boom >&2; exit 4"], error=TestbedError, what="the frobnicator")
    assert str(exc.value) == "the frobnicator failed with exit code 4: boom"
    assert exc.value.exit_code == 3


def test_error_message_names_argv0_without_what_and_any_error_class_works():
    with pytest.raises(UsageError) as exc:
        run(["false"], error=UsageError)
    assert str(exc.value) == "false failed with exit code 1"
    assert exc.value.exit_code == 2


def test_error_on_timeout_says_it_was_killed():
    with pytest.raises(TestbedError) as exc:
        run(["sh", "-c", "echo waiting; sleep 100"], timeout=1, grace=0.5, error=TestbedError, what="sleeper")
    assert str(exc.value) == "sleeper did not finish within 1 s and was killed: waiting"


def test_error_is_not_raised_on_success():
    result = run(["sh", "-c", "echo fine"], error=TestbedError, what="echo")
    assert result.output == "fine\n"


def test_command_not_found_raises_testbed_error():
    with pytest.raises(TestbedError) as exc:
        run(["pp-unit-no-such-command"])
    assert str(exc.value) == ("pp-unit-no-such-command: command not found; "
                              "install the Debian package that provides it")


def test_missing_cwd_is_not_reported_as_command_not_found(tmp_path: Path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(TestbedError) as exc:
        run(["true"], cwd=str(missing))
    assert "command not found" not in str(exc.value)
    assert str(missing) in str(exc.value)


def test_non_executable_command_raises_testbed_error(tmp_path: Path):
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(TestbedError) as exc:
        run([str(script)])
    assert str(exc.value).startswith(f"{script}: ")


# --- a stop that lands in a finalizer -------------------------------------------------
# Python cannot raise from a finalizer (pexpect's PtyProcess.__del__, collected at any
# moment): it prints "Exception ignored" and goes on.  Found by the fault injection:
# a Ctrl-C that came there let the run finish as if never stopped.

LOST_IN_A_FINALIZER = """
import signal, sys
from piuparts import command
class Collected:
    def __del__(self):
        raise {exception}
Collected()  # its finalizer raises now, where Python cannot pass it on
try:
    command.run(["echo", "ran"])
except BaseException as err:
    print("stopped by", type(err).__name__)
    sys.exit(9)
print("went on")
"""


@pytest.mark.parametrize("exception, name", [("KeyboardInterrupt", "KeyboardInterrupt"),
                                             ("__import__('piuparts.errors').errors.Interrupted(15)",
                                              "Interrupted")])
def test_a_stop_lost_in_a_finalizer_stops_the_next_command(exception, name):
    # In a process of its own: pytest puts its own unraisable hook around each test.
    done = subprocess.run([sys.executable, "-c", LOST_IN_A_FINALIZER.format(exception=exception)],
                          capture_output=True, text=True, timeout=60, cwd=Path(command.__file__).parents[1])
    assert (done.returncode, done.stdout) == (9, f"stopped by {name}\n"), done
    assert "Exception ignored" not in done.stderr


def test_a_lost_stop_waits_while_a_cleanup_step_holds_the_signals():
    # A cleanup (signals held: resources.signals_deferred) runs its commands to the end;
    # the stop comes at the first command after it.
    script = LOST_IN_A_FINALIZER.format(exception="KeyboardInterrupt").replace(
        'try:\n    command.run(["echo", "ran"])',
        'from piuparts import resources\nwith resources.signals_deferred():\n    command.run(["true"])\n'
        'print("cleaned up")\ntry:\n    command.run(["echo", "ran"])')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(command.__file__).parents[1])
    assert (done.returncode, done.stdout) == (9, "cleaned up\nstopped by KeyboardInterrupt\n"), done


def test_any_other_error_in_a_finalizer_is_reported_as_python_does():
    script = LOST_IN_A_FINALIZER.format(exception="ValueError('not a stop')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(command.__file__).parents[1])
    assert (done.returncode, done.stdout) == (0, "went on\n"), done
    assert "Exception ignored" in done.stderr and "ValueError: not a stop" in done.stderr


# --- output cap --------------------------------------------------------------------

def test_output_cap_keeps_head_and_tail_and_counts_dropped_bytes():
    code = "import sys; sys.stdout.write('H' * 500 + 'x' * 99000 + 'T' * 500)"
    result = run([sys.executable, "-c", code], output_cap=1000, timeout=30)
    assert result.dropped == 99000
    assert result.output == "H" * 500 + "\n[... 99000 bytes left out ...]\n" + "T" * 500
    assert result.ok is True


def test_output_exactly_at_the_cap_is_kept_whole():
    code = "import sys; sys.stdout.write('a' * 600 + 'b' * 400)"
    result = run([sys.executable, "-c", code], output_cap=1000, timeout=30)
    assert result.dropped == 0
    assert result.output == "a" * 600 + "b" * 400


def test_output_one_byte_over_the_cap_drops_one_byte():
    code = "import sys; sys.stdout.write('a' * 500 + 'X' + 'b' * 500)"
    result = run([sys.executable, "-c", code], output_cap=1000, timeout=30)
    assert result.dropped == 1
    assert result.output == "a" * 500 + "\n[... 1 bytes left out ...]\n" + "b" * 500


# --- logging -----------------------------------------------------------------------

def test_shown_env_comes_before_the_command_in_the_log_line(piuparts_log):
    run(["sh", "-c", 'echo "$0"', "hi there"], env={**ENV_PATH, "LANG": "C", "FOO": "bar"},
        shown_env={"LANG": "C", "FOO": "bar"})
    messages = [r.getMessage() for r in piuparts_log.records]
    assert messages[0] == "$ LANG=C FOO=bar sh -c 'echo \"$0\"' 'hi there'"
    assert piuparts_log.records[0].levelno == logging.INFO
    assert messages[1].startswith("  exit 0 in ")
    assert messages[2:] == ["  | hi there"]
    assert piuparts_log.records[2].levelno == logging.DEBUG


def test_level_sets_the_level_of_the_command_line(piuparts_log):
    run(["true"], level=logging.DEBUG)
    assert [(r.levelno, r.getMessage()) for r in piuparts_log.records][0] == (logging.DEBUG, "$ true")


def test_failure_logs_exit_and_output_as_warnings(piuparts_log):
    run(["sh", "-c", "echo one; echo two; exit 2"])
    records = [(r.levelno, r.getMessage()) for r in piuparts_log.records]
    assert records[0] == (logging.INFO, "$ sh -c 'echo one; echo two; exit 2'")
    assert records[1][0] == logging.WARNING and records[1][1].startswith("  exit 2 in ")
    assert records[2:] == [(logging.WARNING, "  | one"), (logging.WARNING, "  | two")]


def test_timeout_is_logged_as_an_error(piuparts_log):
    run(["sleep", "100"], timeout=0.5, grace=0.5)
    records = [(r.levelno, r.getMessage()) for r in piuparts_log.records]
    assert records[0] == (logging.INFO, "$ sleep 100")
    assert records[1][0] == logging.ERROR
    match = re.fullmatch(r"  killed after (\d+\.\d) s \(time limit 0\.5 s\)", records[1][1])
    assert match, records[1][1]
    assert 0.5 <= float(match[1]) < 5


def test_logged_line_with_shown_env_can_be_pasted_into_a_shell(piuparts_log):
    run(["sh", "-c", 'echo "$MSG"'], env={**ENV_PATH, "MSG": "a b"}, shown_env={"MSG": "a b"})
    line = piuparts_log.records[0].getMessage()
    assert line.startswith("$ ")
    pasted = subprocess.run(["sh", "-c", line[2:]], capture_output=True, text=True)
    assert pasted.stdout == "a b\n"



def test_the_terminal_shows_the_short_form_and_log_files_the_whole_line(tmp_path):
    import io

    from piuparts import log as logsetup
    stream = io.StringIO()
    logger = logging.getLogger("piuparts")
    level, propagate = logger.level, logger.propagate  # setup() changes both: the other tests' caplog needs them
    logsetup.setup(0, stream=stream, logfile=str(tmp_path / "full.log"))
    try:
        run(["sh", "-c", "exit 0"], env=ENV_PATH, shown_env={"LANG": "C"}, short="[/srv/root] true")
        verbose = io.StringIO()
        logsetup.setup(1, stream=verbose)
        run(["sh", "-c", "exit 0"], env=ENV_PATH, shown_env={"LANG": "C"}, short="[/srv/root] true")
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)
        logger.propagate = propagate
    assert stream.getvalue().splitlines()[0].endswith("INFO: $ [/srv/root] true")
    assert (tmp_path / "full.log").read_text().splitlines()[0].endswith("INFO: $ LANG=C sh -c 'exit 0'")
    assert verbose.getvalue().splitlines()[0].endswith("INFO: $ LANG=C sh -c 'exit 0'")  # -v: whole

# --- under a terminal (maintainer-script steps) ---

def test_terminal_prompt_is_caught_and_quoted():
    result = command.run(["sh", "-c", "echo working; printf 'Your name? '; read name; echo never"],
                         terminal=True, prompt_timeout=1)
    assert result.prompt == "Your name?"
    assert not result.ok and not result.timed_out
    assert result.output == "working\nYour name? "
    assert command.failure_message(result, "install") == (
        "install waited for an answer on the terminal and was killed; the question: 'Your name?'")


def test_terminal_silence_without_a_read_is_not_a_prompt():
    result = command.run(["sh", "-c", "printf 'thinking? '; sleep 2; echo done"], terminal=True, prompt_timeout=1)
    assert result.ok and result.prompt is None
    assert result.output == "thinking? done\n"


def test_terminal_dpkg_conffile_question_is_caught_at_once():
    script = ("printf \"Configuration file '/etc/foo'\\n *** foo (Y/I/N/O/D/Z) [default=N] ? \"; read answer")
    result = command.run(["sh", "-c", script], terminal=True, prompt_timeout=60)
    assert result.prompt == "*** foo (Y/I/N/O/D/Z) [default=N] ?"
    assert result.elapsed < 10


def test_terminal_output_is_what_a_terminal_would_show():
    result = command.run(["sh", "-c", "for i in 1 2 3; do printf 'step %s\\r' $i; done; echo; exit 3"],
                         terminal=True)
    assert (result.returncode, result.output) == (3, "step 3\n")


def test_terminal_timeout_kills_the_group():
    result = command.run(["sh", "-c", "sleep 100 & sleep 100"], terminal=True, timeout=1, grace=0.5)
    assert result.timed_out and not result.ok
    assert result.elapsed < 5


def test_terminal_daemon_holding_the_terminal_does_not_hang_the_step():
    result = command.run(["sh", "-c", "setsid sleep 30 & echo $!"], terminal=True, timeout=20)
    daemon = int(result.output)
    try:
        assert result.ok and result.elapsed < 5
    finally:
        os.kill(daemon, signal.SIGKILL)


# However a script asks, the prompt is caught before the step's time limit (30 s here).
ASKING = {
    "reading /dev/tty opened by path": ["sh", "-c", "printf 'Your name? '; read name </dev/tty"],
    "select(2) on stdin": ["perl", "-e", '$| = 1; print "Continue? "; vec($r, 0, 1) = 1; select($r, undef, undef, undef)'],
    "poll(2) on stdin": [sys.executable, "-c", "import select; print('Continue?', end=' ', flush=True); "
                         "p = select.poll(); p.register(0, select.POLLIN); p.poll()"],
    "epoll on /dev/tty": [sys.executable, "-c", "import select; print('Continue?', end=' ', flush=True); "
                          "t = open('/dev/tty'); e = select.epoll(); e.register(t, select.EPOLLIN); e.poll()"],
    "Python's input()": [sys.executable, "-c", "input('Your name? ')"],
    # whiptail draws a screen (its TERM set by the script: ours, dumb, makes it give up)
    "whiptail": ["sh", "-c", "TERM=xterm whiptail --yesno 'Continue?' 8 40"],
}


@pytest.mark.parametrize("argv", ASKING.values(), ids=ASKING.keys())
def test_terminal_prompt_is_caught_however_it_is_asked(argv):
    result = command.run(argv, terminal=True, prompt_timeout=1, timeout=30)
    assert not result.timed_out, result
    assert result.prompt in ("Your name?", "Continue?", "Continue? <Yes> <No>")


def test_terminal_waiting_on_a_pipe_is_not_a_prompt():
    # Silent and blocked in poll(2), but on a pipe of its own, not on the terminal.
    script = ("import os, select, time; r, w = os.pipe(); "
              "os.fork() or (time.sleep(2), os.write(w, b'x'), os._exit(0)); "
              "print('waiting?', end=' ', flush=True); p = select.poll(); p.register(r, select.POLLIN); p.poll(); "
              "print('done')")
    result = command.run([sys.executable, "-c", script], terminal=True, prompt_timeout=0.5, timeout=30)
    assert result.ok and result.prompt is None
    assert result.output == "waiting? done\n"
