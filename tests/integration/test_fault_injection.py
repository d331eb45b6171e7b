"""Fault injection: the real command killed at pseudo-random moments of every
phase, by SIGTERM, SIGINT and SIGKILL; afterwards nothing of it is left.

A SIGTERM or SIGINT must be cleaned up by the run itself (exit 128+N,
nothing left even before ``piuparts cleanup``); after a SIGKILL,
``piuparts cleanup`` must remove everything.  Then: no mount, instance,
``.build-*`` directory or process in the cache, and the host's /etc and
/var/lib/dpkg unchanged.

The moments come from ``random.Random(SEED)``; every assertion message
names the seed, and ``PIUPARTS_FAULT_SEED=N`` replays that run (a test's
delays are drawn within what an unkilled run of the same fixture takes on
this machine, so that they land before the verdict).  The base
is built in a cache of this module's own (the shared one has its base
already): its first builds are killed while mmdebstrap (or debootstrap) runs, the next one is
left to finish, and every later kill hits the refresh of its apt lists or a
test of a package.  Only the runs started here are signalled, by PID.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from piuparts import aptsources, resources
from piuparts.backends.debootstrap import choose_tool
from tests.conftest import PIUPARTS
from tests.debs import CLEAN, LEFTOVER, SLOW_POSTINST, DebSpec
from tests.integration.helpers import leaks

pytestmark = [pytest.mark.root, pytest.mark.network]

SEED = int(os.environ.get("PIUPARTS_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))
REPLAY = f"seed {SEED} (replay with PIUPARTS_FAULT_SEED={SEED})"

#: Host trees a test run could write to if isolation failed.  Left out: the
#: schroot and LVM backends' own configuration (chroot entries, the profile
#: 'piuparts schroot-setup' writes the first time), which this module does not
#: use and other test runs on the same host change while it runs.
HOST_TREES = (Path("/etc"), Path("/var/lib/dpkg"))
HOST_EXCLUDED = (Path("/etc/schroot/chroot.d"), Path("/etc/schroot/piuparts-ng"), Path("/etc/lvm/archive"),
                 Path("/etc/lvm/backup"))


def host_state() -> dict[str, tuple[object, ...]]:
    """path -> (mode, size, sha256) of each regular file, the target of each
    symlink, the mode of anything else, under HOST_TREES."""
    state: dict[str, tuple[object, ...]] = {}
    for top in HOST_TREES:
        for directory, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if Path(directory, d) not in HOST_EXCLUDED]
            for name in subdirs + files:
                path = os.path.join(directory, name)
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    state[path] = ("symlink", os.readlink(path))
                elif stat.S_ISREG(info.st_mode):
                    with open(path, "rb") as handle:
                        digest = hashlib.file_digest(handle, "sha256").hexdigest()
                    state[path] = (info.st_mode, info.st_size, digest)
                else:
                    state[path] = (info.st_mode,)
    return state


def host_changes(before: dict[str, tuple[object, ...]]) -> list[str]:
    after = host_state()
    return [f"{path}: {before.get(path)} -> {after.get(path)}"
            for path in sorted(before.keys() | after.keys()) if before.get(path) != after.get(path)]


class Watched:
    """A ``piuparts`` run whose log lines are collected as they come."""

    def __init__(self, argv: list[str]) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        #: When each line came (time.monotonic()).
        self.times: list[float] = []
        self.done = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self.times.append(time.monotonic())
                self._changed.notify_all()
        with self._changed:
            self.done = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> bool:
        """True once a log line matches ``pattern``; False when the run ended
        or ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        seen = 0
        with self._changed:
            while True:
                if any(regex.search(line) for line in self.lines[seen:]):
                    return True
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self.done or left <= 0:
                    return False
                self._changed.wait(left)

    def seconds_between(self, first: str, then: str) -> float | None:
        """Seconds from the first line matching ``first`` to the next matching ``then``."""
        start = next((i for i, line in enumerate(self.lines) if re.search(first, line)), None)
        if start is None:
            return None
        end = next((i for i in range(start, len(self.lines)) if re.search(then, self.lines[i])), None)
        return None if end is None else self.times[end] - self.times[start]

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the run (its PID only); False if it had already ended."""
        if self.proc.poll() is not None:
            return False
        self.proc.send_signal(signum)
        return True

    def finish(self, timeout: float = 180) -> tuple[int, str]:
        """Its exit code and whole output."""
        returncode = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return returncode, "".join(self.lines)


@dataclass(frozen=True)
class Moment:
    """When to strike: ``delay`` seconds (drawn from a range) after the first
    log line that matches ``after``, in a test of ``deb``."""

    phase: str
    after: str
    delay: tuple[float, float]
    deb: DebSpec = CLEAN


#: While the base is made (mmdebstrap takes some 7 s, debootstrap some 25 s),
#: and while the apt lists of the cached base are refreshed in the copy that
#: becomes its next generation (with the API filesystems mounted in it;
#: forced by a tiny --lists-max-age).
BASE_TOOL = choose_tool(aptsources.host_codename() or "")
BUILD_SPANS = {"mmdebstrap": ((0.5, 3.0), (3.0, 6.0)), "debootstrap": ((1.0, 10.0), (10.0, 22.0))}[BASE_TOOL]
BUILD_MOMENTS = [
    Moment(f"{BASE_TOOL}, early", rf"INFO: \$ {BASE_TOOL} ", BUILD_SPANS[0]),
    Moment(f"{BASE_TOOL}, late", rf"INFO: \$ {BASE_TOOL} ", BUILD_SPANS[1]),
]
LISTS_REFRESH = Moment("lists refresh", r"\[\S*/bases/[^/ ]+/\.build-[^/ ]+/root\] apt-get update$", (0.0, 0.5))
#: Once the base exists; each phase is hit by each signal.
TEST_MOMENTS = {
    "instance start": [Moment("instance start", r"Using cached base", (0.0, 0.06)),
                       Moment("instance start", r"Instance removed", (0.0, 0.1), LEFTOVER)],
    "install": [Moment("install", r"apt-get -y install /tmp/piuparts-debs/", (0.0, 1.2), LEFTOVER),
                Moment("install", r"apt-get -y install /tmp/piuparts-debs/", (0.3, 4.0), SLOW_POSTINST)],
    "purge": [Moment("purge", r"dpkg --remove", (0.0, 0.9), LEFTOVER),
              Moment("purge", r"dpkg --purge", (0.0, 0.15))],
    # The scenario's end: its instance is being removed.
    "cleanup": [Moment("cleanup", r"Snapshots took", (0.0, 0.1), LEFTOVER),
                Moment("cleanup", r"Snapshots took", (0.0, 0.1))],
}
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGKILL)


def left_behind(cache: Path) -> list[str]:
    """Everything of a run still in the cache: mounts, instance and
    ``.build-*`` directories, processes rooted in it or using it."""
    left = leaks(cache)
    left += [str(p) for p in cache.glob("*/.build-*") if str(p) not in left]
    left += [f"process {pid} rooted inside: {cmd}" for pid, cmd in resources.processes_under(cache)]
    left += [f"process {pid} uses the cache" for pid in resources.processes_using(cache)]
    return left


@pytest.fixture(scope="module")
def fault_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache of this module's own, without a base at first."""
    cache = tmp_path_factory.mktemp("fault-cache")
    yield cache
    subprocess.run([*PIUPARTS, "cleanup", "--cache-dir", str(cache)], check=False, capture_output=True)
    if not resources.mounts_under(cache):
        shutil.rmtree(cache)  # a whole base: not worth keeping with pytest's old temporary directories


#: The verdict line: a signal after it finds nothing left to interrupt.
VERDICT = r"^(PASS|FAIL): "
#: A moment's delay is drawn within this share of the time its run took, on
#: this machine, from the moment's line to the verdict (see Striker.calibrated).
REACH = 0.8


class Striker:
    """Runs piuparts, kills it at a moment, and checks what is left."""

    def __init__(self, cache: Path, debs: Callable[[DebSpec], Path], rng: random.Random) -> None:
        self.cache = cache
        self.debs = debs
        self.rng = rng
        self.host = host_state()
        self.log: list[str] = []
        self.calibration: dict[str, Watched] = {}

    def calibrated(self, moment: Moment, deb: DebSpec, args: tuple[str, ...]) -> tuple[float, float]:
        """``moment.delay`` cut to what lands before the verdict here: an unkilled run of ``deb``
        (once a fixture, once the base exists) says how long this machine takes from the moment's
        line to the verdict, and the delay stays within REACH of it.  Without this, a faster
        machine (or code) turns late moments into signals that come after the run ended."""
        if moment.phase not in TEST_MOMENTS and moment.phase != "anywhere" or args:
            return moment.delay
        if not any(self.cache.glob("bases/*/gen-*/meta.json")):
            return moment.delay  # this run builds the base: it must not be built by a calibration run
        if deb.name not in self.calibration:
            run = Watched([*PIUPARTS, "--cache-dir", str(self.cache), str(self.debs(deb))])
            run.finish(timeout=600)
            self.calibration[deb.name] = run
        gap = self.calibration[deb.name].seconds_between(moment.after, VERDICT)
        if gap is None:
            return moment.delay
        top = min(moment.delay[1], REACH * gap)
        return min(moment.delay[0], top), top

    def strike(self, moment: Moment, signum: int, deb: DebSpec | None = None, *args: str) -> bool:
        """One run killed at ``moment`` by ``signum``; False if the signal came too late
        to interrupt anything (the run had ended, or given its verdict)."""
        deb = deb or moment.deb
        delay = self.rng.uniform(*self.calibrated(moment, deb, args))
        what = (f"{REPLAY}: {signal.Signals(signum).name} {delay:.3f} s after /{moment.after}/ "
                f"({moment.phase}, {deb.name})")
        run = Watched([*PIUPARTS, "--cache-dir", str(self.cache), *args, str(self.debs(deb))])
        assert run.wait_for(moment.after, timeout=300), f"{what}: never logged\n" + "".join(run.lines)
        time.sleep(delay)
        landed = run.signal(signum)
        last = run.lines[-1].strip()[:100] if run.lines else ""
        returncode, output = run.finish()
        context = f"{what}\n{output}"
        self.log.append(f"{signal.Signals(signum).name} {delay:.3f} s after /{moment.after}/ ({moment.phase}, "
                        f"{deb.name}): exit {returncode}{'' if landed else ' (ended first)'} after "
                        f"{time.monotonic() - run.started:.1f} s; last line: {last}")
        assert "Traceback" not in output, context
        # A signal that comes once the verdict is out finds nothing left to
        # clean: the exit code is the verdict's, or the signal's.
        late = not landed or re.search(VERDICT, output, re.MULTILINE) is not None
        if late:
            assert returncode in (0, 1, 128 + signum, -signum), context
        elif signum == signal.SIGKILL:
            assert returncode == -signal.SIGKILL, context
        else:
            assert returncode == 128 + signum, context
            assert re.search(r"^piuparts: error: interrupted", output, re.MULTILINE), context
            assert left_behind(self.cache) == [], f"{context}\nleft before 'piuparts cleanup'"
        cleanup = subprocess.run([*PIUPARTS, "cleanup", "--cache-dir", str(self.cache)], check=False,
                                 capture_output=True, text=True, timeout=120)
        assert cleanup.returncode == 0, f"{context}\n{cleanup.stdout}{cleanup.stderr}"
        assert left_behind(self.cache) == [], f"{context}\nafter cleanup:\n{cleanup.stdout}"
        assert not list((self.cache / "instances").glob("*")), context
        assert host_changes(self.host) == [], f"{what}: the host changed"
        return not late


def test_killed_runs_leave_nothing(fault_cache, debs):
    rng = random.Random(SEED)
    striker = Striker(fault_cache, debs, rng)
    start = time.monotonic()
    missed = 0
    try:
        # The base: killed while its tool runs (caught and uncaught); the
        # next build is left to finish, and its run is killed in its test.
        first, second = rng.sample([signal.SIGTERM, signal.SIGKILL], 2)
        striker.strike(BUILD_MOMENTS[0], first)
        striker.strike(BUILD_MOMENTS[1], second)
        missed += not striker.strike(TEST_MOMENTS["install"][0], rng.choice(SIGNALS))
        assert any(fault_cache.glob("bases/*/gen-*/meta.json")), f"{REPLAY}: the base was never finished"
        for signum in SIGNALS:  # the cached base's lists refreshed in its next generation
            missed += not striker.strike(LISTS_REFRESH, signum, CLEAN, "--lists-max-age", "0.0001")
        # A refresh left to finish (so that later runs find the lists fresh), then its test killed.
        missed += not striker.strike(TEST_MOMENTS["install"][0], rng.choice(SIGNALS), LEFTOVER,
                                     "--lists-max-age", "0.0001")
        # Every phase of a test, each signal, at a moment drawn from the phase's.
        plan = [(phase, signum) for phase in TEST_MOMENTS for signum in SIGNALS]
        rng.shuffle(plan)
        for phase, signum in plan:
            missed += not striker.strike(rng.choice(TEST_MOMENTS[phase]), signum)
        # And anywhere at all.
        for _ in range(3):
            anywhere = Moment("anywhere", r"Using cached base", (0.0, 2.5))
            missed += not striker.strike(anywhere, rng.choice(SIGNALS), rng.choice([CLEAN, LEFTOVER, SLOW_POSTINST]))
    finally:
        print(f"\n{REPLAY}; {time.monotonic() - start:.0f} s:\n  " + "\n  ".join(striker.log))
    # A signal that comes after the run ended tests nothing: the moments must mostly land.
    assert missed <= 3, f"{REPLAY}: {missed} signals came after the run had ended:\n" + "\n".join(striker.log)
