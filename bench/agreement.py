#!/usr/bin/env python3
"""Agreement with Debian's piuparts on real packages of a section, drawn at random.

Run as root from the project directory:

    .venv/bin/python bench/agreement.py CONF --section NAME [--count 40] [--seed S] [--work-dir DIR]

CONF is a batch configuration (conf/openstack-bookworm.conf); the
section's packages are the ones ``piuparts batch status CONF --json``
lists.  COUNT of them are drawn with random.Random(SEED) (the seed is
printed; rerun with another to draw others).  Both tools test each one
with ``--no-upgrade-test --apt PACKAGE`` from the same base tarball (made
once by Debian's piuparts with ``-s``, untimed), the same mirror (the
section's, else the host's apt sources) and architecture, one after the
other:

  ours      piuparts -b TARBALL --no-upgrade-test --json ... --apt P
  piuparts  /usr/sbin/piuparts -b TARBALL --no-upgrade-test -l ... --apt P

and a table says, for each package, both verdicts and what each found:
our failing checks and paths; piuparts' paths "left on system" after
purge and its first error.  Where the verdicts differ the row is marked
``DIFF`` and the evidence is in WORK/logs (both tools' full logs).
Results also go to WORK/agreement-SEED.json, rewritten after each package.
"""

from __future__ import annotations

import argparse
import configparser
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from piuparts import aptsources  # noqa: E402
from piuparts.options import host_architecture  # noqa: E402

OURS = [sys.executable, "-m", "piuparts"]
DEBIAN_PIUPARTS = "/usr/sbin/piuparts"


def section_packages(conf: Path, section: str) -> tuple[list[str], str, str]:
    """The section's package names, its distribution and its mirror."""
    status = subprocess.run([*OURS, "batch", "status", str(conf), "--json"], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    doc = json.loads(status.stdout)["sections"][section]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(conf)
    distro = parser.get(section, "distro", fallback=parser.get("global", "distro", fallback="bookworm"))
    mirror = parser.get(section, "mirror", fallback=parser.get("global", "mirror", fallback="")) or \
        aptsources.default_distribution_and_mirror(aptsources.read_host_sources(), aptsources.host_codename())[1]
    return sorted(doc["packages"]), distro, mirror


def piuparts_log_findings(log: str) -> tuple[list[str], str]:
    """The paths piuparts says were left after purge, and its first error line."""
    left: list[str] = []
    collecting = False
    for line in log.splitlines():
        message = re.sub(r"^\d+m\d+\.\d+s \w+: ", "", line)
        if "left files on system" in message or "files left on system" in message:
            collecting = True
            continue
        if collecting:
            match = re.match(r"^\s+(/\S*)", message)
            if match:
                left.append(match.group(1))
                continue
            collecting = False
    errors = [re.sub(r"^\d+m\d+\.\d+s ERROR: ", "", line) for line in log.splitlines() if " ERROR: " in line]
    return sorted(set(left)), (errors[0][:200] if errors else "")


def ours_findings(report: dict[str, Any]) -> list[str]:
    """``check: path`` of every failing finding."""
    return sorted(f"{f['check']}: {f['subject']}" for s in report.get("scenarios", []) for f in s["findings"]
                  if f["severity"] == "fail")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--section", required=True)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    p.add_argument("--work-dir", type=Path, default=Path("/var/tmp/piuparts-agreement"))
    p.add_argument("--timeout", type=float, default=3600)
    opts = p.parse_args()
    work = opts.work_dir.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    packages, distro, mirror = section_packages(opts.config.resolve(), opts.section)
    drawn = sorted(random.Random(opts.seed).sample(packages, min(opts.count, len(packages))))
    print(f"seed {opts.seed}: {len(drawn)} of the {len(packages)} packages of {opts.section}", flush=True)
    arch = host_architecture()
    tarball = work / f"{distro}-{arch}.tgz"
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    theirs_common = [DEBIAN_PIUPARTS, "--tmpdir", str(tmp), "-d", distro, "-m", f"{mirror} main", "--arch", arch]
    if not tarball.exists():
        subprocess.run([*theirs_common, "--merged-usr", "-s", str(tarball), "--no-install-purge-test",
                        "--no-upgrade-test", "--apt", "eatmydata"], capture_output=True, timeout=opts.timeout,
                       check=True)
    rows = []
    for package in drawn:
        ours_json, ours_log = work / "logs" / f"{package}.ours.json", work / "logs" / f"{package}.ours.log"
        theirs_log = work / "logs" / f"{package}.piuparts.log"
        ours = subprocess.run([*OURS, "-b", str(tarball), "-d", distro, "-m", f"{mirror} main", "--arch", arch,
                               "--cache-dir", str(work / "cache"), "--no-upgrade-test", "--json", str(ours_json),
                               "-l", str(ours_log), "--apt", package], capture_output=True, text=True,
                              timeout=opts.timeout, cwd=ROOT)
        theirs = subprocess.run([*theirs_common, "-b", str(tarball), "--no-upgrade-test", "-l", str(theirs_log),
                                 "--apt", package], capture_output=True, text=True, timeout=opts.timeout)
        report = json.loads(ours_json.read_text()) if ours_json.exists() else {}
        left, error = piuparts_log_findings(theirs_log.read_text(errors="replace") if theirs_log.exists() else "")
        row = {"package": package, "ours": report.get("verdict", f"exit {ours.returncode}"),
               "ours_exit": ours.returncode, "ours_findings": ours_findings(report),
               "piuparts": "PASS" if theirs.returncode == 0 else "FAIL", "piuparts_exit": theirs.returncode,
               "piuparts_left": left, "piuparts_error": error}
        row["agree"] = (row["ours_exit"] == 0) == (row["piuparts_exit"] == 0)
        rows.append(row)
        print(f"{'    ' if row['agree'] else 'DIFF'} {package}: ours {row['ours']} {row['ours_findings'][:4]}; "
              f"piuparts {row['piuparts']} {left[:4]} {error[:120]}", flush=True)
        # Written after each package: a run stopped half-way keeps the rows it finished.
        (work / f"agreement-{opts.seed}.json").write_text(json.dumps(
            {"seed": opts.seed, "section": opts.section, "drawn": drawn, "rows": rows}, indent=1))
    agreed = sum(r["agree"] for r in rows)
    print(f"agreement: {agreed} of {len(rows)} verdicts (seed {opts.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
