"""The command line and conf/ turned into a :class:`~piuparts.config.RunConfig`, read once;
the host's defaults (distribution, mirror, architecture) are resolved here."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from piuparts import aptsources, repos
from piuparts.config import RunConfig
from piuparts.errors import UsageError
from piuparts.state import Ignores

DEFAULT_CACHE_DIR = Path("/var/cache/piuparts-ng")


def conf_dir() -> Path:
    """Where conf/ is: $PIUPARTS_CONF_DIR, the source tree, or the installed data."""
    candidates = [os.environ.get("PIUPARTS_CONF_DIR", ""),
                  str(Path(__file__).resolve().parent.parent / "conf"),
                  str(Path(sys.prefix) / "share/piuparts-ng/conf"), "/usr/share/piuparts-ng/conf"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "ignores.conf").is_file():
            return Path(candidate)
    raise UsageError("cannot find the configuration directory (conf/ignores.conf); set PIUPARTS_CONF_DIR")


def host_architecture() -> str:
    """dpkg's architecture of the host."""
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise UsageError("cannot ask dpkg for the host's architecture; give one with --arch") from None


def _mirror_and_components(value: str | None, default_components: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    if value is None:
        return None, default_components
    words = value.split()
    if not words or not re.match(r"^(https?|ftp|file)://", words[0]):
        raise UsageError(f"-m {value!r}: a mirror is a URL such as http://HOST/debian (components may follow)")
    return words[0].rstrip("/"), tuple(words[1:]) or default_components


def build_ignores(defaults: bool, paths: tuple[str, ...], regexes: tuple[str, ...], distribution: str) -> Ignores:
    """The default ignore list (unless ``defaults`` is false: --no-ignores), the
    distribution's, then the exact ``paths`` (-i) and the ``regexes`` (-I)."""
    ignores = Ignores()
    if defaults:
        conf = conf_dir()
        ignores.extend_from(conf / "ignores.conf")
        per_distro = conf / f"ignores.{distribution}.conf"
        if per_distro.is_file():
            ignores.extend_from(per_distro)
    for path in paths:
        ignores.add(re.escape(path), "-i")
    for regex in regexes:
        try:
            ignores.add(regex, "-I")
        except re.error as err:
            raise UsageError(f"-I {regex!r}: not a valid regular expression ({err})") from None
    return ignores


LEVELS = ("fail", "warn", "skip")

#: piuparts' option names for check severities ("-N|--no-symlinks" is two spellings).
PIUPARTS_SEVERITY_OPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "--fail-on-broken-symlinks": (("symlinks", "fail"),),
    "-N|--no-symlinks": (("symlinks", "skip"),),
    "--no-diversions": (("diversions", "skip"),),
    "--warn-on-leftovers-after-purge": (("leftovers", "warn"), ("conffiles", "warn")),
    "--warn-on-debsums-errors": (("others-files", "warn"),),
    "--warn-on-others": (("dependency-leftovers", "warn"),),
    "--skip-cronfiles-test": (("cron-logrotate", "skip"),),
    "--skip-logrotatefiles-test": (("cron-logrotate", "skip"),),
}


def severities(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """``--severity CHECK=LEVEL`` options, checked against the known checks."""
    from piuparts.checks import Check
    result: list[tuple[str, str]] = []
    for flag, meaning in PIUPARTS_SEVERITY_OPTIONS.items():
        if getattr(args, flag.split("|")[-1].lstrip("-").replace("-", "_")):
            result += meaning
    for item in args.severity or ():
        name, _, level = item.partition("=")
        if name not in Check.registry or level not in LEVELS:
            raise UsageError(f"--severity {item!r}: use CHECK=LEVEL with LEVEL one of {', '.join(LEVELS)} "
                             f"and CHECK one of {', '.join(Check.registry)}")
        result.append((name, level))
    return tuple(result)


#: Option -> backend it selects; at most one may be given.
BACKEND_OPTIONS = {"basetgz": ("-b", "tarball"), "pbuilder": ("-p", "tarball"),
                   "schroot": ("--schroot", "schroot"), "lvm_volume": ("--lvm-volume", "lvm"),
                   "existing_chroot": ("-e", "existing")}


def pbuilder_basetgz() -> Path:
    """pbuilder's BASETGZ: the last setting in /etc/pbuilderrc then ~/.pbuilderrc, else its default."""
    found = Path("/var/cache/pbuilder/base.tgz")
    for rc in (Path("/etc/pbuilderrc"), Path.home() / ".pbuilderrc"):
        try:
            text = rc.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            match = re.match(r"""^\s*(?:export\s+)?BASETGZ=["']?([^"'\s]+)["']?\s*$""", line)
            if match:
                found = Path(match[1])
    return found


def backend_choice(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The backend the options select, and the base tarball when it is the tarball one."""
    given = [(flag, name) for attr, (flag, name) in BACKEND_OPTIONS.items() if getattr(args, attr, None)]
    if len(given) > 1:
        raise UsageError(f"{given[0][0]} and {given[1][0]} contradict each other: each says where the "
                         "chroot comes from; give only one")
    if args.hard_link and not args.existing_chroot:
        raise UsageError("--hard-link only applies to -e/--existing-chroot")
    if not given:
        return "debootstrap", None
    name = given[0][1]
    if name != "tarball":
        return name, None
    tarball = Path(args.basetgz) if args.basetgz else pbuilder_basetgz()
    if not tarball.is_file():
        hint = " (make one with 'pbuilder create')" if args.pbuilder else ""
        raise UsageError(f"{'-p' if args.pbuilder else '-b'}: the base tarball {tarball} does not exist{hint}")
    return name, tarball.absolute()


def from_args(args: argparse.Namespace) -> RunConfig:
    """Check the parsed command line and fill in the host's defaults."""
    mirror, components = _mirror_and_components(args.mirror, ("main",))
    distribution = args.distribution[0] if args.distribution else None
    if distribution is None or mirror is None:
        host_dist, host_mirror = aptsources.default_distribution_and_mirror(
            aptsources.read_host_sources(), aptsources.host_codename())
        distribution = distribution or host_dist
        mirror = mirror or host_mirror
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", distribution):
        raise UsageError(f"-d {distribution!r}: not a distribution name (use a codename such as bookworm)")
    for line in args.extra_repo or ():
        repos.parse_extra_repo(line)
    if not re.fullmatch(r"[0-9]+[kmgKMG%]?", args.tmpfs_size):
        raise UsageError(f"--tmpfs-size {args.tmpfs_size!r}: a size such as 8g, 512m or 50% (of memory)")
    for directory in args.scriptsdir or ():
        if not Path(directory).is_dir():
            raise UsageError(f"--scriptsdir {directory}: no such directory")
    if args.install_remove_install and args.install_purge_install:
        raise UsageError("--install-remove-install and --install-purge-install contradict each other; pick one")
    if min(args.base_max_age, args.lists_max_age, args.max_command_runtime, args.prompt_timeout) <= 0:
        raise UsageError("--base-max-age, --lists-max-age, --max-command-runtime and --prompt-timeout "
                         "must be positive")
    distributions = (distribution, *(args.distribution or [])[1:])
    for name in distributions[1:]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", name):
            raise UsageError(f"-d {name!r}: not a distribution name (use a codename such as trixie)")
    backend, basetgz = backend_choice(args)
    if args.existing_chroot and not Path(args.existing_chroot, "var/lib/dpkg/status").is_file():
        raise UsageError(f"-e {args.existing_chroot}: not a Debian system (no var/lib/dpkg/status in it)")
    config = RunConfig(
        distributions=distributions, mirror=mirror,
        components=components, architecture=args.arch or host_architecture(),
        cache_dir=Path(args.cache_dir).absolute(), base_max_age=args.base_max_age * 86400,
        lists_max_age=args.lists_max_age * 3600, max_command_runtime=args.max_command_runtime,
        default_ignores=not args.no_ignores, ignore_paths=tuple(args.ignore or ()),
        ignore_regexes=tuple(args.ignore_regex or ()), severities=severities(args),
        extra_repos=tuple(args.extra_repo or ()),
        bindmounts=tuple(repos.check_bindmount(d) for d in args.bindmount or ()),
        scriptsdirs=tuple(Path(d).absolute() for d in args.scriptsdir or ()),
        tmpfs_size=None if args.no_tmpfs else args.tmpfs_size,
        install_purge_test=not args.no_install_purge_test, upgrade_test=not args.no_upgrade_test,
        install_remove_install=args.install_remove_install, install_purge_install=args.install_purge_install,
        backend=backend, basetgz=basetgz, save_tarball=Path(args.save).absolute() if args.save else None,
        schroot=args.schroot, lvm_volume=args.lvm_volume, lvm_snapshot_size=args.lvm_snapshot_size,
        existing_chroot=Path(args.existing_chroot).absolute() if args.existing_chroot else None,
        hard_link=args.hard_link, prompt_timeout=args.prompt_timeout,
        purge_dependencies=args.purge_dependencies,
        no_network=getattr(args, "no_network", False))
    config.ignores  # a bad -I regular expression is a usage error now, not in the middle of a run
    return config
