"""A backend's own options: declared once in its class, on the command line,
choosing the backend, carried in RunConfig.backend_options and checked there."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from piuparts import api, cli
from piuparts.backends import Backend, BaseSpec, Capabilities, Option
from piuparts.config import RunConfig
from piuparts.errors import UsageError

COMMON = ["-d", "bookworm", "-m", "http://mirror.invalid/debian", "--arch", "amd64", "--cache-dir", "/var/tmp/c"]


def chosen(*argv: str) -> tuple[str, dict[str, Any]]:
    cfg, _ = cli.config_from_argv([*COMMON, *argv])
    assert RunConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg  # what a worker would get
    return cfg.backend, cfg.backend_options


@pytest.fixture
def debian_tree(tmp_path: Path) -> Path:
    (tmp_path / "sid/var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "sid/var/lib/dpkg/status").write_text("")
    return tmp_path / "sid"


def test_no_backend_option_is_debootstrap() -> None:
    assert chosen() == ("debootstrap", {})


def test_each_backend_takes_its_own_options(tmp_path: Path, debian_tree: Path, monkeypatch) -> None:
    tarball = tmp_path / "base.tgz"
    tarball.write_bytes(b"\x1f\x8b")
    monkeypatch.chdir(tmp_path)
    assert chosen("-b", "base.tgz") == ("tarball", {"basetgz": str(tarball)})
    assert chosen("-e", str(debian_tree), "--hard-link") == (
        "existing", {"existing_chroot": str(debian_tree), "hard_link": True})
    assert chosen("--schroot", "bookworm-amd64") == ("schroot", {"schroot": "bookworm-amd64"})
    assert chosen("--lvm-volume", "vg0/base", "--lvm-snapshot-size", "2G") == (
        "lvm", {"lvm_volume": "vg0/base", "lvm_snapshot_size": "2G"})


def test_pbuilder_is_the_tarball_pbuilderrc_names(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "pb.tgz").write_bytes(b"\x1f\x8b")
    (tmp_path / "home/.pbuilderrc").write_text(f"BASETGZ={tmp_path}/pb.tgz\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert chosen("-p") == ("tarball", {"basetgz": f"{tmp_path}/pb.tgz"})


@pytest.mark.parametrize("argv, message", [
    (["-b", "/srv/base.tgz", "--schroot", "sid"],
     "-b and --schroot contradict each other: each says where the chroot comes from; give only one"),
    (["-p", "--lvm-volume", "vg/lv"], "-p and --lvm-volume contradict each other"),
    (["--hard-link"], "--hard-link only applies to -e/--existing-chroot"),
    (["--lvm-snapshot-size", "2G", "--schroot", "sid"], "--lvm-snapshot-size only applies to --lvm-volume"),
    (["-b", "/nonexistent/base.tgz"], "-b: the base tarball /nonexistent/base.tgz does not exist"),
    (["-e", "/nonexistent"], "-e /nonexistent: not a Debian system (no var/lib/dpkg/status in it)"),
])
def test_backend_options_that_do_not_go_together(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        chosen(*argv)
    assert str(err.value).startswith(message)


class _Made(Exception):
    pass


@pytest.fixture
def toy_backend() -> Iterator[type[Backend]]:
    """A backend defined in one place, as a new module in piuparts/backends would be."""

    class ToyBackend(Backend, name="toy"):
        capabilities = Capabilities(host_root=True, upper_dir=False)
        options = (Option(("--toy-tree",), "toy_tree", "a toy tree", kind="path", metavar="DIR"),
                   Option(("--toy-speed",), "toy_speed", "how fast", selects=False, default="slow"))

        @classmethod
        def from_options(cls, spec: BaseSpec, options: RunConfig) -> Backend:
            raise _Made(cls.setting(options, "toy_tree"), cls.setting(options, "toy_speed"))

        def _do_prepare(self) -> None:
            raise AssertionError("not reached")

        def _do_instance(self, layers: Sequence[Path]) -> Any:
            raise AssertionError("not reached")

    try:
        yield ToyBackend
    finally:
        del Backend.registry["toy"]


def test_a_new_backend_is_one_class(toy_backend: type[Backend]) -> None:
    assert "--toy-tree" in cli.parser().format_help()
    assert chosen("--toy-tree", "/srv/toy") == ("toy", {"toy_tree": "/srv/toy"})
    with pytest.raises(UsageError, match="^--toy-speed only applies to --toy-tree$"):
        chosen("--toy-speed", "fast")
    cfg, _ = cli.config_from_argv([*COMMON, "--toy-tree", "/srv/toy"])
    with ExitStack() as stack, pytest.raises(_Made) as made:
        stack.enter_context(api.Session(cfg))
    assert made.value.args == (Path("/srv/toy"), "slow")
