"""The default backend: a cached debootstrap base, overlay instances."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backend_cases import BackendCase


def available() -> str | None:
    return None if Path("/usr/share/debootstrap/scripts").is_dir() else "debootstrap is not installed"


def case(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BackendCase:
    return BackendCase("debootstrap", [])
