"""The manual page, made from the argument parsers (so it never disagrees with ``--help``).

``python3 -m piuparts.manpage > piuparts.1`` writes piuparts(1): the main
command's options in the groups of ``--help``, then each other command (``ci``,
``ci run-pending``, ``batch run|status|reschedule``, ``cleanup``) with its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from piuparts import __version__


def escape(text: str) -> str:
    """Text as roff reads it literally: backslashes, minus signs, a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"\\fI{escape(str(action.metavar or action.dest))}\\fR"
    if action.nargs == 0:
        return ", ".join(f"\\fB{escape(o)}\\fR" for o in action.option_strings)
    metavar = action.metavar or action.dest.upper()
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    return ", ".join(f"\\fB{escape(o)}\\fR \\fI{escape(str(metavar))}\\fR" for o in action.option_strings)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = parser._get_formatter()._expand_help(action)  # argparse's own expansion of %(default)s
    return escape(text)


def _documented(actions: list[argparse.Action]) -> list[argparse.Action]:
    """The actions a page describes: not subcommand choosers, --help or hidden ones."""
    return [a for a in actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
            and a.help != argparse.SUPPRESS]


def options(parser: argparse.ArgumentParser, actions: list[argparse.Action] | None = None) -> list[str]:
    """The .TP paragraphs of a parser's arguments, or of ``actions`` of it (one group)."""
    lines = []
    for action in _documented(parser._actions if actions is None else actions):
        lines += [".TP", _invocation(action), _help(parser, action) or "(no description)"]
    return lines


def grouped_options(parser: argparse.ArgumentParser) -> list[str]:
    """The arguments as ``--help`` groups them: a .SS subsection a group with anything to describe."""
    lines = []
    for group in parser._action_groups:
        if _documented(group._group_actions):
            lines += [".SS " + escape(group.title or "options")]
            lines += [".PP", escape(group.description)] if group.description else []
            lines += options(parser, group._group_actions)
    return lines


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().replace("usage: ", "", 1).split())


def _command(parser: argparse.ArgumentParser) -> list[str]:
    lines = [".SS " + escape(parser.prog), ".PP", escape(_usage(parser))]
    if parser.description:
        lines += [".PP", escape(parser.description)]
    return lines + options(parser)


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(dict.fromkeys(action.choices.values()))
    return found


def render(date: str | None = None) -> str:
    """The whole page, in roff."""
    from piuparts import cli
    from piuparts.batch import cli as batch_cli
    from piuparts.ci import cli as ci_cli
    main = cli.parser()
    # SOURCE_DATE_EPOCH: the package build's date, so the page is reproducible
    date = date or time.strftime("%Y-%m-%d", time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())))
    summary = (main.description or "").rstrip(".")
    lines = [f'.TH PIUPARTS 1 "{date}" "piuparts-ng {__version__}" "User Commands"', ".nh", ".ad l",
             ".SH NAME", "piuparts \\- " + escape(summary[:1].lower() + summary[1:]),
             ".SH SYNOPSIS", escape(_usage(main)),
             ".SH DESCRIPTION", escape(main.description or ""),
             ".SH OPTIONS", *grouped_options(main), ".SH COMMANDS"]
    commands = [ci_cli.parser(), ci_cli.pending_parser(), *_subcommands(batch_cli.parser()), cli.cleanup_parser()]
    for command in commands:
        lines += _command(command)
    lines += [".SH EXIT STATUS", ".nf", escape(cli.EPILOG.split("\n\n")[0].split("\n", 1)[1]), ".fi",
              ".SH SEE ALSO", "\\fBpiuparts\\fR(1) of Debian's piuparts, \\fBreprepro\\fR(1), "
              "\\fBdebootstrap\\fR(8); /usr/share/doc/piuparts-ng/README.md.gz"]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write the page to stdout."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
