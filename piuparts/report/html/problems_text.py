"""What each known problem means, for its page: a header and a help text.

A class from a ``known-problem-directory`` brings its own (``HEADER``,
``HELPTEXT``, as piuparts.debian.org's files do); the classes that
:mod:`piuparts.batch.problems` derives from findings take their heading
from :func:`piuparts.batch.problems.header` and a help text from here, in
the words of what the test saw.
"""

from __future__ import annotations

from piuparts.batch import problems
from piuparts.batch.problems import UNCLASSIFIED, KnownProblem

#: A help text for each built-in class (by its name without _error or _issue).
HELP: dict[str, str] = {
    "owned_files_after_purge": (
        "After the package was purged, files it had created or changed were still there, and another package "
        "owns them (often a conffile the package edited in its maintainer scripts)."),
    "unowned_files_after_purge": (
        "After the package was purged, files or directories that no package owns were still there. Files made "
        "by the maintainer scripts must be removed by the postrm on purge (Debian Policy 10.8)."),
    "owned_files_by_many_packages": (
        "Files left after the purge belong to more than one package."),
    "modified_files_after_purge": (
        "A file that existed before the package was installed was different after its purge."),
    "disappeared_files_after_purge": (
        "A file that existed before the package was installed was gone after its purge."),
    "conffile_prompt": (
        "dpkg asked whether to keep a modified conffile: the package changed its own conffile (Debian Policy "
        "forbids changing conffiles from maintainer scripts)."),
    "pre_installation_script": (
        "The pre-installation script exited with an error."),
    "post_installation_script": (
        "The post-installation script exited with an error; see the log."),
    "pre_removal_script": (
        "The pre-removal script exited with an error."),
    "post_removal_script": (
        "The post-removal script exited with an error (often on purge, when a tool it calls was already "
        "removed)."),
    "dependency": (
        "apt could not install the package: its dependencies cannot be satisfied."),
    "resource_violation": (
        "A step took longer than the time limit, printed too much, or waited for an answer on its terminal."),
    "trigger_cycle": (
        "dpkg stopped a trigger cycle."),
    "processes_running": (
        "Processes started by the maintainer scripts were still running after the purge."),
    "unknown_purge": (
        "The package (or a package it pulled in) was still known to dpkg after the purge."),
    "diversion": (
        "dpkg diversions were added and not removed on purge."),
    "alternatives_after_purge": (
        "update-alternatives entries were left after the purge."),
    "statoverride_after_purge": (
        "dpkg-statoverride entries were added and not removed on purge (an empty statoverride file "
        "is not counted)."),
    "broken_symlinks": (
        "Symbolic links that point nowhere."),
    "debsums_mismatch": (
        "Files of other packages no longer match their md5sums."),
    "cron_error_after_removal": (
        "A cron job of the removed package fails when it runs."),
    "logrotate_error_after_removal": (
        "A logrotate configuration of the removed package fails."),
    UNCLASSIFIED: (
        "The test failed and no known problem explains it: read the log."),
}


def _stem(name: str) -> str:
    for suffix in ("_error", "_issue"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def describe(name: str, known: KnownProblem | None) -> tuple[str, str, bool]:
    """``(header, help text, is an issue)`` of a problem name (an issue is a warning, not a failure)."""
    issue = name.endswith("_issue")
    if known is not None:
        return known.header or name, known.helptext, known.issue
    header = problems.header(name)
    text = HELP.get(name) or HELP.get(_stem(name)) or ""
    if issue:
        header += " (a warning: the test still passed)"
    return header, text, issue
