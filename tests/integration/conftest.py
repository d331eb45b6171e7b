"""Fixtures the integration modules share."""

from __future__ import annotations

from pathlib import Path

import pytest

from piuparts import api, cli


@pytest.fixture(scope="session")
def base_root(cache_dir: Path) -> Path:
    """The cached debootstrap base of the host's distribution (made if missing)."""
    config, _ = cli.config_from_argv(["--cache-dir", str(cache_dir)])
    with api.Session(config) as session:
        assert session.backend is not None
        root: Path = getattr(session.backend, "root")
    return root
