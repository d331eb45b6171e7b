"""states.compute: piuparts.debian.org's states from packages and results."""

from __future__ import annotations

from piuparts.batch import states as st
from piuparts.batch.states import Package


def pkgs(*items: Package) -> dict[str, Package]:
    return {p.name: p for p in items}


def dep(*clauses: str) -> tuple[tuple[str, ...], ...]:
    """``dep("a | b", "c")`` -> (("a", "b"), ("c",))."""
    return tuple(tuple(alt.strip() for alt in clause.split("|")) for clause in clauses)


def test_untested_without_dependencies_waits() -> None:
    assert st.compute(pkgs(Package("a", "1")), {}) == {"a": (st.WAITING, ())}


def test_results_give_the_tested_states() -> None:
    packages = pkgs(Package("ok", "1"), Package("bad", "1"), Package("evil", "1"))
    result = st.compute(packages, {"ok": st.PASSED, "bad": st.FAILED, "evil": st.CANNOT})
    assert result == {"bad": (st.FAILED, ()), "evil": (st.CANNOT, ()), "ok": (st.PASSED, ())}


def test_chain_waits_for_its_dependency_then_is_testable() -> None:
    packages = pkgs(Package("top", "1", depends=dep("mid")), Package("mid", "1", depends=dep("base")),
                    Package("base", "1"))
    before = st.compute(packages, {})
    assert before == {"base": (st.WAITING, ()), "mid": (st.WAITING_DEP, ("base",)),
                      "top": (st.WAITING_DEP, ("base",))}
    after = st.compute(packages, {"base": st.PASSED})
    assert after["mid"] == (st.WAITING, ()) and after["top"] == (st.WAITING_DEP, ("mid",))


def test_failed_dependency_propagates_with_the_culprit_named() -> None:
    packages = pkgs(Package("bad", "1"), Package("user", "1", depends=dep("bad")),
                    Package("user2", "1", depends=dep("user")))
    result = st.compute(packages, {"bad": st.FAILED})
    assert result["user"] == (st.DEP_FAILED, ("bad",))
    assert result["user2"] == (st.DEP_FAILED, ("bad",))


def test_missing_dependency() -> None:
    packages = pkgs(Package("lonely", "1", depends=dep("nowhere")), Package("above", "1", depends=dep("lonely")))
    result = st.compute(packages, {})
    assert result["lonely"] == (st.DEP_MISSING, ("nowhere",))
    assert result["above"] == (st.DEP_CANNOT, ("nowhere",))  # as piuparts-master propagates it


def test_cannot_be_tested_propagates() -> None:
    packages = pkgs(Package("evil", "1"), Package("user", "1", depends=dep("evil")))
    assert st.compute(packages, {"evil": st.CANNOT})["user"] == (st.DEP_CANNOT, ("evil",))


def test_alternatives_take_the_best_one() -> None:
    packages = pkgs(Package("bad", "1"), Package("good", "1"), Package("user", "1", depends=dep("bad | good")),
                    Package("missing-first", "1", depends=dep("nowhere | good")))
    result = st.compute(packages, {"bad": st.FAILED, "good": st.PASSED})
    assert result["user"] == (st.WAITING, ())
    assert result["missing-first"] == (st.WAITING, ())


def test_alternatives_all_failed_blame_the_first() -> None:
    packages = pkgs(Package("b1", "1"), Package("b2", "1"), Package("user", "1", depends=dep("b1 | b2")))
    assert st.compute(packages, {"b1": st.FAILED, "b2": st.FAILED})["user"] == (st.DEP_FAILED, ("b1",))


def test_virtual_package_through_its_provider() -> None:
    packages = pkgs(Package("impl", "1", provides=("virt",)), Package("user", "1", depends=dep("virt")))
    assert st.compute(packages, {})["user"] == (st.WAITING_DEP, ("impl",))
    assert st.compute(packages, {"impl": st.PASSED})["user"] == (st.WAITING, ())


def test_outside_names_are_available() -> None:
    packages = pkgs(Package("user", "1", depends=dep("python3", "libc6 | libc")))
    assert st.compute(packages, {}, {"python3": st.AVAILABLE, "libc6": st.AVAILABLE}) == {"user": (st.WAITING, ())}


def test_outside_failure_from_a_depends_section_propagates() -> None:
    packages = pkgs(Package("user", "1", depends=dep("lib")))
    assert st.compute(packages, {}, {"lib": st.FAILED})["user"] == (st.DEP_FAILED, ("lib",))


def test_essential_dependencies_are_good() -> None:
    packages = pkgs(Package("coreutils", "1", essential=True), Package("user", "1", depends=dep("coreutils")))
    result = st.compute(packages, {})
    assert result == {"coreutils": (st.WAITING, ()), "user": (st.WAITING, ())}


def test_cycle_members_become_testable_together() -> None:
    packages = pkgs(Package("a", "1", depends=dep("b", "base")), Package("b", "1", depends=dep("a")),
                    Package("base", "1"), Package("c", "1", depends=dep("a")))
    first = st.compute(packages, {})
    assert first["a"] == (st.WAITING_DEP, ("base",)) and first["b"] == (st.WAITING_DEP, ("base",))
    second = st.compute(packages, {"base": st.PASSED})
    assert second["a"] == (st.WAITING, ()) and second["b"] == (st.WAITING, ())
    assert second["c"] == (st.WAITING_DEP, ("a",))
    third = st.compute(packages, {"base": st.PASSED, "a": st.PASSED, "b": st.PASSED})
    assert third["c"] == (st.WAITING, ())


def test_cycle_member_failing_fails_the_other() -> None:
    packages = pkgs(Package("a", "1", depends=dep("b")), Package("b", "1", depends=dep("a")))
    assert st.compute(packages, {"a": st.FAILED})["b"] == (st.DEP_FAILED, ("a",))


def test_pass_stands_only_while_its_dependencies_exist() -> None:
    packages = pkgs(Package("user", "1", depends=dep("gone")))
    assert st.compute(packages, {"user": st.PASSED}) == {"user": (st.DEP_MISSING, ("gone",))}


def test_counts_and_blocking() -> None:
    packages = pkgs(Package("base", "1"), Package("x", "1", depends=dep("base")),
                    Package("y", "1", depends=dep("x")), Package("solo", "1"))
    computed = st.compute(packages, {})
    assert st.blocking(computed) == {"base": 2, "solo": 0}
    counts = st.counts(computed)
    assert counts[st.WAITING] == 2 and counts[st.WAITING_DEP] == 2 and set(counts) == set(st.STATES)


def test_large_section_is_quick_enough_to_recompute() -> None:
    packages = {f"p{i}": Package(f"p{i}", "1", depends=dep(f"p{i - 1}") if i else ()) for i in range(2000)}
    result = st.compute(packages, {f"p{i}": st.PASSED for i in range(1000)})
    assert result["p1000"] == (st.WAITING, ()) and result["p1999"] == (st.WAITING_DEP, ("p1000",))
