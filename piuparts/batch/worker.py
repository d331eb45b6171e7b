"""A local worker process: runs the tasks its coordinator sends, one at a time.

``python -m piuparts.batch.worker NAME PARENT_PID`` reads one JSON object a
line on stdin (``{"task": Task.to_json()}``) and answers on stdout with
``{"task": ID, "result": RunResult.to_json(), "started": T, "duration": S}``
(``"result": null`` and a ``"reason"`` when the test could not even be
started).  Everything else it prints goes to stderr.  It keeps one
:class:`~piuparts.api.Session` a RunConfig open, so the base is prepared
once for all its tests.

Signals: SIGINT stops the running test (the instance is cleaned up as it
unwinds) and ends the worker; so does SIGTERM, which it also gets when its
coordinator dies (PR_SET_PDEATHSIG), so a killed coordinator leaves no
test running.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from piuparts.api import RunConfig, RunResult, Session, subject_json
from piuparts.batch.executor import Task
from piuparts.errors import Interrupted, PiupartsError

_KIND_OF_CODE = {2: "usage", 3: "testbed", 4: "internal"}
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the coordinator dies (Linux), and stop now if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        raise Interrupted(signal.SIGTERM)


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


class Worker:
    """The sessions of one worker process, by RunConfig."""

    def __init__(self) -> None:
        self.stack = ExitStack()
        self.sessions: dict[str, Session | PiupartsError] = {}

    def session(self, task: Task) -> Session | PiupartsError:
        """The open session for the task's configuration (or why it could not open)."""
        key = json.dumps([task.config, task.log_dir], sort_keys=True)
        if key not in self.sessions:
            try:
                config = RunConfig.from_json(task.config)
                self.sessions[key] = self.stack.enter_context(
                    Session(config, log_dir=Path(task.log_dir) if task.log_dir else None))
            except PiupartsError as err:  # not kept: the next task tries again
                return err
        return self.sessions[key]

    def run(self, task: Task) -> RunResult:
        """One test; a session that cannot start is a result of its kind."""
        session = self.session(task)
        if isinstance(session, PiupartsError):
            return RunResult(kind=_KIND_OF_CODE.get(session.exit_code, "internal"), subject=subject_json(task.subject),
                             error=str(session))
        return session.test(task.subject)

    def close(self) -> None:
        """Close every session."""
        self.stack.close()


def serve(stdin: TextIO, out: TextIO) -> None:
    """Answer tasks until stdin ends."""
    worker = Worker()
    try:
        for line in stdin:
            if not line.strip():
                continue
            message = json.loads(line)
            task = Task.from_json(message["task"])
            started = time.time()
            try:
                answer: dict[str, Any] = {"result": worker.run(task).to_json()}
            except PiupartsError as err:  # a task that cannot even be read
                answer = {"result": None, "reason": str(err)}
            answer.update(task=task.id, started=started, duration=round(time.time() - started, 3))
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        worker.close()


def main(argv: list[str]) -> int:
    """Entry point: ``NAME PARENT_PID``."""
    parent = int(argv[1])
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    # The protocol gets the real stdout; anything printed goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        _die_with_parent(parent)
        serve(sys.stdin, out)
    except KeyboardInterrupt:
        return 130
    except Interrupted as err:
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
