"""The layout stays readable: no module of piuparts/ over 500 lines unless its
docstring says why it is one module (and says so with the figure)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "piuparts"
LIMIT = 500


def test_long_modules_say_why_they_are_one():
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > LIMIT and f"{LIMIT} lines" not in docstring:
            unexplained.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
    assert unexplained == []
