"""Known problems: piuparts.debian.org's classes, from structured findings.

:func:`classify` maps every failing or warning finding of a result to the
name of piuparts' known-problem file that fits (``owned_files_after_purge_error``
for a failing leftover owned by a package, ``..._issue`` for a warning, and
so on; piuparts' own names, without ``.conf``).  A failed result whose
findings fit no class is ``unclassified_failures``.  This reads the
findings, never the log.

:func:`load_directory` reads a ``known-problem-directory`` of
piuparts-style ``.conf`` files (shell assignments of ``PATTERN``,
``EXCLUDE_PATTERN``, ``WHERE``, ``ISSUE``, ``HEADER``, ``HELPTEXT``); each
adds a class named after its file, matched against the log's lines as
piuparts does with ``grep -E``: a line that PATTERN matches and
EXCLUDE_PATTERN does not.  WHERE says which results it applies to
(``fail``, ``bugged``, ``affected`` are failed results, ``pass`` passed ones).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from piuparts.errors import UsageError
from piuparts.findings import FAIL, WARN, Finding

UNCLASSIFIED = "unclassified_failures"

# (check, predicate on the finding, class stem); the stem gets _error or _issue
# from the finding's severity unless it already names one.
_STEP_CLASSES = (
    (re.compile(r"conffile prompt|asked about the conffile"), "conffile_prompt_error"),
    (re.compile(r"pre-installation script"), "pre_installation_script_error"),
    (re.compile(r"post-installation script"), "post_installation_script_error"),
    (re.compile(r"pre-removal script"), "pre_removal_script_error"),
    (re.compile(r"post-removal script"), "post_removal_script_error"),
    (re.compile(r"unmet dependencies|dependencies cannot be installed|pre-dependency problem", re.I),
     "dependency_error"),
    (re.compile(r"did not finish within|time limit|output limit|waited for an answer"),
     "resource_violation_error"),
    (re.compile(r"trigger cycle|triggers looping"), "trigger_cycle_error"),
)


#: A heading for each built-in class (the report site's page titles); the
#: ``_issue`` variant of a name is the same heading, as a warning.
HEADERS = {
    "owned_files_after_purge": "Files owned by a package left behind after purge",
    "owned_files_by_many_packages": "Files owned by several packages left behind after purge",
    "unowned_files_after_purge": "Files owned by no package left behind after purge",
    "modified_files_after_purge": "Files changed by the package and not restored after purge",
    "disappeared_files_after_purge": "Files that were there before the install and are gone after purge",
    "processes_running": "Processes left running after purge",
    "unknown_purge": "Packages still known to dpkg after purge",
    "diversion": "Diversions left after purge",
    "alternatives_after_purge": "Alternatives left after purge",
    "statoverride_after_purge": "dpkg stat overrides left after purge",
    "broken_symlinks": "Broken symbolic links",
    "debsums_mismatch": "Files of other packages changed",
    "cron_error_after_removal": "Cron jobs that fail once the package is removed",
    "logrotate_error_after_removal": "Logrotate configurations that fail once the package is removed",
    "conffile_prompt": "dpkg asked about a conffile",
    "pre_installation_script": "The pre-installation script failed",
    "post_installation_script": "The post-installation script failed",
    "pre_removal_script": "The pre-removal script failed",
    "post_removal_script": "The post-removal script failed",
    "dependency": "The dependencies cannot be installed",
    "resource_violation": "A step ran out of time or waited for an answer",
    "trigger_cycle": "A trigger cycle",
    "unclassified_failures": "Failures that fit no known class",
}


def header(name: str) -> str:
    """The heading of a built-in class name (``..._error`` or ``..._issue``), or the name itself."""
    stem = name.removesuffix("_error").removesuffix("_issue")
    return HEADERS.get(stem, HEADERS.get(name, name))


def _leftover_class(finding: Finding) -> str:
    message = finding.message
    if message.startswith("modified"):
        return "modified_files_after_purge"
    if message.startswith("removed"):
        return "disappeared_files_after_purge"
    if finding.owners:
        return "owned_files_by_many_packages" if len(finding.owners) > 1 else "owned_files_after_purge"
    return "unowned_files_after_purge"


def _cron_class(finding: Finding) -> str:
    return "logrotate_error_after_removal" if "logrotate" in finding.subject else "cron_error_after_removal"


def _step_class(finding: Finding) -> str | None:
    for pattern, name in _STEP_CLASSES:
        if pattern.search(finding.message):
            return name
    return None


_BY_CHECK: dict[str, Any] = {
    "leftovers": _leftover_class,
    "dependency-leftovers": _leftover_class,
    "conffiles": lambda f: "owned_files_after_purge",
    "processes": lambda f: "processes_running",
    "purge": lambda f: "unknown_purge",
    "diversions": lambda f: "diversion_error",
    "alternatives": lambda f: "alternatives_after_purge",
    "statoverride": lambda f: "statoverride_after_purge",
    "symlinks": lambda f: "broken_symlinks",
    "others-files": lambda f: "debsums_mismatch",
    "cron-logrotate": _cron_class,
    "steps": _step_class,
}


def _with_suffix(stem: str, severity: str) -> str:
    if stem.endswith(("_error", "_issue")):
        return stem
    return stem + ("_error" if severity == FAIL else "_issue")


def from_findings(findings: Iterable[Finding]) -> list[str]:
    """The known-problem names of failing and warning findings (sorted, each once)."""
    names: set[str] = set()
    for finding in findings:
        if finding.severity not in (FAIL, WARN):
            continue
        classify_one = _BY_CHECK.get(finding.check)
        stem = classify_one(finding) if classify_one else None
        if stem is None:
            continue
        names.add(_with_suffix(stem, finding.severity))
    return sorted(names)


@dataclass(frozen=True)
class KnownProblem:
    """A user-defined class from a piuparts-style ``.conf`` file."""

    name: str
    pattern: re.Pattern[str]
    exclude: re.Pattern[str] | None
    where: frozenset[str]
    issue: bool
    header: str
    helptext: str

    def applies(self, kind: str) -> bool:
        """Whether this class looks at a result of ``kind`` (pass or fail)."""
        wanted = {"pass"} if kind == "pass" else {"fail", "bugged", "affected"}
        return bool(self.where & wanted)

    def matches(self, log_text: str) -> bool:
        """A line PATTERN matches and EXCLUDE_PATTERN does not."""
        for line in log_text.splitlines():
            if self.pattern.search(line) and not (self.exclude and self.exclude.search(line)):
                return True
        return False


def _assignments(path: Path) -> dict[str, str]:
    """``KEY='value'`` assignments of a shell fragment (values may span lines)."""
    try:
        lexer = shlex.shlex(path.read_text(), posix=True)
    except OSError as err:
        raise UsageError(f"{path}: cannot read the known problem: {err.strerror}") from None
    lexer.whitespace_split = True
    lexer.commenters = "#"
    values = {}
    try:
        for word in lexer:
            key, sep, value = word.partition("=")
            if sep and re.fullmatch(r"[A-Z_]+", key):
                values[key] = value
    except ValueError as err:
        raise UsageError(f"{path}: not a piuparts known-problem file ({err})") from None
    return values


def _ere(path: Path, key: str, value: str) -> re.Pattern[str]:
    """A grep -E pattern as a Python regular expression (the common subset is the same)."""
    try:
        return re.compile(value.replace("[[:space:]]", r"\s").replace("[[:digit:]]", r"\d"))
    except re.error as err:
        raise UsageError(f"{path}: {key}: not a valid extended regular expression ({err})") from None


def load_file(path: Path) -> KnownProblem:
    """One ``.conf`` file; a one-line error when PATTERN is missing or invalid."""
    values = _assignments(path)
    if not values.get("PATTERN"):
        raise UsageError(f"{path}: no PATTERN; a known problem needs PATTERN='REGEX'")
    exclude = values.get("EXCLUDE_PATTERN")
    return KnownProblem(path.name.removesuffix(".conf"), _ere(path, "PATTERN", values["PATTERN"]),
                        _ere(path, "EXCLUDE_PATTERN", exclude) if exclude else None,
                        frozenset(values.get("WHERE", "fail bugged affected").split()),
                        values.get("ISSUE", "0") == "1", values.get("HEADER", ""), values.get("HELPTEXT", ""))


def load_directory(directory: Path | None, exclude: Sequence[str] = ()) -> list[KnownProblem]:
    """Every ``*.conf`` of a known-problem directory, except the names in ``exclude``."""
    if directory is None:
        return []
    if not directory.is_dir():
        raise UsageError(f"known-problem-directory {directory}: no such directory")
    skipped = {e.removesuffix(".conf") for e in exclude}
    return [load_file(p) for p in sorted(directory.glob("*.conf")) if p.stem not in skipped]


def classify(kind: str, findings: Iterable[Finding], log_text: str = "",
             known: Sequence[KnownProblem] = ()) -> list[str]:
    """All problem names of one result: from its findings, then the directory's classes.

    Only pass and fail results are classified (a test-bed or internal error
    says nothing about the package); a failure nothing fits is
    ``unclassified_failures``.
    """
    if kind not in ("pass", "fail"):
        return []
    names = from_findings(findings)
    matched = [k.name for k in known if k.applies(kind) and k.matches(log_text)]
    if kind == "fail" and not matched and not any(n.endswith("_error") for n in names):
        names.append(UNCLASSIFIED)
    names += matched
    return sorted(set(names))
