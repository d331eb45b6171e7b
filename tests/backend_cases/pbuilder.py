"""The tarball backend on a real pbuilder base (``pbuilder create``), given with -b.

pbuilder create takes minutes, so its tarball is kept in the test cache
and made again only when it is a week old.  The distribution and mirror
are the host's, as the harness itself defaults to.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.backend_cases import BackendCase, made_once

MAX_AGE = 7 * 86400


def available() -> str | None:
    if not shutil.which("pbuilder"):
        return "pbuilder is not installed (apt-get install pbuilder)"
    return None if shutil.which("tar") else "tar is not installed"


@made_once("pbuilder-base")
def basetgz(cache_dir: Path) -> Path:
    """pbuilder's base tarball of the host's distribution, made when missing or a week old."""
    from piuparts import aptsources
    path = cache_dir / "test-inputs" / "pbuilder-base.tgz"
    if path.is_file() and time.time() - path.stat().st_mtime < MAX_AGE:
        return path
    distribution, mirror = aptsources.default_distribution_and_mirror(
        aptsources.read_host_sources(), aptsources.host_codename())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tgz")
    buildplace = path.parent / "pbuilder-build"
    buildplace.mkdir(exist_ok=True)
    start = time.monotonic()
    try:
        subprocess.run(["pbuilder", "create", "--basetgz", str(partial), "--distribution", distribution,
                        "--mirror", mirror, "--buildplace", str(buildplace), "--aptcache", ""],
                       check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=3600)
    except subprocess.CalledProcessError as err:
        partial.unlink(missing_ok=True)
        raise AssertionError(f"pbuilder create failed:\n{err.stdout.decode(errors='replace')[-3000:]}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.rename(partial, path)
    print(f"pbuilder create took {time.monotonic() - start:.1f} s")
    return path


def case(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BackendCase:
    return BackendCase("tarball", ["-b", str(basetgz(cache_dir))])
