"""Many runs on one cache at once: each gives the verdict it gives alone,
shares what can be shared (a dependency layer), and leaves nothing; a run
killed meanwhile does not disturb the others; a lists refresh does not wait
for the tests that use the old base."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from piuparts import resources
from tests.conftest import PIUPARTS
from tests.debs import CLEAN, LEFTOVER, SLOW_POSTINST, DebSpec
from tests.integration.helpers import leaks

pytestmark = [pytest.mark.root, pytest.mark.network]

#: Two packages with the same dependency set (less, from the archive), so one layer serves both.
LESS_CLEAN = DebSpec("pp-less-clean", depends="less")
LESS_LEFTOVER = DebSpec("pp-less-leftover", depends="less", scripts={
    "postinst": 'if [ "$1" = configure ]; then mkdir -p /var/lib/pp-less-leftover; '
                'echo 1 > /var/lib/pp-less-leftover/state; fi'})

EXPECTED = {
    "pp-clean": (0, []),
    "pp-leftover": (1, ["/etc/x/", "/etc/x/generated.conf"]),
    "pp-less-clean": (0, []),
    "pp-less-leftover": (1, ["/var/lib/pp-less-leftover/", "/var/lib/pp-less-leftover/state"]),
}


def start(cache_dir: Path, tmp_path: Path, deb: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    report = tmp_path / f"{deb.name}.json"
    proc = subprocess.Popen([*PIUPARTS, "--cache-dir", str(cache_dir), "--no-upgrade-test", "--json", str(report),
                             *args, str(deb)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, report


def finish(proc: subprocess.Popen[str], report: Path) -> tuple[int, dict, str]:
    output, _ = proc.communicate(timeout=600)
    return proc.returncode, json.loads(report.read_text()) if report.exists() else {}, output


def leftovers(report: dict) -> list[str]:
    return sorted(f["subject"] for s in report.get("scenarios", []) for f in s["findings"] if f["check"] == "leftovers")


def wait_for_sleep_inside(cache_dir: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not any("sleep" in cmd for _, cmd in resources.processes_under(cache_dir / "instances")):
        assert time.monotonic() < deadline and proc.poll() is None, "the slow postinst never ran"
        time.sleep(0.2)


def test_four_runs_at_once_give_their_own_verdicts_and_share_a_layer(cache_dir, debs, tmp_path):
    specs = [CLEAN, LEFTOVER, LESS_CLEAN, LESS_LEFTOVER]
    runs = {spec.name: start(cache_dir, tmp_path, debs(spec)) for spec in specs}
    results = {name: finish(*run) for name, run in runs.items()}
    for name, (code, report, output) in results.items():
        assert (code, leftovers(report)) == EXPECTED[name], output
    layers = {results[name][1]["dependency_layer"]["layer"] for name in ("pp-less-clean", "pp-less-leftover")}
    assert len(layers) == 1, "both packages depend on less alone: one layer"
    assert [p for p in (cache_dir / "layers").glob(".build-*") if not resources.owner_alive(p)] == []
    assert leaks(cache_dir) == []


def test_a_run_killed_mid_install_does_not_disturb_the_others(cache_dir, debs, tmp_path):
    victim, _ = start(cache_dir, tmp_path, debs(SLOW_POSTINST))
    others = {spec.name: start(cache_dir, tmp_path, debs(spec)) for spec in (CLEAN, LEFTOVER, LESS_CLEAN)}
    wait_for_sleep_inside(cache_dir, victim)
    victim.kill()
    victim.communicate(timeout=60)
    for name, run in others.items():
        code, report, output = finish(*run)
        assert (code, leftovers(report)) == EXPECTED[name], output
    cleanup = subprocess.run([*PIUPARTS, "cleanup", "--cache-dir", str(cache_dir)], capture_output=True, text=True)
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
    assert leaks(cache_dir) == []
    assert resources.processes_under(cache_dir) == []


def test_a_lists_refresh_does_not_wait_for_the_runs_on_the_old_base(debs, tmp_path):
    # A cache of its own, its base made here (about 10 s): refreshing the
    # suite's shared base would give every test of the other pytest-xdist
    # worker a new base halfway through its module (a dist-upgrade module
    # then rightly builds its reference again), and every layer after it.
    cache_dir = tmp_path / "cache"
    holder, _ = start(cache_dir, tmp_path, debs(SLOW_POSTINST))
    wait_for_sleep_inside(cache_dir, holder)
    code, report, output = finish(*start(cache_dir, tmp_path, debs(CLEAN), "--lists-max-age", "0.0001"))
    assert code == 0, output
    assert "Refreshing the apt lists of the base" in output
    assert holder.poll() is None, "the refresh ran beside the slow test, not after it"
    base = Path(report["base"]["base"])
    generations = sorted((p.name for p in base.glob("gen-*") if p.is_dir()), key=lambda n: int(n[4:]))
    assert len(generations) == 2 and report["base"]["generation"] == generations[-1]
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=60) == 128 + signal.SIGTERM
    # The old generation goes with the last run that held it, the holder
    # (every run on the default base holds its generation until it ends).
    deadline = time.monotonic() + 300
    while (left := sorted(p.name for p in base.glob("gen-*") if p.is_dir())) != [report["base"]["generation"]]:
        assert time.monotonic() < deadline, f"the old generation stayed after its last run ended: {left}"
        time.sleep(0.5)
    assert leaks(cache_dir) == []
