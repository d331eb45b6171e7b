"""What each known problem means, for its page: a header and a help text.

A class from a ``known-problem-directory`` brings its own (``HEADER``,
``HELPTEXT``, as piuparts.debian.org's files do); the classes that
:mod:`piuparts.batch.problems` derives from findings are explained here,
in the words of what the test saw.
"""

from __future__ import annotations

from piuparts.batch.problems import UNCLASSIFIED, KnownProblem

_TEXTS: dict[str, tuple[str, str]] = {
    "owned_files_after_purge": (
        "Packages leaving files owned by another package after purge",
        "After the package was purged, files it had created or changed were still there, and another "
        "package owns them (often a conffile the package edited in its maintainer scripts)."),
    "unowned_files_after_purge": (
        "Packages leaving unowned files after purge",
        "After the package was purged, files or directories that no package owns were still there. "
        "Files made by the maintainer scripts must be removed by the postrm on purge (Debian Policy 10.8)."),
    "owned_files_by_many_packages": (
        "Packages leaving files owned by several packages after purge",
        "Files left after the purge belong to more than one package."),
    "modified_files_after_purge": (
        "Packages modifying files of the system that stay modified after purge",
        "A file that existed before the package was installed was different after its purge."),
    "disappeared_files_after_purge": (
        "Packages removing files of the system",
        "A file that existed before the package was installed was gone after its purge."),
    "conffile_prompt": (
        "Packages that ask about a conffile during an upgrade",
        "dpkg asked whether to keep a modified conffile: the package changed its own conffile "
        "(Debian Policy forbids changing conffiles from maintainer scripts)."),
    "pre_installation_script": ("Packages whose preinst failed", "The pre-installation script exited with an error."),
    "post_installation_script": ("Packages whose postinst failed",
                                 "The post-installation script exited with an error; see the log."),
    "pre_removal_script": ("Packages whose prerm failed", "The pre-removal script exited with an error."),
    "post_removal_script": ("Packages whose postrm failed",
                            "The post-removal script exited with an error (often on purge, when a tool it "
                            "calls was already removed)."),
    "dependency": ("Packages that cannot be installed",
                   "apt could not install the package: its dependencies cannot be satisfied."),
    "resource_violation": ("Packages whose test ran out of time or output",
                           "A step took longer than the time limit, printed too much, or waited for an answer "
                           "on its terminal."),
    "trigger_cycle": ("Packages with a trigger cycle", "dpkg stopped a trigger cycle."),
    "processes_running": ("Packages leaving processes running",
                          "Processes started by the maintainer scripts were still running after the purge."),
    "unknown_purge": ("Packages dpkg still knows after purge",
                      "The package (or a package it pulled in) was still known to dpkg after the purge."),
    "diversion": ("Packages leaving diversions", "dpkg diversions were added and not removed on purge."),
    "alternatives_after_purge": ("Packages leaving alternatives",
                                 "update-alternatives entries were left after the purge."),
    "broken_symlinks": ("Packages with broken symbolic links", "Symbolic links that point nowhere."),
    "debsums_mismatch": ("Packages modifying files of other packages",
                         "Files of other packages no longer match their md5sums."),
    "cron_error_after_removal": ("Packages whose cron files fail after removal",
                                 "A cron job of the removed package fails when it runs."),
    "logrotate_error_after_removal": ("Packages whose logrotate files fail after removal",
                                      "A logrotate configuration of the removed package fails."),
    UNCLASSIFIED: ("Failures of no known class",
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
    header, text = _TEXTS.get(name) or _TEXTS.get(_stem(name)) or (name.replace("_", " "), "")
    if issue:
        header += " (a warning: the test still passed)"
    return header, text, issue
