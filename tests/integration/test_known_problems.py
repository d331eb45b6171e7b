"""piuparts.debian.org's master files each log under known problems by regular
expressions over the piuparts output its slave kept (piuparts-common 1.1.7's
``known_problems/*.conf``, read with piupartslib's own matcher).  Run with the
``[bookworm]`` section's flags, each fixture's output must land in the
categories that name its defect, and a clean package's in none; the output
ends as piuparts-slave requires (``piuparts run ends`` on the last line)."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import pytest

from tests.debs import CLEAN, DAEMON, DIVERTER, FAILING_POSTINST, LEFTOVER, MODIFIER, NO_COPYRIGHT
from tests.integration.helpers import BOOKWORM_FLAGS, piuparts

pytestmark = [pytest.mark.root, pytest.mark.network]

KNOWN_PROBLEMS = Path("/usr/share/piuparts/known_problems")
DWKE = Path("/usr/lib/python3/dist-packages/piupartslib/dwke.py")
needs_piuparts_master = pytest.mark.skipif(
    not (KNOWN_PROBLEMS.is_dir() and DWKE.is_file()) and not os.environ.get("CI"),
    reason="piuparts-master is not installed (./bootstrap installs it)")

#: fixture, the directory the slave files it in, the categories the master gives it.
CASES = {
    "clean": (CLEAN, "pass", set()),
    "leftover only warned": (LEFTOVER, "pass", {"unowned_files_after_purge_issue"}),
    # Another package's file changed is the others-files check's (debsums in piuparts); piuparts
    # lists it under "After purging files have been modified" too, our leftovers leave it to that check.
    "an owned file modified": (MODIFIER, "fail", {"owned_files_after_purge_error", "debsums_mismatch_error"}),
    "a failing postinst": (FAILING_POSTINST, "fail", {"post_installation_script_error"}),
    "a process left running": (DAEMON, "fail", {"processes_running_error"}),
    # The diverted file is gone from its place and its new name is not owned: piuparts lists both too.
    "a diversion left": (DIVERTER, "fail", {"diversion_error", "disappeared_files_after_purge_error",
                                            "owned_files_after_purge_error", "unowned_files_after_purge_error"}),
    "no copyright file": (NO_COPYRIGHT, "pass", {"missing_copyright_file_inadequate_issue"}),
}


@functools.cache
def problems() -> tuple:
    spec = importlib.util.spec_from_file_location("piuparts_dwke", DWKE)
    assert spec is not None and spec.loader is not None
    dwke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dwke)
    found = [dwke.Problem(str(path)) for path in sorted(KNOWN_PROBLEMS.glob("*.conf"))]
    assert len(found) > 70 and all(p.valid() for p in found)
    return tuple(found)


@needs_piuparts_master
@pytest.mark.parametrize("spec, where, expected", CASES.values(), ids=CASES.keys())
def test_the_master_files_our_output_under_the_known_problem_it_shows(cache_dir, debs, tmp_path, spec, where,
                                                                      expected):
    run = piuparts(cache_dir, tmp_path, *BOOKWORM_FLAGS, str(debs(spec)))
    output = run.stdout + run.stderr  # the slave keeps both
    assert ("pass" if run.returncode == 0 else "fail") == where, output
    assert "piuparts run ends" in output.splitlines()[-1], output  # else: "PIUPARTS OUTPUT INCOMPLETE"
    matched = {p.short_name for p in problems() if p.has_problem(output, where)}
    assert matched == expected, output
