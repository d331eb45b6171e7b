"""The existing backend with ``--hard-link``: each instance a hard-linked
copy of the tree, which must stay unchanged all the same (see the
existing case for the tree and the check)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.backend_cases import BackendCase
from tests.backend_cases.existing import plain_tree, unchanged_check


def available() -> str | None:
    if shutil.which("cp") is None:
        return "cp is not installed"
    return None if Path("/usr/share/debootstrap/scripts").is_dir() else "debootstrap is not installed"


def case(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BackendCase:
    # Its own tree, under the cache directory: hard links cannot cross filesystems.
    directory = plain_tree(cache_dir, "existing-hardlink-tree")
    return BackendCase("existing", ["-e", str(directory), "--hard-link"],
                       source_unchanged=unchanged_check(directory))
