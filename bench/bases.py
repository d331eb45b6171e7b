#!/usr/bin/env python3
"""How long a base takes to make, mmdebstrap against debootstrap, alternated.

Each round makes the host's release's minbase twice, once with each tool
(the order swaps every round), through the project's own backend
(:class:`piuparts.backends.debootstrap.DebootstrapBackend` with ``tool=``),
each time in an empty cache directory of its own: so every figure is a
first build, with the whole finish (policy-rc.d, apt lists, eatmydata, apt's
binary cache).  Then it checks the two bases hold the same packages and the
same /usr layout, and prints one line a build and the medians.

    .venv/bin/python bench/bases.py [--rounds 3] [--work-dir /var/tmp/piuparts-bench-bases]

The mirror is the host's (its apt sources); it is never printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from piuparts.backends.lvm import host_spec  # noqa: E402
from piuparts.backends.debootstrap import TOOLS, DebootstrapBackend  # noqa: E402


def build(tool: str, work: Path) -> tuple[float, Path]:
    """Seconds to make a base with ``tool`` in a new cache under ``work``; the base's root."""
    cache = work / f"cache-{tool}"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    backend = DebootstrapBackend(host_spec(), cache, tool=tool)
    start = time.monotonic()
    backend.prepare()
    seconds = time.monotonic() - start
    root = backend.root
    backend.close()
    return seconds, root


def packages(root: Path) -> set[str]:
    out = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package}\n"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def usr_layout(root: Path) -> dict[str, str]:
    """What /bin, /sbin, /lib and /lib64 are in the base: links (to where) or directories."""
    return {name: (f"-> {(root / name).readlink()}" if (root / name).is_symlink() else "directory")
            for name in ("bin", "sbin", "lib", "lib64")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path("/var/tmp/piuparts-bench-bases"))
    parser.add_argument("--out", type=Path, help="the figures as JSON")
    args = parser.parse_args()
    times: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    roots: dict[str, Path] = {}
    for round_ in range(args.rounds):
        order = TOOLS if round_ % 2 == 0 else TOOLS[::-1]
        for tool in order:
            seconds, roots[tool] = build(tool, args.work_dir)
            times[tool].append(seconds)
            print(f"round {round_ + 1} {tool:12} {seconds:6.1f} s", flush=True)
    contents = {tool: packages(root) for tool, root in roots.items()}
    layouts = {tool: usr_layout(root) for tool, root in roots.items()}
    only = {tool: sorted(contents[tool] - contents[other]) for tool, other in zip(TOOLS, TOOLS[::-1])}
    medians = {tool: statistics.median(values) for tool, values in times.items()}
    print()
    for tool in TOOLS:
        print(f"{tool:12} median {medians[tool]:6.1f} s  ({', '.join(f'{t:.1f}' for t in times[tool])}); "
              f"{len(contents[tool])} packages, only here: {' '.join(only[tool]) or 'none'}")
    print(f"ratio debootstrap/mmdebstrap: {medians['debootstrap'] / medians['mmdebstrap']:.2f}")
    print(f"/usr layout the same: {layouts['mmdebstrap'] == layouts['debootstrap']} ({layouts['mmdebstrap']})")
    if args.out:
        args.out.write_text(json.dumps({"times": times, "medians": medians, "only": only, "layouts": layouts},
                                       indent=2))
    shutil.rmtree(args.work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
