"""piuparts/'s imports run one way: read with ast (every import, also the ones
inside functions and under TYPE_CHECKING, since each is a dependency all the
same), no module of a layer imports one of a higher layer, and no import
circle at all, within a layer either.

The layers, lowest first.  A module belongs to the layer whose prefix names it
most closely (``piuparts.batch.cli`` sits above the rest of ``piuparts.batch``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from piuparts.batch.states import _sccs

PACKAGE = Path(__file__).resolve().parents[2] / "piuparts"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("primitives", ("errors", "log", "findings", "command", "inroot", "state", "resources", "aptsources",
                    "config", "chroot", "dpkgdb", "debcache", "inputs", "repos", "hooks", "failures",
                    "aptplan", "digests", "distros")),
    ("checks", ("checks",)),
    ("backends", ("backends",)),
    ("layers", ("layers",)),
    ("scenarios", ("scenarios", "instance_setup")),
    ("api", ("options", "api", "prune")),
    ("reporters of one run", ("report", "report.text", "report.json", "report.junit", "report.pilog")),
    ("command line", ("cli",)),
    ("batch", ("batch",)),
    ("celery", ("celery",)),
    ("executors and report site", ("batch.executor_options", "report.html")),
    ("mode commands", ("batch.cli", "ci")),
    ("the command", ("main", "manpage", "__main__", "")),
)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """The piuparts modules ``name`` imports, each with the line of its first import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # "from piuparts.batch import engine" imports the module engine, not only the package
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not (target == "piuparts" and node.__class__ is ast.Import):
                found.setdefault(target, node.lineno)
    return found


def layer_of(name: str) -> int:
    short = name.removeprefix("piuparts").removeprefix(".")
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (short == prefix or short.startswith(prefix + ".") or prefix == "") and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"{name} is in no layer of LAYERS: add it"
    return rank


def graph() -> dict[str, dict[str, int]]:
    known = modules()
    edges = {name: imports(name, path, known) for name, path in known.items()}
    # A package that re-exports its own submodules (piuparts.checks) is not a dependency on itself.
    return {name: {t: line for t, line in targets.items() if not t.startswith(name + ".") and t != "piuparts"}
            for name, targets in edges.items()}


def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (the batch's own Tarjan)."""
    return [c for c in _sccs({name: set(targets) for name, targets in edges.items()}) if len(c) > 1]


def test_every_module_is_in_a_layer():
    for name in modules():
        layer_of(name)


def test_no_import_circle():
    assert circles(graph()) == []


def test_no_module_imports_a_higher_layer():
    upward = [f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]}), "
              f"line {line}"
              for name, targets in sorted(graph().items()) for target, line in sorted(targets.items())
              if layer_of(target) > layer_of(name)]
    assert upward == []


@pytest.mark.parametrize("name, layer", [
    ("piuparts.api", "api"), ("piuparts.batch.cli", "mode commands"), ("piuparts.batch.engine", "batch"),
    ("piuparts.report.html.site", "executors and report site"), ("piuparts.report.pilog", "reporters of one run"),
    ("piuparts.backends.overlay", "backends"), ("piuparts.config", "primitives"), ("piuparts.main", "the command"),
])
def test_layers_name_modules_by_their_closest_prefix(name, layer):
    assert LAYERS[layer_of(name)][0] == layer


def test_the_reader_finds_what_a_probe_would_break(tmp_path):
    """The same reading over a tree where a primitive imports the API: a circle and an upward import."""
    probe = tmp_path / "piuparts"
    (probe / "sub").mkdir(parents=True)
    (probe / "__init__.py").write_text("")
    (probe / "errors.py").write_text("def f():\n    from piuparts import api\n")
    (probe / "api.py").write_text("from piuparts.errors import f\n")
    (probe / "sub" / "__init__.py").write_text("from . import mod\n")
    (probe / "sub" / "mod.py").write_text("from ..errors import f\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, probe
    try:
        edges = graph()
    finally:
        PACKAGE = saved
    assert edges["piuparts.errors"] == {"piuparts.api": 2}
    assert edges["piuparts.sub.mod"] == {"piuparts.errors": 1}
    assert circles(edges) == [["piuparts.api", "piuparts.errors"]]
    assert layer_of("piuparts.errors") < layer_of("piuparts.api")
