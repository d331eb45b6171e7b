"""The unit tier's one seam: :func:`piuparts.command.run` replaced by a fake
that records every argv and answers as the test scripts it."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from piuparts import command

Answer = Callable[[tuple[str, ...]], "command.Result | None"]


@dataclass
class FakeCommands:
    """Every command the code under test runs, and what each is answered.

    ``on(pattern, answer)``: argv joined with spaces that the regular
    expression ``pattern`` matches whole gets ``answer(argv)`` (a Result,
    or None to fall through); ``real(pattern)`` runs those for real (cp,
    tar on test files).  Anything else exits 0 with no output.
    """

    calls: list[tuple[str, ...]] = field(default_factory=list)
    rules: list[tuple[re.Pattern[str], Answer]] = field(default_factory=list)

    def on(self, pattern: str, answer: Answer | int | str) -> None:
        if isinstance(answer, int):
            code = answer
            answer = lambda argv: command.Result(argv, code, "", 0.0)  # noqa: E731
        elif isinstance(answer, str):
            text = answer
            answer = lambda argv: command.Result(argv, 0, text, 0.0)  # noqa: E731
        self.rules.append((re.compile(pattern), answer))

    def real(self, pattern: str) -> None:
        def run(argv: tuple[str, ...]) -> command.Result:
            proc = subprocess.run(argv, capture_output=True, text=True)
            return command.Result(argv, proc.returncode, proc.stdout + proc.stderr, 0.0)
        self.rules.append((re.compile(pattern), run))

    def run(self, argv: Any, **kwargs: Any) -> command.Result:
        argv = tuple(str(a) for a in argv)
        self.calls.append(argv)
        joined = " ".join(argv)
        for pattern, answer in reversed(self.rules):  # the last rule given wins
            if pattern.fullmatch(joined):
                result = answer(argv)
                if result is not None:
                    return self._checked(result, kwargs)
        return self._checked(command.Result(argv, 0, "", 0.0), kwargs)

    @staticmethod
    def _checked(result: command.Result, kwargs: dict[str, Any]) -> command.Result:
        error = kwargs.get("error")
        if error is not None and not result.ok:
            raise error(command.failure_message(result, kwargs.get("what") or result.argv[0]))
        return result

    def commands(self, *words: str) -> list[str]:
        """The calls (joined) whose argv contains every one of ``words``."""
        return [" ".join(c) for c in self.calls if all(w in c for w in words)]


@pytest.fixture
def fake_commands(monkeypatch: pytest.MonkeyPatch) -> FakeCommands:
    fake = FakeCommands()
    monkeypatch.setattr(command, "run", fake.run)
    return fake
