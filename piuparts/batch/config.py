"""The batch configuration: an INI file in the spirit of piuparts.conf.

``[global]`` names the ``sections`` to test, the state database (``db``),
where logs go (``logs``), how many local ``workers`` run at once, the
``cache-dir`` of bases and layers and the size it is kept under during a
run (``cache-max-size``), and the free space under which it takes no new
test (``min-free-space``, 1G by default).  Every section key may also be set in
``[global]`` as a default for all sections (piuparts.conf allows that for
its reschedule keys).  One block per section, with piuparts.conf's keys
where they mean something here:

``distro``, ``mirror``, ``area``, ``components``, ``arch``,
``upgrade-test-distros``, ``depends-sections``, ``piuparts-flags``,
``precedence``, ``max-reserved``, ``reschedule-old-days``,
``reschedule-old-count``, ``expire-old-days``, ``reschedule-fail-days``,
``reschedule-fail-count``, ``expire-fail-days``, ``auto-reschedule``,
``known-problem-directory``, ``exclude-known-problems``, ``description``

and ours: ``distros-conf`` (piuparts' distros.conf, by default
/etc/piuparts/distros.conf as piuparts-master reads it: a ``distro`` or an
upgrade-test distro with a block there is its chain, and the Packages
tested are those of its ``candidates``), ``repository`` (an apt line: test that repository's packages on
top of ``distro``, whose archive provides their dependencies),
``packages`` (globs of package names), ``maintainer`` (a regular
expression searched in Maintainer and Uploaders), ``testbed-retries`` and
``testbed-retry-delay`` (seconds, doubled after each retry).

Meanings where ours differ in detail: ``precedence`` orders the sections
(smaller first; equal ones round robin), ``max-reserved`` caps a section's
tests in flight at once (piuparts: how many a slave reserves), the
reschedule and expire keys are piuparts-master's (see :mod:`.schedule`;
``expire-*-days = +N`` is relative to the matching reschedule days).

Any unknown key or bad value is one :class:`UsageError` line naming the
file, the line and the key.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from piuparts.distros import DEFAULT_PATH as DISTROS_CONF
from piuparts.errors import UsageError

DEFAULT_DB = Path("/var/lib/piuparts-ng/batch.sqlite")
DEFAULT_LOGS = Path("/var/lib/piuparts-ng/logs")
DEFAULT_CACHE = Path("/var/cache/piuparts-ng")


@dataclass(frozen=True)
class Section:
    """One section: what to test, and how."""

    name: str
    distro: str
    #: The Debian mirror (default: the one the host's apt sources name, read when the file is loaded).
    mirror: str = ""
    area: str = "main"
    components: tuple[str, ...] = ()
    arch: str | None = None
    upgrade_test_distros: tuple[str, ...] = ()
    depends_sections: tuple[str, ...] = ()
    piuparts_flags: tuple[str, ...] = ()
    precedence: int = 1
    max_reserved: int = 50
    reschedule_old_days: float = 90.0
    reschedule_old_count: int = 150
    expire_old_days: float = 0.0
    reschedule_fail_days: float = 30.0
    reschedule_fail_count: int = 25
    expire_fail_days: float = 0.0
    auto_reschedule: bool = True
    known_problem_directory: Path | None = None
    exclude_known_problems: tuple[str, ...] = ()
    description: str = ""
    repository: str | None = None
    packages: tuple[str, ...] = ()
    maintainer: re.Pattern[str] | None = None
    testbed_retries: int = 3
    testbed_retry_delay: float = 600.0
    distros_conf: Path = DISTROS_CONF
    #: Key -> (file, line) where it was set, for messages about a value.
    where: dict[str, tuple[str, int]] = field(default_factory=dict, compare=False, repr=False)

    def located(self, key: str) -> str:
        """``FILE:LINE: KEY`` of a key (for a one-line error about its value)."""
        path, line = self.where.get(key, ("?", 0))
        return f"{path}:{line}: {key}"


@dataclass(frozen=True)
class Config:
    """The whole file: global settings and the sections, in the order ``sections`` lists them."""

    path: Path
    sections: dict[str, Section]
    db: Path = DEFAULT_DB
    logs: Path = DEFAULT_LOGS
    workers: int = 1
    cache_dir: Path = DEFAULT_CACHE
    #: Keep the cache under this many bytes during the run (piuparts cleanup --prune --max-size).
    cache_max_size: int | None = None
    #: Take no new test when a disk the run writes to has less than this free (bytes).
    min_free_space: int = 1 << 30


def _words(value: str) -> tuple[str, ...]:
    return tuple(value.split())


def _flags(value: str) -> tuple[str, ...]:
    return tuple(shlex.split(value))


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _days(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _expire(value: str) -> str:
    """Checked here, resolved against the reschedule days later (``+N`` is relative)."""
    _days(value[1:] if value.startswith("+") else value)
    return value


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("yes", "true", "1", "on"):
        return True
    if lowered in ("no", "false", "0", "off"):
        return False
    raise ValueError("use yes or no")


def _mirror(value: str) -> str:
    if not re.match(r"^(https?|ftp|file)://\S+$", value):
        raise ValueError("a URL such as http://HOST/debian")
    return value.rstrip("/")


def _name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", value):
        raise ValueError("a codename such as bookworm")
    return value


def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as err:
        raise ValueError(f"not a valid regular expression ({err})") from None


def _repository(value: str) -> str:
    from piuparts import repos
    try:
        repos.parse_extra_repo(value)
    except UsageError as err:
        raise ValueError(str(err).replace("--extra-repo ", "")) from None
    return value


def _path(value: str) -> Path:
    return Path(value)


def _size(value: str) -> int:
    from piuparts.prune import parse_size
    try:
        return parse_size(value)
    except UsageError:
        raise ValueError("a size such as 500M, 20G or 1T") from None


#: Section key -> (attribute, parser).  Every one may also be given in [global].
SECTION_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "distro": ("distro", _name), "mirror": ("mirror", _mirror), "area": ("area", str),
    "components": ("components", _words), "arch": ("arch", str),
    "upgrade-test-distros": ("upgrade_test_distros", _words), "depends-sections": ("depends_sections", _words),
    "piuparts-flags": ("piuparts_flags", _flags), "precedence": ("precedence", int),
    "max-reserved": ("max_reserved", _positive), "reschedule-old-days": ("reschedule_old_days", _days),
    "reschedule-old-count": ("reschedule_old_count", _count), "expire-old-days": ("expire_old_days", _expire),
    "reschedule-fail-days": ("reschedule_fail_days", _days),
    "reschedule-fail-count": ("reschedule_fail_count", _count), "expire-fail-days": ("expire_fail_days", _expire),
    "auto-reschedule": ("auto_reschedule", _bool), "known-problem-directory": ("known_problem_directory", _path),
    "exclude-known-problems": ("exclude_known_problems", _words), "description": ("description", str),
    "repository": ("repository", _repository), "packages": ("packages", _words),
    "maintainer": ("maintainer", _regex), "testbed-retries": ("testbed_retries", _count),
    "testbed-retry-delay": ("testbed_retry_delay", _days), "distros-conf": ("distros_conf", _path),
}
GLOBAL_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "sections": ("sections", _words), "db": ("db", _path), "logs": ("logs", _path),
    "workers": ("workers", _positive), "cache-dir": ("cache_dir", _path), "cache-max-size": ("cache_max_size", _size),
    "min-free-space": ("min_free_space", _size),
}


@dataclass
class _Raw:
    """An INI block as written: key -> (value, line)."""

    line: int
    values: dict[str, tuple[str, int]] = field(default_factory=dict)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _parse_ini(path: Path, text: str) -> dict[str, _Raw]:
    """Blocks of ``key = value`` lines; indented lines continue the value above."""
    blocks: dict[str, _Raw] = {}
    current: _Raw | None = None
    last_key: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if line[0].isspace() and current is not None and last_key is not None:
            value, first = current.values[last_key]
            current.values[last_key] = ((value + " " + stripped).strip(), first)
            continue
        header = re.fullmatch(r"\[([^\]]+)\]", stripped)
        if header:
            name = header[1].strip()
            if name in blocks:
                raise UsageError(f"{path}:{number}: [{name}] is given twice; merge the two blocks")
            current = blocks[name] = _Raw(number)
            last_key = None
            continue
        key, sep, value = stripped.partition("=")
        if not sep or current is None:
            raise UsageError(f"{path}:{number}: expected '[SECTION]' or 'key = value', got {stripped!r}")
        last_key = key.strip().lower()
        current.values[last_key] = (_unquote(value.strip()), number)
    return blocks


def _convert(path: Path, key: str, value: str, line: int,
             table: dict[str, tuple[str, Callable[[str], Any]]]) -> tuple[str, Any]:
    if key not in table and key in GLOBAL_KEYS:
        raise UsageError(f"{path}:{line}: {key}: a [global] key; move it there")
    if key not in table:
        known = ", ".join(sorted(table))
        raise UsageError(f"{path}:{line}: {key}: unknown key (known keys: {known})")
    attribute, parser = table[key]
    try:
        return attribute, parser(value)
    except ValueError as err:
        raise UsageError(f"{path}:{line}: {key}: bad value {value!r}: {err}") from None


def _resolve_expire(values: dict[str, Any]) -> None:
    """``expire-*-days = +N`` is relative to the matching reschedule days."""
    for kind in ("old", "fail"):
        key = f"expire_{kind}_days"
        raw = values.get(key)
        if isinstance(raw, str):
            base = values.get(f"reschedule_{kind}_days", getattr(Section, f"reschedule_{kind}_days"))
            values[key] = base + float(raw[1:]) if raw.startswith("+") else float(raw)


def _section(path: Path, name: str, raw: _Raw, defaults: dict[str, tuple[Any, tuple[str, int]]]) -> Section:
    values = {attr: value for attr, (value, _) in defaults.items()}
    where = _defaults_where(defaults)
    for key, (value, line) in raw.values.items():
        attribute, converted = _convert(path, key, value, line, SECTION_KEYS)
        values[attribute] = converted
        where[key] = (str(path), line)
    if "distro" not in values:
        raise UsageError(f"{path}:{raw.line}: [{name}]: no distro key; say which distribution "
                         "the packages are tested in (distro = bookworm)")
    _resolve_expire(values)
    if not values.get("mirror"):
        values["mirror"] = _host_mirror(path, raw.line, name)
    for key in ("known_problem_directory", "distros_conf"):  # relative to the file that names them
        given = values.get(key)
        if given is not None and not given.is_absolute():
            values[key] = (path.parent / given).resolve()
    return Section(name=name, where=where, **values)


def _host_mirror(path: Path, line: int, name: str) -> str:
    """The mirror the host's apt sources name, for a section that names none."""
    from piuparts import aptsources
    try:
        _, mirror = aptsources.default_distribution_and_mirror(aptsources.read_host_sources(),
                                                               aptsources.host_codename())
    except UsageError as err:
        raise UsageError(f"{path}:{line}: [{name}]: no mirror key, and {err}; give one (mirror = URL)") from None
    return mirror


def _defaults_where(defaults: dict[str, tuple[Any, tuple[str, int]]]) -> dict[str, tuple[str, int]]:
    by_attribute = {attr: key for key, (attr, _) in SECTION_KEYS.items()}
    return {by_attribute[attr]: where for attr, (_, where) in defaults.items()}


def load(path: Path) -> Config:
    """Read and check ``path``; a one-line UsageError naming file, line and key for any mistake."""
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"{path}: cannot read the batch configuration: {err.strerror}") from None
    blocks = _parse_ini(path, text)
    if "global" not in blocks:
        raise UsageError(f"{path}: no [global] block; it names the sections to test (sections = NAME...)")
    glob = blocks.pop("global")
    settings: dict[str, Any] = {}
    defaults: dict[str, tuple[Any, tuple[str, int]]] = {}
    for key, (value, line) in glob.values.items():
        table = GLOBAL_KEYS if key in GLOBAL_KEYS else SECTION_KEYS
        attribute, converted = _convert(path, key, value, line, table)
        if table is GLOBAL_KEYS:
            settings[attribute] = converted
        else:
            defaults[attribute] = (converted, (str(path), line))
    names = settings.pop("sections", None)
    if not names:
        raise UsageError(f"{path}:{glob.line}: sections: missing; list the sections to test (sections = NAME...)")
    sections_line = glob.values["sections"][1]
    sections: dict[str, Section] = {}
    for name in names:
        if name not in blocks:
            raise UsageError(f"{path}:{sections_line}: sections: [{name}] is listed but has no block")
        sections[name] = _section(path, name, blocks[name], defaults)
    for name, extra in blocks.items():
        if name not in sections:
            raise UsageError(f"{path}:{extra.line}: [{name}] is not listed in [global] sections; "
                             "add it there or remove the block")
    for section in sections.values():
        for dep in section.depends_sections:
            if dep not in sections or dep == section.name:
                raise UsageError(f"{section.located('depends-sections')}: bad value {dep!r}: "
                                 "not another section of this file")
    base = path.parent
    for key in ("db", "logs", "cache_dir"):
        if key in settings and not settings[key].is_absolute():
            settings[key] = (base / settings[key]).resolve()
    return Config(path=path, sections=sections, **settings)
