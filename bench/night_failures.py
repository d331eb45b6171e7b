#!/usr/bin/env python3
"""The failed-testing packages of a night, with what failed and the evidence.

    .venv/bin/python bench/night_failures.py WORK [--section NAME] [--markdown]

WORK is bench/night.py's work directory.  For every package whose latest
result in the database is FAIL: each failing finding (check, path or
step, whom it blames), and, read from the tested .deb in the cache
(WORK/cache/debs), which of its maintainer scripts name the leftover path,
and the last lines of a failed step's output from the test's log.  It
is the material of the table in bench/README.md, where each row says
whether the verdict is a true defect or a false one, and why.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
import subprocess
import tempfile
from pathlib import Path


def latest_failures(db: Path, section: str | None) -> list[tuple[str, str, str, dict, str | None]]:
    """(section, package, version, result, log path) of each package whose latest result failed."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("select section, package, version, verdict, result_json, log_path from results r where id = "
                       "(select max(id) from results where section = r.section and package = r.package)"
                       + (" and section = ?" if section else "") + " order by section, package",
                       (section,) if section else ()).fetchall()
    return [(s, p, v, json.loads(j), log) for s, p, v, verdict, j, log in rows if verdict == "FAIL"]


def scripts_naming(deb: Path | None, path: str) -> list[str]:
    """The maintainer scripts of ``deb`` that mention ``path`` (or its last component)."""
    if deb is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-e", str(deb), tmp], check=True)
        name = path.rstrip("/").rsplit("/", 1)[-1]
        return sorted(p.name for p in Path(tmp).iterdir()
                      if p.name in ("preinst", "postinst", "prerm", "postrm", "config")
                      and (path.rstrip("/") in p.read_text(errors="replace") or name in p.read_text(errors="replace")))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=Path)
    p.add_argument("--section")
    opts = p.parse_args()
    debs = opts.work / "cache" / "debs"
    for section, package, version, result, log_path in latest_failures(opts.work / "batch.sqlite", opts.section):
        plain = version.split(":", 1)[-1]
        deb = next(iter(sorted(debs.glob(f"{package}_*{plain}_*.deb"))), None)
        print(f"## {section} {package} {version}")
        for scenario in result.get("scenarios", []):
            for finding in scenario.get("findings", []):
                if finding["severity"] != "fail":
                    continue
                blame = finding.get("blame") or []
                who = ", ".join(blame[:3]) + (f" (+{len(blame) - 3})" if len(blame) > 3 else "")
                named = scripts_naming(deb, finding["subject"]) if finding["check"] != "steps" else []
                print(f"  {finding['check']}: {finding['subject']}: {finding['message'][:160]} [blame: {who}]"
                      + (f" [named in: {', '.join(named)}]" if named else ""))
        if log_path and Path(log_path).exists() and any(
                f["check"] == "steps" for s in result.get("scenarios", []) for f in s.get("findings", [])):
            lines = gzip.open(log_path, "rt", errors="replace").read().splitlines()
            said = [line for line in lines if "WARNING:   |" in line][-6:]
            for line in said:
                print("    " + line.split("|", 1)[-1].strip()[:200])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
