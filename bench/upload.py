#!/usr/bin/env python3
"""The night after an upload: two team packages land in the team's own
reprepro repository, on top of the archive section, and the next night
tests those and nothing else.

    .venv/bin/python bench/upload.py WORK [--config conf/openstack-bookworm.conf]
    .venv/bin/python bench/night.py WORK/openstack-bookworm-upload.conf --work-dir WORK --section team-upload

WORK is the work directory of bench/night.py's first night (its cache
holds the .debs the night fetched).  This makes, with dpkg-deb:

- a rebuild of python3-oslo.i18n (the same contents, version +rebuild1);
- a new upstream-like version of python3-oslo.config (version bumped,
  one file added under /usr/share/doc);

includes both in a reprepro repository WORK/team-repo (codename
bookworm), and writes WORK/openstack-bookworm-upload.conf: the committed
configuration plus a section ``[team-upload]`` whose ``repository =`` is
that repository and whose ``depends-sections`` is the bookworm section,
as a team's CI configuration would have it.
"""

from __future__ import annotations

import argparse
import configparser
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (package, what is done to it, the version suffix).
UPLOADS = (("python3-oslo.i18n", "rebuild", "+rebuild1"), ("python3-oslo.config", "new version", "+pp1"))


def repack(deb: Path, suffix: str, add_file: bool, out: Path) -> Path:
    """``deb`` with ``suffix`` added to its version (and a file added when ``add_file``)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
        control = tree / "DEBIAN" / "control"
        lines = control.read_text().splitlines()
        version = next(line.split(": ", 1)[1] for line in lines if line.startswith("Version: "))
        control.write_text("\n".join(f"Version: {version}{suffix}" if line.startswith("Version: ") else line
                                     for line in lines) + "\n")
        if add_file:
            name = next(line.split(": ", 1)[1] for line in lines if line.startswith("Package: "))
            doc = tree / "usr/share/doc" / name
            doc.mkdir(parents=True, exist_ok=True)
            (doc / "NEWS.pp").write_text(f"{name} {version}{suffix}: a new version for the bench\n")
            md5sums = tree / "DEBIAN" / "md5sums"
            if md5sums.exists():
                digest = subprocess.run(["md5sum", f"usr/share/doc/{name}/NEWS.pp"], cwd=tree, check=True,
                                        capture_output=True, text=True).stdout
                md5sums.write_text(md5sums.read_text() + digest)
        out.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)], check=True,
                              capture_output=True, text=True).stdout  # names it NAME_VERSION_ARCH.deb
        return Path(made.rsplit("'", 2)[-2])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=Path)
    p.add_argument("--config", type=Path, default=ROOT / "conf" / "openstack-bookworm.conf")
    opts = p.parse_args()
    work = opts.work.resolve()
    repo = work / "team-repo"
    for old in (repo, work / "uploads"):
        if old.exists():
            shutil.rmtree(old)
    (repo / "conf").mkdir(parents=True)
    (repo / "conf" / "distributions").write_text(
        "Codename: bookworm\nSuite: bookworm\nComponents: main\nArchitectures: amd64\n")
    for package, what, suffix in UPLOADS:
        deb = sorted((work / "cache" / "debs").glob(f"{package}_*_all.deb"))[-1]
        built = repack(deb, suffix, what == "new version", work / "uploads")
        subprocess.run(["reprepro", "-b", str(repo), "includedeb", "bookworm", str(built)], check=True,
                       capture_output=True)
        print(f"{what}: {built.name}")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(opts.config)
    parser["global"]["sections"] += " team-upload"
    parser["team-upload"] = {
        "description": '"The team\'s own repository on top of bookworm: what was uploaded since the night"',
        "distro": "bookworm", "repository": f'"deb [trusted=yes] file://{repo} bookworm main"',
        "depends-sections": "bookworm-openstack", "precedence": "0"}
    conf = work / "openstack-bookworm-upload.conf"
    with conf.open("w") as out:
        out.write(f"# {opts.config} and the team's repository (bench/upload.py)\n")
        parser.write(out)
    print(f"wrote {conf}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
