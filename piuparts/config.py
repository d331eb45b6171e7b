"""RunConfig: everything one test run needs to know, as plain, versioned data.

A RunConfig is built from the command line (:func:`piuparts.options.from_args`),
from a batch section, or from the JSON a coordinator sends a remote worker.
Host defaults (distribution, mirror, architecture) are resolved before it
is made and recorded in it, so a worker on another machine runs exactly
what was asked.  :meth:`RunConfig.from_json` refuses unknown keys, values
of the wrong type and other schema versions with one line saying which.
"""

from __future__ import annotations

import os
import re
import sys
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from piuparts.errors import UsageError
from piuparts.state import Ignores

#: The version of RunResult's JSON form; a reader of another version refuses
#: the data instead of guessing.
SCHEMA_VERSION = 1
#: The version of RunConfig's JSON form (2: a backend's own settings moved into
#: ``backend_options``; 3: ``default_release``; 4: ``distribution_names`` and
#: ``upgrades``), refused in the same way.
CONFIG_VERSION = 4


#: Each backend's check of its own settings (``RunConfig.backend_options``), by
#: backend name; :class:`piuparts.backends.base.Backend` registers every backend
#: here as it is defined, so this module needs nothing from the backends.
BACKEND_SETTINGS: dict[str, Callable[[Any], dict[str, Any]]] = {}


def conf_dir() -> Path:
    """Where conf/ is: $PIUPARTS_CONF_DIR, the source tree, or the installed data."""
    candidates = [os.environ.get("PIUPARTS_CONF_DIR", ""),
                  str(Path(__file__).resolve().parent.parent / "conf"),
                  str(Path(sys.prefix) / "share/piuparts-ng/conf"), "/usr/share/piuparts-ng/conf"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "ignores.conf").is_file():
            return Path(candidate)
    raise UsageError("cannot find the configuration directory (conf/ignores.conf); set PIUPARTS_CONF_DIR")


#: Default rules that --pedantic-purge-test leaves out, as piuparts does.
NON_PEDANTIC_RULES = ("/tmp/.*",)


def build_ignores(defaults: bool, paths: tuple[str, ...], regexes: tuple[str, ...], distribution: str,
                  pedantic: bool = False) -> Ignores:
    """The default ignore list (unless ``defaults`` is false: --no-ignores), the
    distribution's, then the exact ``paths`` (-i) and the ``regexes`` (-I).
    ``pedantic`` (--pedantic-purge-test) leaves out the default rule for /tmp."""
    ignores = Ignores()
    if defaults:
        conf = conf_dir()
        ignores.extend_from(conf / "ignores.conf")
        per_distro = conf / f"ignores.{distribution}.conf"
        if per_distro.is_file():
            ignores.extend_from(per_distro)
        if pedantic:
            ignores = Ignores((r.pattern, r.source) for r in ignores.rules if r.pattern not in NON_PEDANTIC_RULES)
    for path in paths:
        ignores.add(re.escape(path), "-i")
    for regex in regexes:
        try:
            ignores.add(regex, "-I")
        except re.error as err:
            raise UsageError(f"-I {regex!r}: not a valid regular expression ({err})") from None
    return ignores


@dataclass(frozen=True)
class RunConfig:
    """One run's settings, complete and checked (piuparts' option names where they exist)."""

    #: -d: the first is where the test runs; more make the distupgrade scenario.
    distributions: tuple[str, ...]
    mirror: str
    components: tuple[str, ...]
    architecture: str
    cache_dir: Path
    #: Seconds.
    base_max_age: float = 7 * 86400.0
    lists_max_age: float = 86400.0
    max_command_runtime: float = 1800.0
    prompt_timeout: float = 60.0
    #: The ignore rules: conf/'s default lists (unless --no-ignores), then -i paths and -I regexes.
    default_ignores: bool = True
    ignore_paths: tuple[str, ...] = ()
    ignore_regexes: tuple[str, ...] = ()
    #: Check name -> fail / warn / skip, from --severity and piuparts' named options.
    severities: tuple[tuple[str, str], ...] = ()
    extra_repos: tuple[str, ...] = ()
    bindmounts: tuple[Path, ...] = ()
    scriptsdirs: tuple[Path, ...] = ()
    tmpfs_size: str | None = "50%"
    install_purge_test: bool = True
    upgrade_test: bool = True
    #: The upgrade test also takes archive names with a version (NAME=VERSION): from the newest
    #: older version apt knows to VERSION (``piuparts ci`` on remote workers, which get names, not .debs).
    upgrade_named_versions: bool = False
    install_remove_install: bool = False
    install_purge_install: bool = False
    #: Install and purge the dependencies in each test instead of taking them from a cached layer.
    purge_dependencies: bool = False
    #: piuparts' --warn-on-others: what the dependencies are blamed for warns instead of failing.
    warn_on_others: bool = False
    #: Which backend makes the chroots, and the values of the options it declares
    #: (:class:`piuparts.backends.Option`: dest -> a string or a flag; checked by the backend).
    backend: str = "debootstrap"
    backend_options: dict[str, Any] = field(default_factory=dict, hash=False)
    #: -s: write the prepared base as a tarball.
    save_tarball: Path | None = None
    #: piuparts' options that change what happens inside each instance
    #: (see piuparts.instance_setup): apt's and dpkg's settings there,
    #: services allowed to start, packages added before the test.
    install_recommends: bool = False
    install_suggests: bool = False
    eatmydata: bool = True
    dpkg_unsafe_io: bool = True
    dpkg_force_confdef: bool = False
    #: --do-not-verify-signatures: apt inside accepts unsigned repositories.
    allow_unauthenticated: bool = False
    check_valid_until: bool = True
    allow_database: bool = False
    #: --proxy: the HTTP proxy apt inside goes through.
    proxy: str | None = None
    #: --update-retries: how often apt-get update inside is tried again.
    update_retries: int = 0
    fake_essential_packages: tuple[str, ...] = ()
    #: --pedantic-purge-test: what is left in /tmp counts too.
    pedantic_purge_test: bool = False
    #: --no-network: maintainer scripts get a network namespace with only a loopback.
    no_network: bool = False
    #: The /etc/apt/sources.list each instance gets, when -d or -m name the archive for a base
    #: given ready-made (-b, -e, --schroot...) and --keep-sources-list is not given: piuparts'
    #: rewrite of the base's sources (None: the base's own sources are kept).
    apt_sources: str | None = None
    #: distros.conf's target-release of the first -d: APT::Default-Release inside (piuparts' -t).
    default_release: str | None = None
    #: PIUPARTS_DISTRIBUTION in each of ``distributions``, where distros.conf names them
    #: otherwise (empty: the names in ``distributions``).
    distribution_names: tuple[str, ...] = ()
    #: For each distribution after the first, distros.conf's (sources, target-release): the
    #: instance's whole sources.list there and what apt installs from once there; empty, or
    #: ("", ""), where the dist-upgrade renames the suite of the entries the instance has.
    upgrades: tuple[tuple[str, str], ...] = ()
    version: int = CONFIG_VERSION

    @property
    def distribution(self) -> str:
        """The distribution the test starts in."""
        return self.distributions[0]

    def hooks_name(self, index: int) -> str:
        """PIUPARTS_DISTRIBUTION in ``distributions[index]``."""
        return self.distribution_names[index] if self.distribution_names else self.distributions[index]

    def upgrade(self, index: int) -> tuple[str, str]:
        """The (sources, target-release) of the dist-upgrade to ``distributions[index]``, see ``upgrades``."""
        return self.upgrades[index - 1] if self.upgrades else ("", "")

    @cached_property
    def ignores(self) -> Any:
        """The :class:`piuparts.state.Ignores` these settings make (built once)."""
        return build_ignores(self.default_ignores, self.ignore_paths, self.ignore_regexes, self.distribution,
                             pedantic=self.pedantic_purge_test)

    def to_json(self) -> dict[str, Any]:
        """Plain data: paths as strings, tuples as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> "RunConfig":
        """The RunConfig ``data`` describes; UsageError naming the first thing wrong."""
        if not isinstance(data, dict):
            raise UsageError(f"a run configuration is a JSON object, not {type(data).__name__}")
        if data.get("version") != CONFIG_VERSION:
            raise UsageError(f"run configuration version {data.get('version')!r} is not the version this "
                             f"piuparts-ng reads ({CONFIG_VERSION}); run the same version everywhere")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"run configuration: unknown key {unknown[0]!r}")
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise UsageError(f"run configuration: {missing[0]!r} is missing")
        values = {name: _typed(name, value, hints[name]) for name, value in data.items()}
        check = BACKEND_SETTINGS.get(values.get("backend", "debootstrap"))
        if check is None:
            raise UsageError(f"run configuration: unknown backend {values.get('backend')!r}; known: "
                             f"{', '.join(sorted(BACKEND_SETTINGS))}")
        values["backend_options"] = check(values.get("backend_options", {}))
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _typed(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the type ``hint`` and converted (lists to tuples, strings to paths)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _typed(name, value, inner)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"run configuration: {name!r} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(name, v, args[0]) for v in value)
        if len(value) != len(args):
            raise UsageError(f"run configuration: {name!r} must have {len(args)} items")
        return tuple(_typed(name, v, a) for v, a in zip(value, args))
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UsageError(f"run configuration: {name!r} must be a JSON object")
        return dict(value)
    if hint is Path:
        if not isinstance(value, str) or not value.startswith("/"):
            raise UsageError(f"run configuration: {name!r} must be an absolute path")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and type(value) is hint:
        return value
    raise UsageError(f"run configuration: {name!r} must be of type {getattr(hint, '__name__', hint)}, "
                     f"not {type(value).__name__}")


def config_from_values(values: dict[str, Any]) -> RunConfig:
    """A RunConfig from typed values (tuples, paths...), checked as :meth:`RunConfig.from_json` checks JSON."""
    data = {f.name: _plain(f.default_factory()) for f in fields(RunConfig)
            if f.default_factory is not MISSING and f.name not in values}
    return RunConfig.from_json({**data, **{k: _plain(v) for k, v in values.items()}, "version": CONFIG_VERSION})


def replace_config(config: RunConfig, **changes: Any) -> RunConfig:
    """A copy of ``config`` with ``changes`` (checked as from_json checks them)."""
    return RunConfig.from_json({**config.to_json(), **{k: _plain(v) for k, v in changes.items()}})

