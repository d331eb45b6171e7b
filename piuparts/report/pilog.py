"""The log file of ``-l/--log-file``: our log, then piuparts' key lines.

CI wrappers read piuparts' log, not only its exit code (jenkins-debian-glue's
``jdg-tap-piuparts`` turns it into TAP).  So the file gets, as the test
ends, the lines piuparts 1.1.7 writes with their meanings, in its format
(``0m1.2s LEVEL: message``):

- ``DEBUG: Command ok: [ARGV]`` for each command of a step that succeeded,
  and ``ERROR: Command failed (status=N): [ARGV]`` (the argv as a Python
  list), followed by the step's reason, indented, for one that failed;
- ``ERROR: FAIL: TITLE:`` and the paths or objects indented below it
  (``PATH<TAB> owned by: PKG`` or ``PATH<TAB> not owned``), for each
  check whose findings fail the test, the leftovers under piuparts' three
  headings (left, disappeared, modified); ``INFO: Warning: Package
  purging left files on system:`` when leftovers only warn; ``ERROR:
  WARN: Broken symlinks:`` for broken symlinks that only warn (piuparts
  logs those at the error level), ``WARNING: WARN: TITLE:`` for other
  warnings; adequate's lines and its tags by kind (``WARN: Running
  adequate resulted in inadequate tags found: ...``);
- ``PASS:``/``FAIL:`` for each scenario with piuparts' names for its tests
  (``Installation and purging test.``), ``SKIP:`` for one skipped;
- ``INFO: PASS: All tests.`` and ``INFO: piuparts run ends.`` when everything
  passed, else ``ERROR: piuparts run ends.``

piuparts.debian.org's master files each log under its known_problems by
regular expressions over these lines (piuparts-common's
``known_problems/*.conf``), so their wording is piuparts'.  The same lines
end the standard output too (piuparts-slave reads that, and files a run
whose last line lacks ``piuparts run ends`` as incomplete).
"""

from __future__ import annotations

import logging
import time
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from piuparts.checks import leftovers, symlinks
from piuparts.failures import CONFFILE_PROMPT
from piuparts.findings import FAIL, WARN

if TYPE_CHECKING:
    from piuparts.api import RunResult

#: piuparts' names for what each scenario tests.
SCENARIO_TITLES = {"install-purge": "Installation and purging test.",
                   "install-upgrade-purge": "Installation, upgrade and purging tests.",
                   "distupgrade": "Upgrading between Debian distributions."}
#: The heading of each check's findings (piuparts' wording where it has one).
CHECK_TITLES = {"leftovers": "Package purging left files on system",
                "dependency-leftovers": "Files left on system by dependencies of the tested packages",
                "processes": "Processes are running inside chroot",
                "purge": "Packages still installed after purge",
                "symlinks": "Broken symlinks",
                "diversions": "Installed diversions (dpkg-divert) not removed by purge",
                "alternatives": "Alternatives not removed by purge",
                "users": "Users or groups left behind by purge",
                "others-files": "debsums reports modifications inside the chroot",
                "conffiles": "Conffiles left behind or changed",
                "cron-logrotate": "Cron or logrotate files fail with the package removed",
                "hooks": "Custom scripts failed",
                "steps": "Steps failed"}
NOT_TESTED = {"usage": "bad usage or configuration", "testbed": "the test bed failed, not the package",
              "internal": "an internal error of piuparts-ng"}

Line = tuple[int, str]


def _indent(lines: Iterable[str]) -> str:
    return "".join(f"\n  {line}" for line in lines)


def command_lines(scenario: dict[str, Any]) -> list[Line]:
    """``Command ok`` / ``Command failed`` for every command of every step."""
    lines: list[Line] = []
    for step in scenario.get("steps", []):
        for command in step.get("commands", []):
            argv, status = list(command["argv"]), int(command["returncode"])
            if status == 0:
                lines.append((logging.DEBUG, f"Command ok: {argv!r}"))
            else:
                reason = [step["message"]] if step.get("message") else []
                if f"({CONFFILE_PROMPT})" in step.get("message", ""):
                    # piuparts runs dpkg with its stdin at end of file, which stops there with these
                    # words (known_problems' conffile_prompt_error); ours saw the prompt on its terminal
                    reason.append("as dpkg without a terminal says it: end of file on stdin at conffile prompt")
                lines.append((logging.ERROR, f"Command failed (status={status}): {argv!r}{_indent(reason)}"))
    return lines


#: piuparts' headings of the leftovers check, by what happened to the path.
LEFTOVER_TITLES = ((leftovers.REMOVED, "After purging files have disappeared"),
                   (leftovers.MODIFIED, "After purging files have been modified"),
                   (leftovers.LEFT, "Package purging left files on system"))
#: adequate's tags piuparts names (its ``inadequate`` and ``less interesting`` lists).
ADEQUATE_TAGS = ("bin-or-sbin-binary-requires-usr-lib-library", "broken-binfmt-detector",
                 "broken-binfmt-interpreter", "incompatible-licenses", "ldd-failure", "library-not-found",
                 "missing-alternative", "missing-copyright-file", "missing-pkgconfig-dependency",
                 "missing-symbol-version-information", "program-name-collision", "py-file-not-bytecompiled",
                 "pyshared-file-not-bytecompiled", "symbol-size-mismatch", "undefined-symbol")
BORING_ADEQUATE_TAGS = ("obsolete-conffile", "broken-symlink")


def _heading(finding: dict[str, Any]) -> str:
    """The piuparts heading a finding is listed under."""
    check = finding["check"]
    if check == "leftovers":
        return next((title for kind, title in LEFTOVER_TITLES if finding.get("message", "").startswith(kind)),
                    CHECK_TITLES[check])
    if check == "cron-logrotate":  # piuparts: one heading a file
        kind = "Logrotate" if finding["subject"].startswith("/etc/logrotate.d/") else "Cron"
        return f"{kind} file {finding['subject']} has output with package removed"
    return CHECK_TITLES.get(check, check)


def finding_lines(scenario: dict[str, Any]) -> list[Line]:
    """``FAIL:`` and ``WARN:`` lines, one a heading and severity, the findings indented below,
    worded as piuparts words them (the master's known_problems patterns read these lines)."""
    failed_steps = {s["name"] for s in scenario.get("steps", [])
                    if any(c["returncode"] != 0 for c in s.get("commands", []))}
    findings = [f for f in scenario.get("findings", [])
                if f["severity"] in (FAIL, WARN) and f["check"] != "adequate"
                and not (f["check"] == "steps" and f["subject"] in failed_steps)]
    lines: list[Line] = []
    # adequate's report is one block, its "less interesting" tags (information) included
    if adequate := [f for f in scenario.get("findings", []) if f["check"] == "adequate"]:
        lines += _adequate_lines("FAIL" if any(f["severity"] == FAIL for f in adequate) else "WARN", adequate)
    key = (lambda f: (f["severity"] != FAIL, f["check"], _heading(f)))
    for (warn_only, check, title), group in groupby(sorted(findings, key=key), key=key):
        found = list(group)
        body = _indent(_finding_text(f) for f in found)
        if not warn_only:
            lines.append((logging.ERROR, f"FAIL: {title}:{body}"))
        elif check == "leftovers":  # --warn-on-leftovers-after-purge
            lines.append((logging.INFO, f"Warning: {title}:{body}"))
        else:  # piuparts logs broken symlinks at the error level even when they only warn
            lines.append((logging.ERROR if check == "symlinks" else logging.WARNING, f"WARN: {title}:{body}"))
    return lines


def _adequate_lines(code: str, findings: list[dict[str, Any]]) -> list[Line]:
    """adequate's report as piuparts gives it: its lines, then the tags it knows by kind."""
    output = [f"{(f.get('blame') or ['?'])[0]}: {f['subject']}" for f in findings]
    tags = {str(f["subject"]).split()[0] for f in findings if str(f["subject"]).strip()}
    lines: list[Line] = [(logging.ERROR, f"{code}: Inadequate results from running adequate!{_indent(output)}")]
    inadequate = "".join(f" {tag} " for tag in ADEQUATE_TAGS if tag in tags)
    boring = "".join(f" {tag} " for tag in BORING_ADEQUATE_TAGS if tag in tags)
    if inadequate:
        lines.append((logging.ERROR, f"{code}: Running adequate resulted in inadequate tags found: {inadequate}"))
    if boring:
        lines.append((logging.ERROR, f"{code}: Running adequate resulted in less interesting tags found: {boring}"))
    if not (inadequate or boring):
        lines.append((logging.ERROR, f"{code}: Found unknown tags running adequate."))
    return lines


def _finding_text(finding: dict[str, Any]) -> str:
    owners = finding.get("owners")
    text = str(finding["subject"])
    target = symlinks.broken_target(str(finding.get("message", ""))) if finding["check"] == "symlinks" else None
    if target is not None:  # piuparts: "PATH -> TARGET", then "(OWNERS)" if owned
        return f"{text} -> {target}" + (f" ({', '.join(owners)})" if owners else "")
    if owners is not None:
        text += "\t owned by: " + ", ".join(owners) if owners else "\t not owned"
    return f"{text} ({finding['message']})" if finding.get("message") else text


def scenario_lines(scenario: dict[str, Any]) -> list[Line]:
    """Everything piuparts would say about one scenario, its verdict last."""
    title = SCENARIO_TITLES.get(scenario["name"], f"{scenario['name']} test.")
    if scenario.get("skipped"):
        return [(logging.INFO, f"SKIP: {title} {scenario['skipped']}")]
    verdict = scenario.get("verdict", "PASS")
    return [*command_lines(scenario), *finding_lines(scenario),
            (logging.INFO, f"PASS: {title}") if verdict == "PASS" else (logging.ERROR, f"FAIL: {title}")]


def result_lines(results: list["RunResult"], error: str | None = None) -> list[Line]:
    """piuparts' key lines for every test of the run, then how the run ends
    (``error``: what stopped the run before its tests ended)."""
    lines: list[Line] = []
    for result in results:
        for scenario in result.scenarios:
            lines += scenario_lines(scenario)
        if result.error is not None:
            why = NOT_TESTED.get(result.kind, result.kind)
            lines.append((logging.ERROR, f"FAIL: {result.subject.get('label', '')} not tested ({why}): "
                                         f"{result.error}"))
    if error is not None:
        lines.append((logging.ERROR, f"FAIL: not tested: {error}"))
    elif results and all(r.kind == "pass" for r in results):
        return [*lines, (logging.INFO, "PASS: All tests."), (logging.INFO, "piuparts run ends.")]
    return [*lines, (logging.ERROR, "piuparts run ends.")]


def emit(handler: logging.Handler, lines: list[Line], level: int = logging.NOTSET) -> None:
    """``lines`` through ``handler`` in the log's form, those below ``level`` left out
    (``Command ok`` is a debug line: on the console with -v)."""
    for line_level, message in lines:
        if line_level >= level:
            handler.emit(logging.makeLogRecord({"name": "piuparts.pilog", "levelno": line_level,
                                                "levelname": logging.getLevelName(line_level), "msg": message,
                                                "created": time.time()}))


class LogFile(logging.FileHandler):
    """The ``-l`` file: what the console shows, as it is logged, then piuparts'
    key lines (:meth:`finish`), in the same ``0m1.2s LEVEL: message`` form."""

    def __init__(self, path: Path, formatter: logging.Formatter, level: int) -> None:
        super().__init__(path, mode="w", encoding="utf-8")
        self.setFormatter(formatter)
        self.setLevel(level)

    def finish(self, results: list["RunResult"], error: str | None = None) -> None:
        """Write piuparts' lines for ``results`` (see :func:`result_lines`); the file is complete after it."""
        emit(self, result_lines(results, error))  # whatever the file's level: these lines are the file's point
