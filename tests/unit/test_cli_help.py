"""``piuparts --help`` and the man page group the options the same way, piuparts 1.1.7's own last."""

from __future__ import annotations

import re

from piuparts import cli, manpage
from piuparts.backends import Backend

GROUPS = ["what to test", "the tests", "where the chroot comes from", "checks and what they ignore",
          "cache, limits and network", "output", "piuparts 1.1.7's options"]

#: The flags of every option the parser had before it was grouped (the backends' come from their classes).
FLAGS = [
    ("-h", "--help"), ("-a", "--apt"), ("-d", "--distribution"), ("--distros-conf",), ("-m", "--mirror"), ("--arch",),
    ("--extra-repo",), ("--bindmount",), ("--scriptsdir",), ("--no-install-purge-test",), ("--no-upgrade-test",),
    ("--purge-dependencies",), ("--install-remove-install",), ("--install-purge-install",), ("-s", "--save"),
    ("--list-backends",), ("--cache-dir",), ("--base-max-age",), ("--lists-max-age",), ("--tmpfs-size",),
    ("--no-tmpfs",), ("--max-command-runtime",), ("--prompt-timeout",), ("-i", "--ignore"),
    ("-I", "--ignore-regex", "--ignore-regexp"), ("-n", "--no-ignores"), ("--severity",),
    ("--fail-on-broken-symlinks",), ("-N", "--no-symlinks"), ("--no-diversions",),
    ("--warn-on-leftovers-after-purge",), ("--warn-on-debsums-errors",), ("--warn-on-others",),
    ("--skip-cronfiles-test",), ("--skip-logrotatefiles-test",), ("--no-adequate",), ("--fail-if-inadequate",),
    ("--json",), ("--junit",), ("-l", "--log-file", "--logfile"), ("-v", "--verbose"), ("--version",),
    ("--no-network",), ("--scripts-network",), ("-D", "--defaults"), ("--install-recommends",),
    ("--install-suggests",), ("--no-eatmydata",), ("--dpkg-noforce-unsafe-io",), ("--dpkg-force-confdef",),
    ("--do-not-verify-signatures",), ("--no-check-valid-until",), ("--allow-database",), ("--proxy",),
    ("--update-retries",), ("--fake-essential-packages",), ("--pedantic-purge-test",), ("--testdebs-repo",),
    ("--distupgrade-to-testdebs",), ("--distupgrade-to-testdebs-from",), ("--single-changes-list",),
    ("--single-packages",), ("-t", "--tmpdir"), ("-K", "--keyring"), ("--docker-image",), ("--log-level",),
    ("--warn-on-usr-move",), ("--max-command-output-size",), ("--debfoster-options",),
    ("--extra-old-packages",), ("-B", "--end-meta"), ("-S", "--save-end-meta"),
    ("-k", "--keep-env", "--keep-tmpdir"), ("--keep-sources-list",), ("--list-installed-files",),
    ("--merged-usr",), ("--upgrade-before-dist-upgrade",), ("--skip-minimize",), ("--minimize",),
    ("--warn-on-install-over-symlink",), ("--shell-on-error",),
]


def help_sections() -> dict[str, str]:
    """``--help`` cut at its section headings (``title:`` at the left margin), the epilog left out."""
    text = cli.parser().format_help().split("\nexit codes:\n")[0]
    parts = re.split(r"^(\S[^\n]*):\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def section_of(option: str) -> list[str]:
    """The titles of the help sections that list ``option`` at the start of an entry."""
    entry = re.compile(rf"^  (?:\S.*, )?{re.escape(option)}(?:[ ,]|$)", re.M)
    return [title for title, body in help_sections().items() if entry.search(body)]


def test_help_shows_the_groups_in_order() -> None:
    assert list(help_sections()) == ["options", *GROUPS]


def test_each_option_is_in_its_group() -> None:
    assert section_of("--fail-if-inadequate") == ["piuparts 1.1.7's options"]
    assert section_of("-N") == ["piuparts 1.1.7's options"]
    assert section_of("--keep-sources-list") == ["piuparts 1.1.7's options"]
    assert section_of("--json") == ["output"]
    assert section_of("--version") == ["output"]
    assert section_of("--severity") == ["checks and what they ignore"]
    assert section_of("--scriptsdir") == ["the tests"]
    assert section_of("--no-network") == ["cache, limits and network"]
    assert section_of("--schroot") == ["where the chroot comes from"]
    assert section_of("-a") == ["what to test"]
    assert "PACKAGE" in help_sections()["what to test"]


def test_no_option_was_lost_or_renamed() -> None:
    backends = [tuple(o.flags) for b in Backend.registry.values() for o in b.options]
    actions = cli.parser()._actions
    assert sorted(tuple(a.option_strings) for a in actions if a.option_strings) == sorted(FLAGS + backends)
    assert [a.dest for a in actions if not a.option_strings] == ["packages"]


def test_grouping_changes_no_parsed_value() -> None:
    args = cli.parser().parse_args(["-N", "--fail-if-inadequate", "--json", "r.json", "-k", "a.deb"])
    assert (args.no_symlinks, args.fail_if_inadequate, args.json, args.keep_env) == (True, True, "r.json", True)
    assert (args.packages, args.verbose, args.base_max_age) == (["a.deb"], 0, 7.0)


def man_options() -> str:
    page = manpage.render("2026-01-01")
    return page.split("\n.SH OPTIONS\n")[1].split("\n.SH COMMANDS\n")[0]


def test_man_page_has_a_subsection_per_group() -> None:
    titles = [line[4:] for line in man_options().splitlines() if line.startswith(".SS ")]
    assert titles == [manpage.escape(title) for title in GROUPS]


def test_man_page_lists_each_option_once_under_its_group() -> None:
    section = man_options()
    subsections = dict(part.split("\n", 1) for part in section.split(".SS ")[1:])
    for flags in [*FLAGS, ("-e", "--existing-chroot")]:
        if flags == ("-h", "--help"):
            continue
        for flag in flags:
            assert section.count(f"\\fB{manpage.escape(flag)}\\fR") == 1, flag
    assert "\\fB\\-\\-fail\\-if\\-inadequate\\fR" in subsections["piuparts 1.1.7's options"]
    assert "\\fB\\-\\-json\\fR \\fIFILE\\fR" in subsections["output"]
    assert "\\fB\\-\\-help\\fR" not in section
