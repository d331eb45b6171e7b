"""``piuparts ci notify``: reprepro's ``Log:`` notifier.  Standard library only, so it returns
in milliseconds; it never fails the upload (reprepro waits for it, and then
deletes the replaced files from the pool).

reprepro calls it as ``ACTION CODENAME TYPE COMPONENT ARCH NAME VERSIONS... -- FILEKEYS...``:
``add NEW -- NEWKEYS``, ``remove OLD -- OLDKEYS``, ``replace NEW OLD -- NEWKEYS -- OLDKEYS``, with
the file keys relative to ``$REPREPRO_OUT_DIR``.  The notifier writes the
event as one JSON file under ``STATE/CODENAME/pending/`` and, on a replace,
keeps the old .deb in ``STATE/CODENAME/kept/notifier/`` (a hard link when it
can, else a copy), before reprepro deletes it.  ``piuparts ci run-pending``
tests what was recorded.

The state directory: ``--state-dir DIR`` first, else ``$PIUPARTS_CI_STATE_DIR``,
else :data:`DEFAULT_STATE_DIR`.  As a ``Log:`` line takes a script name only,
call it from a two-line script (see conf/reprepro-distributions.example).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

DEFAULT_STATE_DIR = Path("/var/lib/piuparts-ng/ci")
PENDING, KEPT_BY_NOTIFIER = "pending", "kept/notifier"
_ACTIONS = ("add", "remove", "replace")


@dataclass(frozen=True)
class Event:
    """One call of the notifier: what reprepro did to one package."""

    action: str
    codename: str
    type: str
    component: str
    architecture: str
    name: str
    new_version: str | None
    old_version: str | None
    new_keys: tuple[str, ...] = ()
    old_keys: tuple[str, ...] = ()
    #: The repository's directories (absolute), from reprepro's environment.
    base_dir: str = ""
    out_dir: str = ""
    time: float = 0.0
    #: The old .debs kept in the state directory.
    kept: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        """Plain data."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "Event":
        """The inverse of :meth:`to_json` (unknown keys are left out)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("new_keys", "old_keys", "kept"):
            known[key] = tuple(known.get(key) or ())  # type: ignore[arg-type]
        return cls(**known)  # type: ignore[arg-type]


def parse(argv: Sequence[str], environ: dict[str, str] | None = None) -> Event:
    """reprepro's arguments (and its environment) as an Event; ValueError when they are not reprepro's."""
    env = os.environ if environ is None else environ
    args = list(argv)
    if len(args) < 6 or args[0] not in _ACTIONS:
        raise ValueError(f"expected ACTION CODENAME TYPE COMPONENT ARCH NAME ..., ACTION one of {', '.join(_ACTIONS)}")
    action, codename, kind, component, arch, name = args[:6]
    rest = args[6:]
    head = rest[:rest.index("--")] if "--" in rest else rest
    groups: list[list[str]] = []
    for arg in rest[len(head):]:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)
    new = head[0] if action in ("add", "replace") and head else None
    old = head[-1] if action in ("remove", "replace") and head else None
    new_keys = tuple(groups[0]) if action != "remove" and groups else ()
    old_keys = tuple(groups[-1]) if action != "add" and groups else ()
    cwd = os.getcwd()
    base = os.path.join(cwd, env.get("REPREPRO_BASE_DIR", "")) if env.get("REPREPRO_BASE_DIR") else ""
    out = os.path.join(cwd, env.get("REPREPRO_OUT_DIR", "")) if env.get("REPREPRO_OUT_DIR") else base
    return Event(action, codename, kind, component, arch, name, new, old, new_keys, old_keys,
                 os.path.normpath(base) if base else "", os.path.normpath(out) if out else "", time.time())


def _keep(event: Event, codename_dir: Path) -> tuple[str, ...]:
    """Hard-link (else copy) the replaced .debs into the state directory."""
    if event.action != "replace" or event.type not in ("deb", "udeb") or not event.out_dir:
        return ()
    target_dir = codename_dir / KEPT_BY_NOTIFIER
    target_dir.mkdir(parents=True, exist_ok=True)
    kept = []
    for key in event.old_keys:
        source = Path(event.out_dir) / key
        target = target_dir / source.name
        if not target.exists():
            partial = target.with_name(f".{target.name}.{os.getpid()}")
            try:
                os.link(source, partial)
            except OSError:
                shutil.copyfile(source, partial)
            os.replace(partial, target)
        kept.append(str(target))
    return tuple(kept)


def record(event: Event, state_dir: Path) -> Path:
    """Keep the old .debs and write the event; the path of its file."""
    codename_dir = state_dir / event.codename
    event = Event(**{**event.__dict__, "kept": _keep(event, codename_dir)})
    pending = codename_dir / PENDING
    pending.mkdir(parents=True, exist_ok=True)
    path = pending / f"{time.time_ns()}-{os.getpid()}-{event.name}-{event.architecture}.json"
    partial = path.with_name("." + path.name)
    partial.write_text(json.dumps(event.to_json()) + "\n")
    os.replace(partial, path)
    return path


def state_dir_of(argv: list[str], environ: dict[str, str]) -> tuple[Path, list[str]]:
    """``--state-dir DIR`` (or ``--state-dir=DIR``) taken off the front of argv, else the environment's."""
    if argv[:1] == ["--state-dir"] and len(argv) > 1:
        return Path(argv[1]), argv[2:]
    if argv and argv[0].startswith("--state-dir="):
        return Path(argv[0].split("=", 1)[1]), argv[1:]
    return Path(environ.get("PIUPARTS_CI_STATE_DIR") or DEFAULT_STATE_DIR), argv


def main(argv: Sequence[str]) -> int:
    """Record one event; always 0 (a notifier that fails would not stop reprepro, only alarm it)."""
    try:
        state_dir, rest = state_dir_of(list(argv), dict(os.environ))
        record(parse(rest), state_dir.absolute())
    except Exception as err:  # never fail the upload: say it, once, and carry on
        print(f"piuparts ci notify: not recorded: {err} (arguments: {' '.join(argv)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
