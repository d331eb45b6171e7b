"""Fixtures the integration modules share."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from piuparts import api, cli


@pytest.fixture(scope="module")
def base_root(cache_dir: Path) -> Iterator[Path]:
    """The cached base of the host's distribution (made if missing), held
    (its shared lock) while the module's tests read it: a lists refresh by
    another run then makes the next generation beside it instead of
    removing it under them.  The modules that refresh the shared base run
    apart from those that use this (tests/conftest.py, TOGETHER), so that
    what they count of its generations is theirs."""
    config, _ = cli.config_from_argv(["--cache-dir", str(cache_dir)])
    with api.Session(config) as session:
        assert session.backend is not None
        yield getattr(session.backend, "root")
