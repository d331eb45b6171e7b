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
from typing import Mapping

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
_RANK = {PASSED: 0, AVAILABLE: 0, WAITING: 1, WAITING_DEP: 1, "cycle": 1, UNKNOWN: 2}

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


#: What an undecided member of the cycle being solved counts as, for its fellow members.
_CYCLE = "cycle"
_ERRORS = frozenset(_PROPAGATE.values())


class _Solver:
    """One pass over one section; see :func:`compute`.

    The dependency graph's strongly connected components are solved in
    topological order, dependencies first, so each package is decided once,
    with everything outside its own cycle already decided.
    """

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
        self.state: dict[str, str] = {}
        self.culprits: dict[str, frozenset[str]] = {}
        self._candidates: dict[str, list[str]] = {}

    def candidates(self, name: str) -> list[str]:
        """The section's packages that satisfy a dependency on ``name`` (itself, its providers)."""
        found = self._candidates.get(name)
        if found is None:  # asked for every clause of every package: once a name
            found = self._candidates[name] = ([name] if name in self.packages else []) + \
                sorted(self.providers.get(name, ()))
        return found

    def name_state(self, name: str, cycle: frozenset[str]) -> tuple[str, str]:
        """(state, the package it comes from) of a dependency name: real, provided or outside."""
        if name in self.essential:
            return AVAILABLE, name
        found = []
        for candidate in self.candidates(name):
            if candidate in self.state:
                found.append((self.state[candidate], candidate))
            else:
                found.append((_CYCLE if candidate in cycle else UNKNOWN, candidate))
        if name in self.outside:
            found.append((self.outside[name], name))
        return _best(found) if found else (DOES_NOT_EXIST, name)

    def blame(self, state: str, dep: str) -> frozenset[str]:
        """Who holds a package back when ``dep`` is in ``state``."""
        if state in _ERRORS or state == WAITING_DEP:
            return self.culprits.get(dep, frozenset((dep,)))
        return frozenset((dep,))

    def decide(self, pkg: Package, cycle: frozenset[str]) -> tuple[str, frozenset[str]]:
        """The package's state from its clauses; its fellow cycle members count as pending."""
        waits: set[str] = set()
        for clause in pkg.depends:
            state, dep = _best([self.name_state(alt, cycle) for alt in clause])
            if state in _PROPAGATE:
                return _PROPAGATE[state], self.blame(state, dep)
            if state in _WAITING:
                waits |= self.blame(state, dep)
        if waits:
            return WAITING_DEP, frozenset(waits)
        return (PASSED if self.results.get(pkg.name) == PASSED else WAITING), frozenset()

    def seed(self) -> None:
        """Recorded failures stand whatever the dependencies say; a pass stands while its dependencies exist."""
        nothing: frozenset[str] = frozenset()
        for name, pkg in self.packages.items():
            outcome = self.results.get(name)
            if outcome in (FAILED, CANNOT):
                self.state[name] = outcome
            elif outcome == PASSED and all(any(self.candidates(a) or a in self.outside or a in self.essential
                                               for a in clause) for clause in pkg.depends):
                self.state[name] = PASSED
        self.culprits = {name: nothing for name in self.state}

    def edges(self) -> dict[str, set[str]]:
        """Package -> the section's packages any of its clauses may use."""
        return {name: {c for clause in pkg.depends for alt in clause if alt not in self.essential
                       for c in self.candidates(alt)} for name, pkg in self.packages.items()}

    def solve(self, component: list[str]) -> None:
        """Decide one strongly connected component: errors member by member, then the rest together."""
        members = frozenset(component)
        todo = [m for m in component if m not in self.state]
        changed = True
        while changed:
            changed = False
            for member in [m for m in todo if m not in self.state]:
                state, culprits = self.decide(self.packages[member], members)
                if state in _ERRORS:
                    self.state[member], self.culprits[member] = state, culprits
                    changed = True
        rest = [m for m in todo if m not in self.state]
        decisions = {m: self.decide(self.packages[m], members) for m in rest}
        waits = frozenset().union(*(c for s, c in decisions.values() if s == WAITING_DEP)) - members
        for member, (state, culprits) in decisions.items():
            if waits:
                state, culprits = WAITING_DEP, waits
            self.state[member], self.culprits[member] = state, culprits

    def run(self) -> dict[str, Result]:
        """Seed, then every component in dependency order."""
        self.seed()
        for component in _sccs(self.edges()):
            self.solve(component)
        return {name: (self.state.get(name, UNKNOWN), tuple(sorted(self.culprits.get(name, ()))))
                for name in sorted(self.packages)}


def _best(found: list[tuple[str, str]]) -> tuple[str, str]:
    """The most promising (state, package): good, waiting, undecided, then the first error."""
    usable = [f for f in found if f[0] in _RANK]
    if usable:
        return min(usable, key=lambda f: _RANK[f[0]])
    existing = [f for f in found if f[0] != DOES_NOT_EXIST]
    return (existing or found)[0]


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
