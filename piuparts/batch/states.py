"""Package states as piuparts.debian.org computes them, by one pure function.

A state is never stored: :func:`compute` derives every package's state from
the section's packages (their Depends and Pre-Depends, alternatives and
Provides) and the results recorded for their current versions, so a new
upload is waiting again by itself.

The states (piuparts' names):

- ``successfully-tested``, ``failed-testing``, ``cannot-be-tested``: a
  result says so for this version;
- ``waiting-to-be-tested``: untested, and every dependency is good
  (successfully tested, Essential, or available from outside the section);
- ``waiting-for-dependency-to-be-tested``: a dependency still waits;
- ``dependency-failed-testing``, ``dependency-cannot-be-tested``,
  ``dependency-does-not-exist``: a dependency (or one of its own) is in an
  error state, or does not exist at all; such a package is not tested;
- ``unknown``: the fixpoint could not decide (should not happen).

``blocked_by`` names the packages that decide a package's state: for the
waiting-for-dependency state the waiting-to-be-tested packages it waits
for, for the dependency-* states the root culprits (the failed package, the
missing dependency), else nothing.

Members of a dependency cycle become testable together: when every
dependency outside the cycle is good, each member is waiting-to-be-tested
(each is tested alone; apt installs the others as its dependencies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

PASSED = "successfully-tested"
FAILED = "failed-testing"
CANNOT = "cannot-be-tested"
WAITING = "waiting-to-be-tested"
WAITING_DEP = "waiting-for-dependency-to-be-tested"
DEP_FAILED = "dependency-failed-testing"
DEP_CANNOT = "dependency-cannot-be-tested"
DEP_MISSING = "dependency-does-not-exist"
UNKNOWN = "unknown"

STATES = (PASSED, FAILED, CANNOT, WAITING, WAITING_DEP, DEP_FAILED, DEP_CANNOT, DEP_MISSING, UNKNOWN)

#: The state of a package from outside the section (the base archive, not tested here).
AVAILABLE = "available"
#: What a dependency that nobody provides resolves to.
DOES_NOT_EXIST = "does-not-exist"

_GOOD = frozenset((PASSED, AVAILABLE))
_WAITING = frozenset((WAITING, WAITING_DEP))
#: A dependency's state -> what it makes of the package that needs it (as piuparts-master).
_PROPAGATE = {FAILED: DEP_FAILED, DEP_FAILED: DEP_FAILED, CANNOT: DEP_CANNOT, DEP_CANNOT: DEP_CANNOT,
              DEP_MISSING: DEP_CANNOT, DOES_NOT_EXIST: DEP_MISSING}
#: Preference among a clause's alternatives (and a virtual package's providers): lower is better.
_RANK = {PASSED: 0, AVAILABLE: 0, WAITING: 1, WAITING_DEP: 1, UNKNOWN: 2}

Result = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class Package:
    """What the states need to know of one binary package of the section."""

    name: str
    version: str
    architecture: str = "all"
    #: Pre-Depends and Depends: each clause a tuple of alternative names (versions dropped).
    depends: tuple[tuple[str, ...], ...] = ()
    provides: tuple[str, ...] = ()
    essential: bool = False
    maintainer: str = ""
    source: str = ""


class _Solver:
    """One fixpoint over one section; see :func:`compute`."""

    def __init__(self, packages: Mapping[str, Package], results: Mapping[str, str],
                 outside: Mapping[str, str]) -> None:
        self.packages = packages
        self.results = results
        self.outside = outside
        self.providers: dict[str, list[str]] = {}
        for pkg in packages.values():
            for virtual in pkg.provides:
                self.providers.setdefault(virtual, []).append(pkg.name)
        self.essential = {p.name for p in packages.values() if p.essential}
        self.state: dict[str, Result] = {}

    def name_state(self, name: str) -> tuple[str, str]:
        """(state, the package it comes from) of a dependency name: real, provided or outside."""
        candidates = [name] if name in self.packages else []
        candidates += sorted(self.providers.get(name, ()))
        if name in self.essential:
            return AVAILABLE, name
        found = [(self.state.get(c, (UNKNOWN, ()))[0], c) for c in candidates]
        if name in self.outside and not found:
            return self.outside[name], name
        if not found:
            return DOES_NOT_EXIST, name
        return _best(found)

    def clause_state(self, clause: tuple[str, ...]) -> tuple[str, str]:
        """The best alternative of a clause; does-not-exist only if none exists."""
        return _best([self.name_state(alt) for alt in clause])

    def culprits(self, state: str, dep: str) -> tuple[str, ...]:
        """Who is to blame when ``dep`` in ``state`` holds a package back."""
        if state in (FAILED, CANNOT, DOES_NOT_EXIST, WAITING):
            return (dep,)
        if state in (DEP_FAILED, DEP_CANNOT, DEP_MISSING, WAITING_DEP) and dep in self.state:
            return self.state[dep][1]
        return (dep,)

    def decide(self, pkg: Package, cycle: frozenset[str] = frozenset()) -> Result | None:
        """The package's state from its clauses, or None while a clause is undecided."""
        clauses = [self.clause_state(c) for c in pkg.depends]
        for state, dep in clauses:
            if state in _PROPAGATE:
                return _PROPAGATE[state], self.culprits(state, dep)
        rest = [(s, d) for s, d in clauses if d not in cycle]
        if any(s == UNKNOWN for s, _ in rest):
            return None
        waiting = [(s, d) for s, d in rest if s in _WAITING]
        if waiting:
            return WAITING_DEP, tuple(sorted({c for s, d in waiting for c in self.culprits(s, d)}))
        return (PASSED if self.results.get(pkg.name) == PASSED else WAITING), ()

    def seed(self) -> None:
        """Recorded failures stand whatever the dependencies say; a pass stands while its dependencies exist."""
        for name, pkg in self.packages.items():
            outcome = self.results.get(name)
            if outcome in (FAILED, CANNOT):
                self.state[name] = (outcome, ())
        for name, pkg in self.packages.items():
            if self.results.get(name) == PASSED and all(
                    self.clause_state(c)[0] != DOES_NOT_EXIST for c in pkg.depends):
                self.state[name] = (PASSED, ())

    def iterate(self) -> bool:
        """Decide what can be decided; True if anything was."""
        progress = False
        for name in sorted(self.packages):
            if name not in self.state:
                decided = self.decide(self.packages[name])
                if decided is not None:
                    self.state[name] = decided
                    progress = True
        return progress

    def unknown_edges(self) -> dict[str, set[str]]:
        """The undecided packages and the undecided packages their clauses lean on."""
        edges: dict[str, set[str]] = {}
        for name in sorted(set(self.packages) - set(self.state)):
            targets = edges.setdefault(name, set())
            for clause in self.packages[name].depends:
                state, dep = self.clause_state(clause)
                if state == UNKNOWN:
                    targets.update(alt for alt in _expand(clause, self.providers) if alt not in self.state
                                   and alt in self.packages)
                    targets.add(dep)
        return edges

    def break_cycle(self) -> bool:
        """Resolve the first cycle whose members depend on nothing else undecided."""
        edges = self.unknown_edges()
        for component in _sccs(edges):
            members = frozenset(component)
            if len(members) == 1 and next(iter(members)) not in edges.get(next(iter(members)), ()):
                continue
            if any(t not in members for m in members for t in edges[m]):
                continue
            decisions = {m: self.decide(self.packages[m], members) for m in members}
            if any(d is None for d in decisions.values()):
                continue
            self._settle(decisions)  # type: ignore[arg-type]
            return True
        return False

    def _settle(self, decisions: dict[str, Result]) -> None:
        """A cycle's members together: an error sticks to its member (the others follow it
        through the fixpoint); otherwise the whole cycle waits for what any member waits for."""
        errors = {m: d for m, d in decisions.items() if d[0] in _PROPAGATE.values()}
        if errors:
            self.state.update(errors)
            return
        waits = tuple(sorted({c for state, culprits in decisions.values() if state == WAITING_DEP
                              for c in culprits}))
        for member, decided in decisions.items():
            self.state[member] = (WAITING_DEP, waits) if waits else decided

    def run(self) -> dict[str, Result]:
        """The fixpoint: decide, break a cycle when stuck, until nothing changes."""
        self.seed()
        while self.iterate() or self.break_cycle():
            pass
        for name in self.packages:
            self.state.setdefault(name, (UNKNOWN, ()))
        return {name: self.state[name] for name in sorted(self.packages)}


def _best(found: list[tuple[str, str]]) -> tuple[str, str]:
    """The most promising (state, package): good, waiting, undecided, then the first error."""
    usable = [f for f in found if f[0] in _RANK]
    if usable:
        return min(usable, key=lambda f: _RANK[f[0]])
    existing = [f for f in found if f[0] != DOES_NOT_EXIST]
    return (existing or found)[0]


def _expand(clause: Iterable[str], providers: Mapping[str, list[str]]) -> set[str]:
    names = set(clause)
    for alt in clause:
        names.update(providers.get(alt, ()))
    return names


def _sccs(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), dependencies before their dependents."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in edges), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(sorted(component))
    return result


def compute(packages: Mapping[str, Package], results: Mapping[str, str],
            outside: Mapping[str, str] | None = None) -> dict[str, Result]:
    """Every package's ``(state, blocked_by)``.

    ``packages``: the section's packages by name (the ones tested here).
    ``results``: name -> ``successfully-tested``, ``failed-testing`` or
    ``cannot-be-tested``, the outcome that counts for the package's current
    version (absent: untested, or its result expired).
    ``outside``: names (real or virtual) available without being tested here,
    with their state: ``available`` for the base archive, or a depends-section's
    computed state.
    """
    return _Solver(packages, results, outside or {}).run()


def counts(states: Mapping[str, Result]) -> dict[str, int]:
    """How many packages are in each state (every state named, zeros included)."""
    tally = dict.fromkeys(STATES, 0)
    for state, _ in states.values():
        tally[state] += 1
    return tally


def blocking(states: Mapping[str, Result]) -> dict[str, int]:
    """For each waiting-to-be-tested package, how many packages wait for it."""
    tally = {name: 0 for name, (state, _) in states.items() if state == WAITING}
    for state, blocked_by in states.values():
        if state == WAITING_DEP:
            for name in blocked_by:
                if name in tally:
                    tally[name] += 1
    return tally


def outside_states(packages: Mapping[str, Package], states: Mapping[str, Result]) -> dict[str, str]:
    """A computed section as another section's ``outside``: its names and provides with their states."""
    found: dict[str, list[tuple[str, str]]] = {}
    for name, pkg in packages.items():
        for label in (name, *pkg.provides):
            found.setdefault(label, []).append((states[name][0], name))
    return {label: _best(entries)[0] for label, entries in found.items()}
