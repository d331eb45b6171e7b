#!/usr/bin/env python3
"""Benchmark: piuparts-ng against Debian's piuparts and against the bare apt floor.

Run as root from the project directory:

    .venv/bin/python bench/run.py [--rounds N] [--packages fixture python3-oslo.i18n ...]
                                  [--out bench/results/latest.json]

For every package, N rounds; in each round three runs, one after the other
(the order rotates from round to round so that neither tool always goes
first on a warm or a cold mirror):

  ours      .venv/bin/piuparts --cache-dir CACHE --json F [--apt] PACKAGE
  piuparts  /usr/sbin/piuparts -b TARBALL --no-upgrade-test ... [--apt] PACKAGE
            (Debian's; install -> purge only, eatmydata on, same distribution,
            mirror, components and architecture, base tarball built once)
  floor     the same 'apt-get install' and 'apt-get purge --autoremove' typed
            by hand in an already-started overlay instance of our base, nothing
            else; only the two apt-get commands are timed

The distribution and the mirror are the host's (read from its apt sources by
piuparts.aptsources); the mirror is never written to any file or printed: it
shows as $MIRROR.  Everything the benchmark makes lives under --work-dir
(default /var/tmp/piuparts-bench); the per-invocation scratch directory,
including Debian's piuparts' --tmpdir, is removed at the end, and the end
checks that no mount is left below --work-dir.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from piuparts import __version__ as OURS_VERSION  # noqa: E402
from piuparts import aptsources, resources  # noqa: E402
from piuparts import log as logsetup  # noqa: E402
from piuparts.backends import Backend, BaseSpec  # noqa: E402
from piuparts.options import host_architecture  # noqa: E402
from piuparts.checks.purge_status import installed_packages  # noqa: E402
from tests.debs import CLEAN, DebSpec  # noqa: E402

OURS = ROOT / ".venv/bin/piuparts"
DEBIAN_PIUPARTS = Path("/usr/sbin/piuparts")
DEFAULT_PACKAGES = ["fixture", "python3-oslo.i18n", "python3-oslo.config", "python3-keystoneclient", "keystone"]
#: The fixture: a tiny clean package built with dpkg-deb (tests/debs.py).
FIXTURE: DebSpec = CLEAN
#: "ours" is a cold run (no .deb cache, no dependency layer: both are
#: emptied first); "ours-warm" runs after an untimed run of the same package,
#: as in a maintainer's loop.
TOOLS = ("ours", "ours-warm", "piuparts", "floor")
COMPONENTS = ("main",)
BASE_MAX_AGE = 7 * 86400
LISTS_MAX_AGE = 86400

log = logging.getLogger("piuparts")


# --------------------------------------------------------------------------
# small helpers


class Redactor:
    """Replaces the mirror (and its host name) by $MIRROR in everything kept or shown."""

    def __init__(self, mirror: str) -> None:
        self.words = [mirror, mirror.rstrip("/")]
        host = urlparse(mirror).hostname
        if host:
            self.words.append(host)
        self.words = sorted(set(w for w in self.words if w), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for word in self.words:
            text = text.replace(word, "$MIRROR")
        return text

    def argv(self, argv: Sequence[str]) -> str:
        return self(shlex.join(str(a) for a in argv))


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Streamed:
    """What a streamed subprocess did: exit code, wall time, time-stamped lines."""

    argv: list[str]
    returncode: int | None
    wall: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    timed_out: bool = False


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT the process group (both tools clean up on it), then SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 60.0), (signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # the leader is gone; nothing of its group may stay
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_streamed(argv: Sequence[str], log_path: Path, timeout: float) -> Streamed:
    """Run ``argv`` in its own session, stamping every output line with the
    time since the start (both tools flush their log line by line)."""
    argv = [str(a) for a in argv]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[tuple[float, str]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append((time.monotonic() - start, raw.decode("utf-8", "replace").rstrip("\n")))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_group(proc)
    except BaseException:
        stop_group(proc)
        raise
    finally:
        wall = time.monotonic() - start
        thread.join(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        log_path.write_text("".join(f"[{t:9.3f}] {line}\n" for t, line in lines))
    return Streamed(argv, proc.returncode, round(wall, 3), lines, timed_out)


class Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


# --------------------------------------------------------------------------
# the parsing of the two tools' logs


OURS_START = re.compile(r"Instance \S+ started in ([\d.]+) s")
OURS_REMOVED = re.compile(r"Instance removed in ([\d.]+) s")
PP_RECORD = re.compile(r"^\d+m[\d.]+s (\w+): (.*)$")
PP_STARTING = "Starting command: "

#: Table columns for Debian's piuparts, in order.
PP_PHASES = ("unpack", "apt-get update", "dist-upgrade", "install", "remove+purge", "debsums", "adequate",
             "lsof", "queries", "mounts", "rm chroot", "other commands", "in-process")


def pp_phase(argv: list[str]) -> str:
    """Which phase a command run by Debian's piuparts belongs to."""
    words = list(argv)
    if words[:1] == ["chroot"]:
        words = words[2:]
    if words[:1] == ["eatmydata"]:
        words = words[1:]
    if not words:
        return "other commands"
    prog = os.path.basename(words[0])
    args = [w for w in words[1:] if not w.startswith("-")]
    sub = args[0] if args else ""
    if prog == "tar":
        return "unpack" if any("x" in w for w in words[1:] if w.startswith("-")) else "other commands"
    if prog == "apt-get":
        if sub == "update":
            return "apt-get update"
        if sub in ("dist-upgrade", "upgrade"):
            return "dist-upgrade"
        if sub == "install":
            # restore_selections runs 'apt-get install' with removals (pkg-) too
            return "remove+purge" if any(a.endswith("-") for a in args[1:]) else "install"
        if sub in ("remove", "purge", "autoremove"):
            return "remove+purge"
        return "queries"  # apt-get clean
    if prog == "dpkg":
        flags = [w for w in words[1:] if w.startswith("-")]
        if any(f in ("-i", "--install", "--unpack", "--configure") for f in flags):
            return "install"
        if any(f in ("-r", "-P", "--remove", "--purge") for f in flags):
            return "remove+purge"
        return "queries"
    if prog in ("dpkg-query", "apt-cache", "dpkg-divert", "sh", "apt-config", "dpkg-deb"):
        return "queries"
    if prog in ("debsums", "adequate", "lsof"):
        return prog
    if prog in ("mount", "umount"):
        return "mounts"
    if prog == "rm":
        return "rm chroot"
    return "other commands"


def command_key(argv: list[str]) -> str:
    """'apt-get install', 'debsums', 'tar'...: a command's name and subcommand."""
    words = list(argv)
    if words[:1] == ["chroot"]:
        words = words[2:]
    if words[:1] == ["eatmydata"]:
        words = words[1:]
    if not words:
        return "?"
    args = [w for w in words[1:] if not w.startswith("-") and "/" not in w]
    prog = os.path.basename(words[0])
    return f"{prog} {args[0]}" if prog in ("apt-get", "apt-cache", "sh") and args else prog


def parse_pp_log(lines: list[tuple[float, str]], wall: float) -> dict[str, Any]:
    """Seconds per phase of a Debian piuparts run, from its time-stamped log.

    Debian's piuparts logs 'Starting command: [...]' before each command and
    its next record (the output dump or 'Command ok') only after it ended,
    so a command lasts from its line to the next record.  What is left of
    the wall time is its own Python work ('in-process': tree scans, file
    ownership lists, diffs, startup).
    """
    records = [(t, m[1], m[2]) for t, line in lines if (m := PP_RECORD.match(line))]
    phases = {p: 0.0 for p in PP_PHASES}
    commands: dict[str, dict[str, float]] = {}
    for i, (t, _level, message) in enumerate(records):
        if not message.startswith(PP_STARTING):
            continue
        end = records[i + 1][0] if i + 1 < len(records) else wall
        try:
            argv = ast.literal_eval(message[len(PP_STARTING):])
        except (ValueError, SyntaxError):
            argv = message[len(PP_STARTING):].split()
        phase = pp_phase([str(a) for a in argv])
        phases[phase] += end - t
        key = command_key([str(a) for a in argv])
        entry = commands.setdefault(key, {"count": 0, "seconds": 0.0})
        entry["count"] += 1
        entry["seconds"] = round(entry["seconds"] + end - t, 3)
    phases["in-process"] = max(0.0, wall - sum(v for k, v in phases.items() if k != "in-process"))
    verdict = next((m for _t, _l, m in reversed(records) if m.startswith(("PASS: All tests", "FAIL"))), None)
    return {"phases": {k: round(v, 3) for k, v in phases.items()}, "commands": commands,
            "commands_run": sum(c["count"] for c in commands.values()), "verdict_line": verdict}


def inner_command(argv: list[str]) -> str:
    """The command as run inside the chroot (without the 'chroot DIR' prefix)."""
    words = [str(a) for a in argv]
    if "chroot" in words:
        words = words[words.index("chroot") + 2:]
    return shlex.join(words)


def parse_ours(lines: list[tuple[float, str]], doc: dict[str, Any], wall: float) -> dict[str, Any]:
    """Our split: instance start, apt/dpkg, snapshots+diff, cleanup, the rest."""
    text = "\n".join(line for _t, line in lines)
    start = OURS_START.search(text)
    removed = OURS_REMOVED.search(text)
    scenario = (doc.get("scenarios") or [{}])[0]
    steps = scenario.get("steps") or []
    timings = scenario.get("timings") or {}
    split = {
        "instance_start": float(start[1]) if start else None,
        "apt_dpkg": round(sum(s.get("elapsed", 0.0) for s in steps), 3),
        "snapshots_diff": round(timings.get("snapshot", 0.0) + timings.get("diff", 0.0), 3),
        "cleanup": float(removed[1]) if removed else None,
        "dependency_layer": (doc.get("dependency_layer") or {}).get("seconds", 0.0),
        "base_prepare": doc.get("base_prepare_seconds"),
    }
    known = sum(v for k, v in split.items() if v is not None and k != "base_prepare")
    split["other"] = round(wall - known, 3)
    return {"split": split, "timings": timings,
            "steps": [{"name": s.get("name"), "elapsed": s.get("elapsed"),
                       "commands": [{"command": inner_command(c.get("argv") or []), "elapsed": c.get("elapsed"),
                                     "returncode": c.get("returncode")} for c in s.get("commands", [])]}
                      for s in steps],
            "verdict": doc.get("verdict"), "findings": len(scenario.get("findings") or [])}


# --------------------------------------------------------------------------
# the benchmark


@dataclass
class Subject:
    """One benchmarked package: an archive name or the fixture .deb."""

    label: str
    name: str
    deb: Path | None = None

    def args(self) -> list[str]:
        return [str(self.deb)] if self.deb else ["--apt", self.name]


class Bench:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.work = Path(opts.work_dir).absolute()
        self.cache = self.work / "cache"
        self.tarballs = self.work / "debian-piuparts"
        self.scratch = self.work / f"run-{os.getpid()}"
        self.dist, self.mirror = aptsources.default_distribution_and_mirror(
            aptsources.read_host_sources(), aptsources.host_codename())
        self.arch = host_architecture()
        self.redact = Redactor(self.mirror)
        self.spec = BaseSpec(self.dist, self.mirror, self.arch, COMPONENTS)
        key = hashlib.sha256(json.dumps([self.dist, self.mirror, self.arch, COMPONENTS]).encode()).hexdigest()[:12]
        self.tarball = self.tarballs / f"{self.dist}-{self.arch}-{key}.tar.gz"
        self.counter = 0
        self._log_stream: Any = None
        self.result: dict[str, Any] = {}

    # ---- setup

    def check_tools(self) -> None:
        if os.geteuid() != 0:
            sys.exit("bench/run.py: must run as root (both tools mount and chroot)")
        if not OURS.exists():
            sys.exit(f"bench/run.py: {OURS} is missing; run ./bootstrap first")
        if "piuparts" in self.opts.tools and not DEBIAN_PIUPARTS.exists():
            print("Debian's piuparts is missing: apt-get install -y piuparts", flush=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "piuparts"], check=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=900)

    def pp_version(self) -> str | None:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "piuparts"],
                             capture_output=True, text=True)
        return out.stdout.strip() or None

    def setup_logging(self, path: Path | None) -> None:
        """The project's logger (used by the floor's backend) goes to ``path``."""
        if self._log_stream:
            self._log_stream.close()
            self._log_stream = None
        if path is None:
            logger = logging.getLogger("piuparts")
            logger.handlers.clear()
            logger.addHandler(logging.NullHandler())
            return
        self._log_stream = path.open("w")
        logsetup.setup(0, stream=self._log_stream)

    def prepare_ours(self) -> dict[str, Any]:
        """Build or refresh our cached base once, before anything is timed."""
        self.setup_logging(self.scratch / "logs/prepare-ours.log")
        backend = Backend.create("debootstrap", self.spec, self.cache, max_age=BASE_MAX_AGE,
                                 lists_max_age=LISTS_MAX_AGE)
        base_dir = getattr(backend, "base_dir", None)  # the debootstrap backend's
        built = base_dir is not None and not (base_dir / "meta.json").exists()
        start = time.monotonic()
        try:
            backend.prepare()
        finally:
            backend.close()
        return {"seconds": round(time.monotonic() - start, 3), "built": built}

    def pp_common(self, tmpdir: Path) -> list[str]:
        """Options that make Debian's piuparts do what ours does, on the same base."""
        argv = [str(DEBIAN_PIUPARTS), "--tmpdir", str(tmpdir), "-d", self.dist,
                "-m", f"{self.mirror} {' '.join(COMPONENTS)}", "--arch", self.arch]
        return argv

    def prepare_piuparts(self) -> dict[str, Any]:
        """Build Debian piuparts' base tarball once (piuparts -s), unless a fresh one exists."""
        self.tarballs.mkdir(parents=True, exist_ok=True)
        if self.tarball.exists() and time.time() - self.tarball.stat().st_mtime < BASE_MAX_AGE:
            return {"seconds": 0.0, "built": False, "bytes": self.tarball.stat().st_size}
        tmpdir = self.new_pp_tmpdir("tarball")
        # --merged-usr: the layout debootstrap gives ours for bookworm and later.
        argv = [*self.pp_common(tmpdir), "--merged-usr", "-s", str(self.tarball),
                "--no-install-purge-test", "--no-upgrade-test", "--apt", "eatmydata"]
        print(f"Building Debian piuparts' base tarball: {self.redact.argv(argv)}", flush=True)
        out = run_streamed(argv, self.scratch / "logs/prepare-piuparts.log", self.opts.timeout)
        leftovers = self.clean_pp_tmpdir(tmpdir)
        if out.returncode != 0 or not self.tarball.exists():
            tail = "\n".join(self.redact(line) for _t, line in out.lines[-30:])
            raise SystemExit(f"building the piuparts base tarball failed (exit {out.returncode}):\n{tail}")
        return {"seconds": out.wall, "built": True, "bytes": self.tarball.stat().st_size,
                "tmpdir_leftovers": leftovers}

    def new_pp_tmpdir(self, label: str) -> Path:
        self.counter += 1
        path = self.scratch / "piuparts-tmp" / f"{self.counter:03d}-{label}"
        path.mkdir(parents=True)
        return path

    def clean_pp_tmpdir(self, tmpdir: Path) -> list[str]:
        """Remove what Debian's piuparts left in its --tmpdir; return what that was."""
        left = sorted(p.name for p in tmpdir.iterdir()) if tmpdir.exists() else []
        mounts = resources.mounts_under(tmpdir)
        resources.remove_tree(tmpdir)  # kills processes rooted there, unmounts, removes
        return left + [f"mount:{m[len(str(tmpdir)):]}" for m in mounts]

    def make_subjects(self, names: Sequence[str]) -> list[Subject]:
        subjects = []
        for name in names:
            if name == "fixture":
                outdir = self.scratch / "debs"
                outdir.mkdir(parents=True, exist_ok=True)
                deb = FIXTURE.build(outdir)
                subjects.append(Subject("fixture", FIXTURE.name, deb))
            elif name.endswith(".deb") and Path(name).is_file():
                pkg = subprocess.run(["dpkg-deb", "-f", name, "Package"], capture_output=True, text=True,
                                     check=True).stdout.strip()
                subjects.append(Subject(Path(name).name, pkg, Path(name).absolute()))
            else:
                subjects.append(Subject(name, name))
        return subjects

    # ---- the three kinds of run

    def run_ours_cold(self, subject: Subject, tag: str) -> dict[str, Any]:
        """Our run with the package and its dependencies never seen: caches emptied first."""
        for kept in ("debs", "layers"):
            resources.remove_tree(self.cache / kept)
        return self.run_ours(subject, tag)

    def run_ours(self, subject: Subject, tag: str) -> dict[str, Any]:
        json_path = self.scratch / "json" / f"{tag}.json"
        argv = [str(OURS), "--cache-dir", str(self.cache), "-d", self.dist, "-m", self.mirror,
                "--arch", self.arch, "--no-upgrade-test", *([] if self.opts.with_adequate else ["--no-adequate"]),
                "--json", str(json_path), *subject.args()]
        out = run_streamed(argv, self.scratch / "logs" / f"{tag}.log", self.opts.timeout)
        try:
            doc = json.loads(json_path.read_text())
        except (OSError, ValueError):
            doc = {}
        record = {"wall": out.wall, "exit_code": out.returncode, "timed_out": out.timed_out,
                  **parse_ours(out.lines, doc, out.wall)}
        if doc.get("error"):
            record["error"] = self.redact(doc["error"])
        return record

    def run_piuparts(self, subject: Subject, tag: str) -> dict[str, Any]:
        tmpdir = self.new_pp_tmpdir(tag)
        argv = [*self.pp_common(tmpdir), "-b", str(self.tarball), "--no-upgrade-test"]
        if not self.opts.with_adequate:
            argv.append("--no-adequate")
        argv += subject.args()
        out = run_streamed(argv, self.scratch / "logs" / f"{tag}.log", self.opts.timeout)
        leftovers = self.clean_pp_tmpdir(tmpdir)
        parsed = parse_pp_log(out.lines, out.wall)
        if parsed["verdict_line"]:
            parsed["verdict_line"] = self.redact(parsed["verdict_line"])
        record = {"wall": out.wall, "exit_code": out.returncode, "timed_out": out.timed_out,
                  "tmpdir_leftovers": leftovers, **parsed}
        if out.returncode != 0:
            record["log_tail"] = [self.redact(line) for _t, line in out.lines[-15:]]
        return record

    def run_floor(self, subject: Subject, tag: str) -> dict[str, Any]:
        """apt-get install + apt-get purge --autoremove, by hand, in a started instance."""
        self.setup_logging(self.scratch / "logs" / f"{tag}.log")
        backend = Backend.create("debootstrap", self.spec, self.cache, max_age=BASE_MAX_AGE,
                                 lists_max_age=LISTS_MAX_AGE)
        apt = ["eatmydata", "apt-get", "-y"]
        record: dict[str, Any] = {}
        wall_start = time.monotonic()
        try:
            backend.prepare()
            t0 = time.monotonic()
            with backend.instance() as chroot:
                record["instance_start"] = round(time.monotonic() - t0, 3)
                before = installed_packages(chroot)
                target = chroot.copy_in(subject.deb, "/tmp/piuparts-debs") if subject.deb else subject.name
                install = chroot.run([*apt, "install", target], timeout=self.opts.timeout)
                purge = chroot.run([*apt, "purge", "--autoremove", subject.name], timeout=self.opts.timeout)
                after = installed_packages(chroot)
                t1 = time.monotonic()
            record["instance_removal"] = round(time.monotonic() - t1, 3)
        finally:
            backend.close()
        record.update({
            "apt": round(install.elapsed + purge.elapsed, 3),
            "install": round(install.elapsed, 3), "purge": round(purge.elapsed, 3),
            "exit_codes": [install.returncode, purge.returncode],
            "ok": install.ok and purge.ok,
            # packages not back to how the base had them (should be none)
            "residue": sorted(p for p in set(after) | set(before) if after.get(p) != before.get(p)),
            "wall_with_instance": round(time.monotonic() - wall_start, 3),
        })
        return record

    # ---- the loop

    def run(self) -> dict[str, Any]:
        opts = self.opts
        started = now_iso()
        (self.scratch / "logs").mkdir(parents=True)
        (self.scratch / "json").mkdir()
        subjects = self.make_subjects(opts.packages)
        res = self.result = {
            "schema": 1,
            "started": started,
            "command": " ".join(shlex.quote(a) for a in sys.argv),
            "rounds": opts.rounds,
            "tools": list(opts.tools),
            "machine": {"nproc": os.cpu_count(), "kernel": platform.release(), "loadavg_start": loadavg()},
            "distribution": self.dist, "architecture": self.arch, "components": list(COMPONENTS),
            "mirror": "the host's (from its apt sources; not recorded)",
            "versions": {"piuparts-ng": OURS_VERSION},
            "commands": {},
            "bases": {},
            "packages": {},
        }
        if {"ours", "ours-warm", "floor"} & set(opts.tools):
            print("Preparing our cached base...", flush=True)
            res["bases"]["ours"] = self.prepare_ours()
            print(f"  {res['bases']['ours']}", flush=True)
        if "piuparts" in opts.tools:
            res["versions"]["debian-piuparts"] = self.pp_version()
            res["bases"]["piuparts"] = self.prepare_piuparts()
            print(f"  piuparts base tarball: {res['bases']['piuparts']}", flush=True)
            res["commands"]["piuparts"] = self.redact.argv(
                [*self.pp_common(Path("TMPDIR")), "-b", str(self.tarball), "--no-upgrade-test",
                 *([] if opts.with_adequate else ["--no-adequate"]), "[--apt] PACKAGE"])
        res["commands"]["ours"] = self.redact.argv(
            [str(OURS), "--cache-dir", str(self.cache), "-d", self.dist, "-m", self.mirror, "--arch", self.arch,
             "--no-upgrade-test", *([] if opts.with_adequate else ["--no-adequate"]), "--json", "F",
             "[--apt] PACKAGE"])
        res["commands"]["floor"] = "eatmydata apt-get -y install PACKAGE; eatmydata apt-get -y purge --autoremove PACKAGE"

        runners: dict[str, Callable[[Subject, str], dict[str, Any]]] = {
            "ours": self.run_ours_cold, "ours-warm": self.run_ours, "piuparts": self.run_piuparts,
            "floor": self.run_floor}
        round_start = time.monotonic()
        for subject in subjects:
            entry = res["packages"].setdefault(subject.label, {"name": subject.name, "runs": {t: [] for t in opts.tools}})
            if "ours-warm" in opts.tools:  # the untimed run that makes the next ones warm
                tag = f"{re.sub(r'[^A-Za-z0-9.+-]', '_', subject.label)}-prime"
                entry["prime"] = self.run_ours(subject, tag)
                print(f"  {subject.label} priming run  {fmt(entry['prime'].get('wall'), '8.2f')} s", flush=True)
            for rnd in range(opts.rounds):
                order = list(opts.tools[rnd % len(opts.tools):]) + list(opts.tools[:rnd % len(opts.tools)])
                for tool in order:
                    tag = f"{re.sub(r'[^A-Za-z0-9.+-]', '_', subject.label)}-r{rnd + 1}-{tool}"
                    load = loadavg()
                    t = time.monotonic()
                    try:
                        rec = runners[tool](subject, tag)
                    except Exception as err:  # noqa: BLE001 - one broken run must not lose the others
                        rec = {"error": self.redact(f"{type(err).__name__}: {err}")}
                    rec["round"] = rnd + 1
                    rec["loadavg_before"] = load
                    entry["runs"][tool].append(rec)
                    shown = rec.get("wall", rec.get("apt"))
                    code = rec.get("exit_code", rec.get("exit_codes", rec.get("error")))
                    print(f"  {subject.label} round {rnd + 1} {tool:8s} {fmt(shown, '8.2f')} s  exit {code}"
                          f"  (took {time.monotonic() - t:.1f} s, load {load[0] if load else '?'})", flush=True)
            entry["medians"] = medians(entry["runs"])
            self.write(res)
        res["seconds_timed_runs"] = round(time.monotonic() - round_start, 1)
        res["machine"]["loadavg_end"] = loadavg()
        res["finished"] = now_iso()
        return res

    def write(self, res: dict[str, Any]) -> None:
        out = Path(self.opts.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = self.redact(json.dumps(res, indent=1, sort_keys=False)) + "\n"
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)

    def cleanup(self) -> dict[str, Any]:
        """Remove the scratch directory and anything our runs left; check no mount stays."""
        report: dict[str, Any] = {}
        self.setup_logging(None)
        logs = self.scratch / "logs"
        if self.opts.keep_logs and logs.is_dir():
            keep = Path(self.opts.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for path in sorted(logs.iterdir()):
                (keep / path.name).write_text(self.redact(path.read_text(errors="replace")))
            report["logs_kept_in"] = str(keep)
        if self.scratch.exists():
            try:
                resources.remove_tree(self.scratch)
            except Exception as err:  # noqa: BLE001 - reported, never hidden
                report["scratch_error"] = str(err)
        subprocess.run([str(OURS), "cleanup", "--cache-dir", str(self.cache)], capture_output=True, timeout=600)
        report["mounts_left"] = resources.mounts_under(self.work)
        report["processes_left"] = [cmd for _pid, cmd in resources.processes_under(self.work)]
        findmnt = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
        report["findmnt_under_work_dir"] = [m for m in findmnt.split() if m.startswith(str(self.work) + "/")]
        return report


#: Our split's columns.
SPLIT = ("instance_start", "dependency_layer", "apt_dpkg", "snapshots_diff", "cleanup", "other")


def medians(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over rounds of everything the table shows."""
    ours, pp, floor = runs.get("ours", []), runs.get("piuparts", []), runs.get("floor", [])
    m: dict[str, Any] = {}
    for tool, key in (("ours", "ours"), ("ours-warm", "ours_warm")):
        mine = runs.get(tool, [])
        if mine:
            m[key] = median([r.get("wall") for r in mine])
            m[f"{key}_split"] = {k: median([r.get("split", {}).get(k) for r in mine]) for k in SPLIT}
            m[f"{key}_exit_codes"] = [r.get("exit_code", "error") for r in mine]
    if pp:
        m["piuparts"] = median([r.get("wall") for r in pp])
        m["piuparts_phases"] = {k: median([r.get("phases", {}).get(k) for r in pp]) for k in PP_PHASES}
        m["piuparts_exit_codes"] = [r.get("exit_code", "error") for r in pp]
    if floor:
        m["floor"] = median([r.get("apt") for r in floor])
        m["floor_ok"] = all(r.get("ok") for r in floor)
    pairs = {r["round"]: r.get("wall") for r in pp}
    for tool, key in (("ours", "ratio_ours_piuparts"), ("ours-warm", "ratio_warm_piuparts")):
        mine = runs.get(tool, [])
        if mine and pp:
            m[key] = median([r["wall"] / pairs[r["round"]] for r in mine
                             if r.get("wall") is not None and pairs.get(r["round"])])
    if m.get("ours") is not None and m.get("floor") is not None:
        m["overhead"] = round(m["ours"] - m["floor"], 3)
        m["overhead_pct"] = round(100 * m["overhead"] / m["ours"], 1) if m["ours"] else None
    return m


# --------------------------------------------------------------------------
# the tables


def fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def table(res: dict[str, Any]) -> str:
    """Markdown tables: the comparison, our split, Debian piuparts' split."""
    out = []
    head = ["package", "ours cold", "ours warm", "piuparts", "cold/piuparts", "warm/piuparts", "floor",
            "overhead (cold-floor)", "exit cold,warm", "piuparts exit"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for label, entry in res["packages"].items():
        m = entry.get("medians", {})
        overhead = "-" if m.get("overhead") is None else f"{m['overhead']:.2f} ({fmt(m.get('overhead_pct'), '.0f')}%)"
        out.append("| " + " | ".join([
            label, fmt(m.get("ours")), fmt(m.get("ours_warm")), fmt(m.get("piuparts")),
            fmt(m.get("ratio_ours_piuparts"), ".3f"), fmt(m.get("ratio_warm_piuparts"), ".3f"),
            fmt(m.get("floor")), overhead,
            ",".join(str(c) for c in m.get("ours_exit_codes", []) + m.get("ours_warm_exit_codes", [])) or "-",
            ",".join(str(c) for c in m.get("piuparts_exit_codes", [])) or "-"]) + " |")
    if any(e.get("medians", {}).get(k) for e in res["packages"].values() for k in ("ours_split", "ours_warm_split")):
        out.append("")
        head = ["package", "run", "instance start", "dependency layer", "apt/dpkg", "snapshots+diff", "cleanup",
                "other"]
        out.append("Our split (medians, seconds):")
        out.append("")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for label, entry in res["packages"].items():
            for key, run in (("ours_split", "cold"), ("ours_warm_split", "warm")):
                s = entry.get("medians", {}).get(key)
                if s:
                    out.append("| " + " | ".join([label, run, fmt(s["instance_start"], ".3f"),
                                                  fmt(s["dependency_layer"]), fmt(s["apt_dpkg"]),
                                                  fmt(s["snapshots_diff"], ".3f"), fmt(s["cleanup"], ".3f"),
                                                  fmt(s["other"])]) + " |")
    if any(e.get("medians", {}).get("piuparts_phases") for e in res["packages"].values()):
        out.append("")
        out.append("Debian piuparts' split (medians, seconds):")
        out.append("")
        out.append("| package | " + " | ".join(PP_PHASES) + " |")
        out.append("|" + "---|" * (len(PP_PHASES) + 1))
        for label, entry in res["packages"].items():
            p = entry.get("medians", {}).get("piuparts_phases")
            if p:
                out.append("| " + " | ".join([label, *(fmt(p[k]) for k in PP_PHASES)]) + " |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds per package (default: %(default)s)")
    p.add_argument("--packages", nargs="+", default=DEFAULT_PACKAGES, metavar="PKG",
                   help="'fixture', a .deb path, or archive package names (default: %(default)s)")
    p.add_argument("--out", default=str(ROOT / "bench/results/latest.json"),
                   help="where the raw figures and medians go (default: %(default)s)")
    p.add_argument("--work-dir", default="/var/tmp/piuparts-bench",
                   help="cache, base tarball and scratch space (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=3600.0, help="time limit of one run (default: %(default)s s)")
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS),
                   help="which of the three to run (default: all)")
    p.add_argument("--with-adequate", action="store_true",
                   help="let both tools run adequate (their default when it is installed on the host; "
                        "off by default here: --no-adequate to both)")
    p.add_argument("--keep-logs", metavar="DIR",
                   help="copy every run's time-stamped log here (mirror redacted); default: thrown away")
    opts = p.parse_args(argv)
    if opts.rounds < 1:
        p.error("--rounds must be at least 1")
    opts.tools = tuple(t for t in TOOLS if t in opts.tools)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)
    bench = Bench(opts)
    bench.check_tools()
    t0 = time.monotonic()
    code = 0
    try:
        res = bench.run()
    except (KeyboardInterrupt, Interrupted) as err:
        print(f"interrupted ({err or 'Ctrl-C'}); cleaning up", flush=True)
        res, code = bench.result, 130
        if res:
            res["interrupted"] = True
    finally:
        report = bench.cleanup()
        print(f"Cleanup: mounts left under {bench.work}: {report['findmnt_under_work_dir'] or 'none'}; "
              f"processes left: {report['processes_left'] or 'none'}", flush=True)
    if res:
        res["cleanup"] = report
        res["seconds_total"] = round(time.monotonic() - t0, 1)
        bench.write(res)
        print()
        print(bench.redact(table(res)))
        print()
        print(f"Total {res['seconds_total']} s; raw figures and medians in {opts.out}")
    if report["findmnt_under_work_dir"] or report["processes_left"]:
        code = code or 3
    return code


if __name__ == "__main__":
    sys.exit(main())
