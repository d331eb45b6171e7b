"""What the pages show, as plain objects the templates only loop over: a
site of sections, runs and changes, a package with its tests, each test's
scenarios, steps and findings, and the small formatting helpers the
templates use.  :mod:`.data` fills them from the state database.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Mapping

from piuparts.batch import states as st
from piuparts.batch.db import CiRun

DAY = 86400
_KIND_STATE = {"pass": st.PASSED, "fail": st.FAILED, "internal": st.CANNOT}


def prefix(name: str) -> str:
    """piuparts.debian.org's directory of a name: ``libf`` for libfoo, else its first letter."""
    return name[:4] if name.startswith("lib") and len(name) > 3 else name[:1] or "_"


def utc(stamp: float | None) -> str:
    """``2026-12-01 09:54`` (UTC), or an empty string."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp)) if stamp else ""


def iso(stamp: float) -> str:
    """RFC 3339, for the feed."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def seconds(value: float | None) -> str:
    """``0.42 s``, ``12 s``, ``3 min 5 s``."""
    if value is None:
        return ""
    if value < 10:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.0f} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


def age(value: float | None) -> str:
    """An age in seconds as ``3 h`` or ``2 days``."""
    if value is None:
        return ""
    if value < 3600:
        return f"{value / 60:.0f} min"
    if value < 2 * DAY:
        return f"{value / 3600:.0f} h"
    return f"{value / DAY:.0f} days"


@dataclass(frozen=True)
class Person:
    """A maintainer as a Maintainer field names them."""

    name: str
    email: str

    @property
    def slug(self) -> str:
        """The page's file name: the address, made safe for a file name."""
        return re.sub(r"[^a-z0-9@._+-]", "_", (self.email or self.name).lower()) or "_"

    @property
    def url(self) -> str:
        """Site-relative path of the maintainer's page."""
        return f"maintainer/{prefix(self.slug)}/{self.slug}.html"

    @property
    def label(self) -> str:
        """``Name <address>`` as written."""
        return f"{self.name} <{self.email}>" if self.email else self.name


def person(field_value: str) -> Person:
    """The first person of a Maintainer field."""
    match = re.match(r"\s*(.*?)\s*<([^<>]*)>\s*$", field_value)
    if match:
        return Person(match[1], match[2].strip())
    return Person(field_value.strip() or "(no maintainer)", "")


@dataclass
class Finding:
    """A finding as a table row."""

    severity: str
    check: str
    subject: str
    message: str
    owners: str
    blame: str


@dataclass
class Command:
    """A command a step ran."""

    cmdline: str
    returncode: int
    elapsed: str
    timed_out: bool


@dataclass
class Step:
    """A step of a scenario."""

    name: str
    ok: bool
    elapsed: str
    message: str
    commands: list[Command]


@dataclass
class Scenario:
    """A scenario of a result."""

    name: str
    verdict: str
    skipped: str | None
    steps: list[Step]
    findings: list[Finding]


@dataclass
class Details:
    """What a result's JSON adds to its row, as its package's page shows it."""

    host: str
    base: str
    layer: str
    upgrade: str
    scenarios: list[Scenario]
    data: dict[str, Any]


def _finding(data: Mapping[str, Any]) -> Finding:
    owners = data.get("owners")
    return Finding(str(data.get("severity", "")), str(data.get("check", "")), str(data.get("subject", "")),
                   str(data.get("message", "")),
                   "—" if owners is None else ", ".join(owners) if owners else "not owned",
                   ", ".join(data.get("blame") or ()))


def _step(data: Mapping[str, Any]) -> Step:
    commands = [Command(str(c.get("cmdline", "")), int(c.get("returncode", 0)), seconds(c.get("elapsed")),
                        bool(c.get("timed_out"))) for c in data.get("commands", [])]
    return Step(str(data.get("name", "")), bool(data.get("ok", True)), seconds(data.get("elapsed")),
                str(data.get("message", "")), commands)


def _scenario(data: Mapping[str, Any]) -> Scenario:
    steps = [_step(s) for s in data.get("steps", [])]
    findings = [_finding(f) for f in data.get("findings", [])]
    skipped = data.get("skipped")
    failed = any(not s.ok for s in steps) or any(f.severity == "fail" for f in findings)
    return Scenario(str(data.get("name", "")), "SKIP" if skipped else "FAIL" if failed else "PASS",
                    skipped, steps, findings)


def _upgrade(data: Mapping[str, Any], scenarios: list[Scenario]) -> str:
    """Where the tested version was reached from: older versions, or the distributions."""
    distributions = data.get("distributions") or []
    for scenario in scenarios:
        if scenario.name == "distupgrade" and not scenario.skipped:
            return "installed in " + " -> dist-upgraded to ".join(distributions)
        if scenario.name == "install-upgrade-purge":
            if scenario.skipped:
                return f"no upgrade tested: {scenario.skipped}"
            old = [w for step in scenario.steps if step.name == "install old"
                   for c in step.commands for w in c.cmdline.split() if "=" in w and not w.startswith("-")]
            where = data.get("distribution") or ""
            return f"from {', '.join(old) or 'the older version'} ({where} and its extra repositories)"
    return "no upgrade tested"


def _base(data: Mapping[str, Any]) -> str:
    base = data.get("base")
    if not isinstance(base, dict):
        return str(base or "")
    label = " ".join(str(base[k]) for k in ("backend", "distribution", "identity", "key") if base.get(k))
    if base.get("age_seconds") is not None:
        label += f" (built {age(base['age_seconds'])} before)"
    return label.strip() or data.get("backend", "")


def _layer(data: Mapping[str, Any]) -> str:
    layer = data.get("dependency_layer")
    if not isinstance(layer, dict):
        return ""
    return str(layer.get("layer") or "")


def details(data: dict[str, Any]) -> Details:
    """A result's JSON as shown."""
    scenarios = [_scenario(s) for s in data.get("scenarios", [])]
    return Details(str(data.get("host", "")), _base(data), _layer(data), _upgrade(data, scenarios), scenarios, data)


@dataclass(eq=False)
class Test:
    """One result row, for display.  Its JSON stays in the database until a page that shows it
    is written (:attr:`details`, let go again with :meth:`forget`): a whole archive's results
    parsed at once take gigabytes, and most pages of a site made again do not change."""

    id: int
    section: str
    package: str
    version: str
    architecture: str
    kind: str
    verdict: str
    started: float
    duration: float
    worker: str
    run_id: int | None
    error: str | None
    problems: tuple[str, ...]
    tool_version: str
    log_source: str | None
    #: The result's JSON as the database holds it, or what reads it there given the id.
    raw: str | Callable[[int], str] = field(repr=False, default="{}")

    @cached_property
    def details(self) -> Details:
        """Its JSON, parsed (kept until :meth:`forget`)."""
        return details(json.loads(self.raw if isinstance(self.raw, str) else self.raw(self.id)))

    def forget(self) -> None:
        """Let the parsed JSON go."""
        self.__dict__.pop("details", None)

    @property
    def key(self) -> tuple[Any, ...]:
        """What identifies the row: a result row is never changed once written, so these
        say what its JSON holds too (the site's fingerprints rest on it)."""
        return (self.id, self.started, self.duration, self.kind, self.verdict, self.version, self.log_source)

    @property
    def when(self) -> str:
        """When it started (UTC)."""
        return utc(self.started)

    @property
    def took(self) -> str:
        """How long it took."""
        return seconds(self.duration)

    @property
    def log_stem(self) -> str | None:
        """Site-relative path of its log without suffix (``.log.gz``, ``.log.txt``)."""
        if not self.log_source:
            return None
        return f"{self.section}/log/{prefix(self.package)}/{self.package}/{self.id}"

    @property
    def state(self) -> str | None:
        """The state this result alone gives (None: a test-bed or usage error, retried)."""
        return _KIND_STATE.get(self.kind)


@dataclass
class Binary:
    """A binary package of a section, with its state and results."""

    section: str
    name: str
    version: str
    source: str
    maintainer: Person
    description: str
    state: str
    blocked_by: list[str]
    #: How many packages this one holds back (blocked states) or that wait on it (waiting).
    blocks: int
    problems: tuple[str, ...]
    reason: str | None
    tests: list[Test]
    #: Why it is shown though its archive no longer has it ("": the archive has it).
    gone: str = ""

    @property
    def url(self) -> str:
        """Site-relative path of its page."""
        return package_url(self.section, self.name)

    @property
    def last(self) -> Test | None:
        """Its newest result."""
        return self.tests[-1] if self.tests else None


def package_url(section: str, name: str, suffix: str = ".html") -> str:
    """Site-relative path of a package's page (or JSON) in a section."""
    return f"{section}/package/{prefix(name)}/{name}{suffix}"


def source_url(source: str) -> str:
    """Site-relative path of a source package's page."""
    return f"source/{prefix(source)}/{source}.html"


@dataclass
class Problem:
    """A known problem in a section: its help and the packages it names."""

    name: str
    header: str
    helptext: str
    issue: bool
    packages: list[Binary]

    @property
    def url(self) -> str:
        """Site-relative path (under its section)."""
        return f"problem/{self.name}.html"


@dataclass
class Section:
    """A section: its binaries, counts, problems and counts over time."""

    name: str
    description: str
    distro: str
    repository: str | None
    binaries: dict[str, Binary]
    counts: dict[str, int]
    problems: dict[str, Problem]
    days: list[float]
    series: dict[str, list[int]]

    @property
    def size(self) -> int:
        """How many packages its archive has (a listed section also shows some it no longer has)."""
        return sum(1 for b in self.binaries.values() if not b.gone)

    def by_state(self, state: str) -> list[Binary]:
        """Its binaries in ``state``, by name (the ones its archive still has)."""
        return [b for b in self.binaries.values() if b.state == state and not b.gone]


@dataclass
class Run:
    """A run (of ``piuparts batch`` or ``piuparts ci``): what it tested."""

    id: int
    kind: str
    started: float
    ended: float | None
    host: str
    tool_version: str
    status: str
    tests: list[Test]
    #: Result id -> the version tested before, in its section ("" for a first test).
    previous: dict[int, str]
    #: A CI run's repository, what changed in it and its own reports (None: a batch run).
    ci: CiRun | None = None

    @property
    def url(self) -> str:
        """Site-relative path of its page."""
        return f"run/{self.id}.html"

    @property
    def changed(self) -> dict[str, int]:
        """A CI run's changes by kind as the pages word them (new, upgraded, rebuilt, removed)."""
        tally: dict[str, int] = {}
        for change in self.ci.changes if self.ci else ():
            word = CHANGE_WORDS.get(change.get("kind", ""), change.get("kind", ""))
            tally[word] = tally.get(word, 0) + 1
        return tally

    @property
    def verdicts(self) -> dict[str, int]:
        """How many tests passed, failed, or ended in an error."""
        tally = {"PASS": 0, "FAIL": 0, "ERROR": 0}
        for test in self.tests:
            tally[test.verdict] = tally.get(test.verdict, 0) + 1
        return tally


#: How a CI run's change kinds read on the pages.
CHANGE_WORDS = {"new": "new", "changed": "upgraded", "rebuilt": "rebuilt", "removed": "removed"}


@dataclass
class Change:
    """A change for the feed: a package went from pass to fail or back, or a new version of it had its first verdict."""

    section: str
    package: str
    before: Test
    after: Test

    @property
    def title(self) -> str:
        """``foo 1.0-2: FAIL -> PASS in team``; ``foo 1.0-3 (was 1.0-2): PASS -> PASS in team`` after an upload."""
        was = f" (was {self.before.version})" if self.before.version != self.after.version else ""
        return (f"{self.package} {self.after.version}{was}: {self.before.verdict} -> {self.after.verdict} "
                f"in {self.section}")


@dataclass
class Site:
    """Everything the pages show."""

    generated: float
    sections: dict[str, Section]
    runs: list[Run]
    changes: list[Change]
    #: Sections that could not be read: name -> why.
    unreadable: dict[str, str] = field(default_factory=dict)
    #: What is being tested while the site is made: (section, package, version, worker, since).
    in_flight: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    #: The index page's heading, and what the pages say they are made from.
    title: str = "Package test results"
    origin: str = "the batch state database"

    def binaries(self) -> Iterable[Binary]:
        """Every binary of every section."""
        for section in self.sections.values():
            yield from section.binaries.values()


# what a caller lists (piuparts ci --html), without a batch configuration


@dataclass(frozen=True)
class Listed:
    """A package as a :class:`Listing` names it: what its archive says of it."""

    name: str
    version: str
    source: str = ""
    maintainer: str = ""
    description: str = ""
    #: Why it is listed though the archive no longer has it ("": the archive has it).
    gone: str = ""


@dataclass(frozen=True)
class Listing:
    """A section described by its caller instead of read from a batch configuration: its packages
    now (dependencies are not known, so a package's state is its own results' alone)."""

    name: str
    description: str
    distro: str
    repository: str | None
    packages: Mapping[str, Listed]
