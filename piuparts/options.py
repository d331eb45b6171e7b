"""The command line and conf/ turned into a :class:`~piuparts.config.RunConfig`, read once;
the host's defaults (distribution, mirror, architecture) are resolved here."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

from piuparts import aptsources, distros, repos
from piuparts.aptsources import DEFAULT_CACHE_DIR, host_architecture, mirror_and_components
from piuparts.config import NON_PEDANTIC_RULES, RunConfig, build_ignores, conf_dir
from piuparts.errors import UsageError
from piuparts.log import HEADLINE

# Where these lived before; callers still find them here.
__all__ = ["DEFAULT_CACHE_DIR", "NON_PEDANTIC_RULES", "build_ignores", "conf_dir", "from_args", "own_dependencies",
           "host_architecture", "mirror_and_components"]

log = logging.getLogger("piuparts")

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
    "--no-adequate": (("adequate", "skip"),),
    "--fail-if-inadequate": (("adequate", "fail"),),
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


def from_args(args: argparse.Namespace, isolated: bool = False) -> RunConfig:
    """Check the parsed command line and fill in the host's defaults.  ``isolated``: scripts
    get a network namespace of their own unless ``--scripts-network`` is given."""
    scripts_network = getattr(args, "scripts_network", False)
    if scripts_network and getattr(args, "no_network", False):
        raise UsageError("--no-network and --scripts-network contradict each other; give one")
    check_compat(args)
    log_no_effect(args)
    mirror, components = mirror_and_components(args.mirror, ("main",))
    if mirror is None and args.defaults == "ubuntu":
        raise UsageError("-D ubuntu: give the Ubuntu mirror with -m 'URL main universe' (the host's apt "
                         "sources name a Debian one)")
    if args.defaults == "ubuntu" and args.mirror and len(args.mirror.split()) == 1:
        components = UBUNTU_COMPONENTS
    distribution = args.distribution[0] if args.distribution else None
    if distribution is None or mirror is None:
        host_dist, host_mirror = aptsources.default_distribution_and_mirror(
            aptsources.read_host_sources(), aptsources.host_codename())
        distribution = distribution or host_dist
        mirror = mirror or host_mirror
    known = distros.Distros.read(Path(args.distros_conf)) if args.distribution else distros.Distros()
    start = distros.resolve(known, distribution, mirror, components) if args.distribution else None
    if start is not None:  # a name distros.conf knows: its base suite, its mirror, its sources
        log.info("%s", start.said, extra=HEADLINE)  # on a terminal too: the name became something else
        distribution, mirror = start.base_suite, start.base_mirror
    elif not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", distribution):
        raise UsageError(f"-d {distribution!r}: not a distribution name (use a codename such as bookworm)")
    testdebs = [args.testdebs_repo] if args.testdebs_repo else []
    testdebs += [args.distupgrade_to_testdebs_from] if args.distupgrade_to_testdebs_from else []
    extra_repos = (*(args.extra_repo or ()), *(testdebs_source(value) for value in testdebs))
    for line in extra_repos:
        repos.parse_extra_repo(line)
    bindmounts = [*(args.bindmount or ()), *([str(Path(args.distupgrade_to_testdebs_from).absolute())]
                                             if args.distupgrade_to_testdebs_from else [])]
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
    upgrades, after_chain = [], start is not None
    for name in (args.distribution or [])[1:]:
        upgrade = distros.upgrade(known, name, mirror, components, after_chain)
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", upgrade.name):
            raise UsageError(f"-d {name!r}: not a distribution name (use a codename such as trixie)")
        if upgrade.said:
            log.info("%s", upgrade.said, extra=HEADLINE)
        upgrades.append(upgrade)
        after_chain = upgrade.said is not None
    distributions = (distribution, *(upgrade.name for upgrade in upgrades))
    names = ((start.hooks_name if start else distribution), *(upgrade.hooks_name for upgrade in upgrades))
    from piuparts.backends import base as backends
    backend, backend_options = backends.choose(args)
    config = RunConfig(
        distributions=distributions, mirror=mirror,
        components=components, architecture=args.arch or host_architecture(),
        cache_dir=Path(args.cache_dir).absolute(), base_max_age=args.base_max_age * 86400,
        lists_max_age=args.lists_max_age * 3600, max_command_runtime=args.max_command_runtime,
        default_ignores=not args.no_ignores, ignore_paths=tuple(args.ignore or ()),
        ignore_regexes=tuple(args.ignore_regex or ()), severities=severities(args),
        extra_repos=extra_repos, bindmounts=tuple(repos.check_bindmount(d) for d in bindmounts),
        scriptsdirs=tuple(Path(d).absolute() for d in args.scriptsdir or ()),
        tmpfs_size=None if args.no_tmpfs else args.tmpfs_size,
        install_purge_test=not args.no_install_purge_test, upgrade_test=not args.no_upgrade_test,
        install_remove_install=args.install_remove_install, install_purge_install=args.install_purge_install,
        backend=backend, backend_options=backend_options,
        save_tarball=Path(args.save).absolute() if args.save else None, prompt_timeout=args.prompt_timeout,
        purge_dependencies=args.purge_dependencies,
        no_network=getattr(args, "no_network", False) or (isolated and not scripts_network),
        warn_on_others=args.warn_on_others,
        apt_sources=(start.sources if start is not None and not args.keep_sources_list else
                     given_base_sources(args, backend, mirror, distribution, components)),
        default_release=start.target_release if start is not None else None,
        distribution_names=names if names != distributions else (),
        upgrades=tuple((u.sources, u.target_release) for u in upgrades) if any(u.sources for u in upgrades) else (),
        **instance_options(args))
    config.ignores  # a bad -I regular expression is a usage error now, not in the middle of a run
    return own_dependencies(config)


def given_base_sources(args: argparse.Namespace, backend: str, mirror: str, distribution: str,
                       components: tuple[str, ...]) -> str | None:
    """The apt sources piuparts writes into a ready-made base (-b, -e, --schroot,
    --lvm-volume...) named by -d or -m, unless --keep-sources-list: one line for
    the mirror and the first distribution.  Without -d and -m the base's own
    sources are kept (piuparts would fall back to sid and the host's mirror,
    which is rarely what a ready-made base of another release wants); the
    debootstrap base is made from -d and -m already."""
    if backend == "debootstrap" or args.keep_sources_list or not (args.mirror or args.distribution):
        return None
    return f"deb {mirror} {distribution} {' '.join(components)}\n"


def own_dependencies(config: RunConfig) -> RunConfig:
    """With options that change what instances do, the dependencies are installed
    in each test (a cached layer is made without those options), as piuparts does."""
    import dataclasses
    import logging

    from piuparts import instance_setup
    if config.dpkg_force_confdef:
        logging.getLogger("piuparts").info(
            "Warning: dpkg has been configured to use the force-confdef option. This will hide problems, "
            "see #466118.")
    if config.purge_dependencies or not instance_setup.changes_instances(config):
        return config
    logging.getLogger("piuparts").info(
        "The options change what each instance does, so the dependencies are installed (and purged) in each "
        "test, as with --purge-dependencies, not taken from a cached layer")
    return dataclasses.replace(config, purge_dependencies=True)


# -- piuparts 1.1.7's other options ----------------------------------------------

#: Options of piuparts 1.1.7 that change nothing here: attribute -> why (logged once when given).
NO_EFFECT = {
    "debfoster_options": "--debfoster-options: bases are never minimized with debfoster here (a debootstrap "
                        "minbase is minimal already); ignored",
    "minimize": "--minimize: bases are never minimized with debfoster here (a debootstrap minbase is minimal "
                "already); ignored",
    "skip_minimize": "--skip-minimize: bases are never minimized here; nothing to skip",
    "keep_env": "-k/--keep-env: instances are always removed, also after a failure (nothing leaks); --json FILE "
                "keeps every step, command and finding, -v every command's output",
    "list_installed_files": "--list-installed-files: the files a package adds are not listed here; -v logs what "
                            "each step ran and printed",
    "merged_usr": "--merged-usr: debootstrap makes merged-/usr bases by default (bookworm and later); nothing to do",
    "upgrade_before_dist_upgrade": "--upgrade-before-dist-upgrade: the distupgrade test runs one apt-get "
                                   "dist-upgrade a step here; ignored",
    "end_meta": "-B/--end-meta: the distupgrade test makes its reference (the same upgrades without the "
                "packages) in the same run here; ignored",
    "save_end_meta": "-S/--save-end-meta: the distupgrade test makes its reference in the same run here; "
                     "nothing is saved",
    "extra_old_packages": "--extra-old-packages: not supported here; the upgrade test installs the old versions "
                          "of the tested packages only",
    "distupgrade_to_testdebs": "--distupgrade-to-testdebs: the testdebs repository is an extra apt source through "
                               "every dist-upgrade here, not a last upgrade step of its own",
    "warn_on_install_over_symlink": "--warn-on-install-over-symlink: there is no check of files installed over "
                                    "symlinks here; nothing to turn into a warning",
    "shell_on_error": "--shell-on-error: no interactive shell is started here (instances are removed as the "
                      "test ends); -v and --json FILE show what failed",
    "max_command_output_size": "--max-command-output-size: a command is never stopped for its output here; the "
                               "head and the tail of its output (2 MB) are kept",
}

#: --defaults ubuntu: the components when -m names none.
UBUNTU_COMPONENTS = ("main", "universe", "restricted", "multiverse")


def log_no_effect(args: argparse.Namespace) -> None:
    """One log line for each given option that changes nothing here, saying why."""
    import logging
    log = logging.getLogger("piuparts")
    for attr, why in NO_EFFECT.items():
        if getattr(args, attr, None):
            log.info("%s", why)
    if args.warn_on_usr_move not in (None, "disabled"):
        log.info("--warn-on-usr-move %s: there is no check of files moved between / and /usr here; ignored",
                 args.warn_on_usr_move)
    if args.keyring:
        log.info("-K %s: not used: bases are made with debootstrap's default keyring, and apt inside trusts the "
                 "base's keyrings", args.keyring)
    if args.do_not_verify_signatures:
        log.info("--do-not-verify-signatures: apt inside each instance accepts unsigned repositories; the "
                 "debootstrap base is still verified")
    if args.tmpdir:
        log.info("-t %s: not needed: instances live under the cache directory (--cache-dir) and their changes in "
                 "a tmpfs (--tmpfs-size, --no-tmpfs)", args.tmpdir)


def check_compat(args: argparse.Namespace) -> None:
    """Refuse piuparts options whose values make no sense, or that cannot be honoured."""
    if args.docker_image:
        raise UsageError(f"--docker-image {args.docker_image}: not supported here; export the image "
                         "('docker export CONTAINER | gzip > base.tgz') and give it with -b base.tgz")
    if args.defaults not in (None, "debian", "ubuntu"):
        raise UsageError(f"-D {args.defaults!r}: the defaults are 'debian' or 'ubuntu'")
    if args.keyring and not Path(args.keyring).is_file():
        raise UsageError(f"-K {args.keyring}: no such file")
    if args.tmpdir and not Path(args.tmpdir).is_dir():
        raise UsageError(f"-t {args.tmpdir}: no such directory")
    if args.proxy and not re.match(r"^https?://[^/\s]+", args.proxy):
        raise UsageError(f"--proxy {args.proxy!r}: a proxy is a URL such as http://HOST:3128")
    if args.update_retries is not None and args.update_retries < 0:
        raise UsageError("--update-retries must be 0 or more")
    if args.max_command_output_size is not None and args.max_command_output_size <= 0:
        raise UsageError("--max-command-output-size must be a positive number of MB")


def testdebs_source(value: str) -> str:
    """--testdebs-repo as an apt source line: a line as it is, a URL or a directory as a flat repository."""
    if value.startswith(("deb ", "deb[")):
        return value
    if re.match(r"^(https?|ftp|file)://", value):
        return f"deb [trusted=yes] {value} ./"
    return f"deb [trusted=yes] file://{Path(value).absolute()} ./"


def comma_lists(values: list[str] | None) -> tuple[str, ...]:
    """Options given as comma-separated lists, any number of times."""
    return tuple(name for value in values or () for name in value.split(",") if name.strip())


def instance_options(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields of piuparts' options that change what happens inside each instance."""
    return {"install_recommends": args.install_recommends, "install_suggests": args.install_suggests,
            "eatmydata": not args.no_eatmydata, "dpkg_unsafe_io": not args.dpkg_noforce_unsafe_io,
            "dpkg_force_confdef": args.dpkg_force_confdef,
            "allow_unauthenticated": args.do_not_verify_signatures,
            "check_valid_until": not args.no_check_valid_until, "allow_database": args.allow_database,
            "proxy": args.proxy, "update_retries": args.update_retries or 0,
            "fake_essential_packages": comma_lists(args.fake_essential_packages),
            "pedantic_purge_test": args.pedantic_purge_test}
