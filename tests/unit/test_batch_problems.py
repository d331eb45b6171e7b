"""Known problems: piuparts' class names from findings, and .conf classes against the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from piuparts.batch import problems
from piuparts.errors import UsageError
from piuparts.findings import Finding


@pytest.mark.parametrize("finding, name", [
    (Finding("leftovers", "fail", "/etc/x/", "left behind after purge", ()), "unowned_files_after_purge_error"),
    (Finding("leftovers", "warn", "/etc/x/", "left behind after purge", ()), "unowned_files_after_purge_issue"),
    (Finding("leftovers", "fail", "/etc/y", "left behind after purge", ("base-files",)),
     "owned_files_after_purge_error"),
    (Finding("leftovers", "fail", "/etc/issue", "modified: content changed", ("base-files",)),
     "modified_files_after_purge_error"),
    (Finding("leftovers", "fail", "/etc/motd", "removed (was there before the install)", ()),
     "disappeared_files_after_purge_error"),
    (Finding("processes", "fail", "sleep 600", "still running after purge (pid 3)"), "processes_running_error"),
    (Finding("steps", "fail", "install", "install failed: installed pp-x package post-installation script "
                                          "subprocess returned error exit status 1"), "post_installation_script_error"),
    (Finding("steps", "fail", "purge", "purge failed: pre-removal script subprocess returned error"),
     "pre_removal_script_error"),
    (Finding("steps", "fail", "purge", "purge failed: post-removal script subprocess returned error"),
     "post_removal_script_error"),
    (Finding("steps", "fail", "upgrade", "upgrade failed: dpkg asked about the conffile /etc/x (a conffile prompt)"),
     "conffile_prompt_error"),
    (Finding("steps", "fail", "install", "install failed: the dependencies cannot be installed (unmet dependencies)"),
     "dependency_error"),
    (Finding("steps", "fail", "install", "install did not finish within 1800 s and was killed"),
     "resource_violation_error"),
    (Finding("diversions", "fail", "/usr/bin/x", "diversion left after purge"), "diversion_error"),
    (Finding("alternatives", "fail", "editor", "alternative left"), "alternatives_after_purge_error"),
    (Finding("symlinks", "warn", "/usr/lib/x", "broken symlink"), "broken_symlinks_issue"),
    (Finding("symlinks", "fail", "/usr/lib/x", "broken symlink"), "broken_symlinks_error"),
    (Finding("cron-logrotate", "fail", "/etc/cron.daily/x", "fails after removal"), "cron_error_after_removal_error"),
    (Finding("cron-logrotate", "fail", "/etc/logrotate.d/x", "fails"), "logrotate_error_after_removal_error"),
    (Finding("others-files", "warn", "/usr/bin/y", "changed"), "debsums_mismatch_issue"),
])
def test_findings_map_to_piuparts_names(finding: Finding, name: str) -> None:
    assert problems.classify("fail" if finding.severity == "fail" else "pass", [finding]) == [name]


def test_failure_nothing_fits_is_unclassified() -> None:
    finding = Finding("hooks", "fail", "post_install_x", "exit 1")
    assert problems.classify("fail", [finding]) == ["unclassified_failures"]


def test_testbed_and_internal_results_have_no_problems() -> None:
    finding = Finding("steps", "fail", "install", "post-installation script")
    assert problems.classify("testbed", [finding]) == [] and problems.classify("internal", []) == []


def test_known_problem_directory(tmp_path: Path) -> None:
    (tmp_path / "python_syntax_error.conf").write_text("""\
#
# a user-defined class
#
PATTERN='SyntaxError|SyntaxWarning'
EXCLUDE_PATTERN='test_'
WHERE='fail bugged affected'
ISSUE=0
HEADER='Packages whose byte-compilation fails'
HELPTEXT='
<p>python3 -m py_compile
fails</p>
'
""")
    (tmp_path / "excluded.conf").write_text("PATTERN='.'\n")
    known = problems.load_directory(tmp_path, exclude=["excluded.conf"])
    assert [k.name for k in known] == ["python_syntax_error"]
    assert known[0].header == "Packages whose byte-compilation fails" and "py_compile" in known[0].helptext
    log = "1m2.0s INFO: compiling\n  File x.py SyntaxError: invalid syntax\n"
    assert problems.classify("fail", [], log, known) == ["python_syntax_error"]
    assert problems.classify("fail", [], "test_x.py SyntaxError", known) == ["unclassified_failures"]
    assert problems.classify("pass", [], log, known) == []  # WHERE has no pass


def test_bad_known_problem_files(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text("HEADER='no pattern'\n")
    with pytest.raises(UsageError, match="x.conf: no PATTERN"):
        problems.load_directory(tmp_path)
    with pytest.raises(UsageError, match="no such directory"):
        problems.load_directory(tmp_path / "missing")


def test_every_built_in_name_has_a_header() -> None:
    findings = [Finding(check, sev, subject, message, owners) for check, sev, subject, message, owners in [
        ("leftovers", "fail", "/x", "left behind after purge", ("a", "b")), ("purge", "fail", "foo", "still there", None),
        ("diversions", "fail", "/x", "left", None), ("steps", "fail", "x", "trigger cycle detected", None)]]
    names = problems.from_findings(findings) + ["unclassified_failures", "broken_symlinks_issue"]
    assert all(problems.header(n) != n for n in names), [n for n in names if problems.header(n) == n]
