"""What a person sees running piuparts on a terminal (a real pseudo-terminal,
through pexpect): a line per step with its time, the verdict and the
findings, and where the full log is; the commands themselves only in that
log.  Not on a terminal (the other tests, piuparts-slave), the plain lines
stay as they are."""

from __future__ import annotations

import re
from pathlib import Path

import pexpect
import pytest

from tests.conftest import PIUPARTS
from tests.debs import CLEAN, FAILING_POSTINST, LEFTOVER

pytestmark = [pytest.mark.root, pytest.mark.network]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def on_terminal(cache_dir: Path, *args: str) -> tuple[int, list[str]]:
    """Run piuparts in a pseudo-terminal 200 columns wide; its exit code and
    the lines left on the screen (the live line erases itself)."""
    child = pexpect.spawn(PIUPARTS[0], [*PIUPARTS[1:], "--cache-dir", str(cache_dir), *args],
                          dimensions=(50, 200), encoding="utf-8", timeout=600, env={"TERM": "xterm",
                                                                                      "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    child.expect(pexpect.EOF)
    child.close()
    screen = []
    for raw in child.before.split("\n"):
        # What stays of a line is what follows the last erase of it.
        line = ANSI.sub("", raw.rsplit("\x1b[2K", 1)[-1])
        if line.strip() and not re.match(r"^\S \S", line):  # not a spinner's frame
            screen.append(line.rstrip())
    return child.exitstatus, screen


def full_log(screen: list[str]) -> str:
    paths = [line.removeprefix("Full log: ") for line in screen if line.startswith("Full log: ")]
    assert len(paths) == 1, screen
    return Path(paths[0]).read_text()


def test_a_passing_run_shows_its_steps_the_verdict_and_the_log(cache_dir, debs):
    deb = debs(CLEAN)
    code, screen = on_terminal(cache_dir, "--no-upgrade-test", str(deb))
    assert code == 0, screen
    steps = [m.groups() for line in screen if (m := re.match(r"^  (ok|FAIL) +(\S.*?) +(\d+\.\d) s$", line))]
    assert [(ok, name) for ok, name, _ in steps] == [
        ("ok", "checks after dependencies"), ("ok", "install"), ("ok", "checks after install"),
        ("ok", "remove"), ("ok", "checks after remove"), ("ok", "purge"), ("ok", "checks after purge")], screen
    assert "install-purge: pp-clean_1.0-1" in screen
    assert screen[-3:-1] == ["PASS: pp-clean_1.0-1", "  scenario install-purge: passed"], screen
    # No command on the screen; all of them, whole, in the log, with piuparts' last lines.
    assert not any("dpkg --purge" in line or "apt-get" in line for line in screen), screen
    log = full_log(screen)
    assert re.search(r"INFO: \$ .*nsenter.* dpkg --purge pp-clean$", log, re.M), log
    assert log.rstrip().endswith("piuparts run ends.")


def test_a_failing_run_shows_the_failed_step_and_the_findings(cache_dir, debs):
    code, screen = on_terminal(cache_dir, "--no-upgrade-test", str(debs(FAILING_POSTINST)))
    assert code == 1, screen
    assert any(re.match(r"^  FAIL +install +\d+\.\d s$", line) for line in screen), screen
    assert not any(re.match(r"^  \S+ +(remove|purge) ", line) for line in screen), screen
    assert "FAIL: pp-failpostinst_1.0-1" in screen
    assert "piuparts run ends." in full_log(screen)

    code, screen = on_terminal(cache_dir, "--no-upgrade-test", str(debs(LEFTOVER)))
    assert code == 1, screen
    assert "FAIL: pp-leftover_1.0-1" in screen
    assert any(re.match(r"^  FAIL +checks after purge +\d+\.\d s  2 failed$", line) for line in screen), screen
    assert any(re.match(r"^  ok +purge +\d+\.\d s$", line) for line in screen), screen
    assert "      FAIL: /etc/x/generated.conf (not owned): left behind after purge" in screen  # the finding


def test_with_v_the_commands_are_shown_whole(cache_dir, debs):
    code, screen = on_terminal(cache_dir, "-v", "--no-upgrade-test", str(debs(CLEAN)))
    assert code == 0, screen
    assert any(re.search(r"INFO: \$ .*nsenter.* dpkg --purge pp-clean$", line) for line in screen), screen
    assert not any(line.startswith("Full log: ") for line in screen), screen
