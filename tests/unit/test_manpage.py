"""piuparts(1) is made from the argument parsers: every option is in it, and man reads it without a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from piuparts import cli, manpage
from piuparts.ci import cli as ci_cli


def test_every_option_of_piuparts_and_ci_is_documented() -> None:
    page = manpage.render("2026-12-01")
    assert page.startswith('.TH PIUPARTS 1 "2026-12-01" "piuparts-ng ')
    for parser in (cli.parser(), ci_cli.parser(), ci_cli.pending_parser()):
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"\\fB{manpage.escape(option)}\\fR" in page, option
    assert ".SS piuparts ci run\\-pending" in page


def test_escape() -> None:
    assert manpage.escape(".hidden\n'quoted\na\\b --x") == "\\&.hidden\n\\&'quoted\na\\eb \\-\\-x"


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_reads_it_without_warnings(tmp_path: Path) -> None:
    path = tmp_path / "piuparts.1"
    path.write_text(manpage.render("2026-12-01"))
    proc = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True, text=True,
                          env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8", "MANPAGER": "cat"})
    assert proc.returncode == 0 and proc.stderr == ""
    assert "piuparts ci run-pending" in proc.stdout and "EXIT STATUS" in proc.stdout
