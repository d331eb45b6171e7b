"""The overlay upper-directory fast path and the full walk agree on a real run."""

from __future__ import annotations

import pytest

from piuparts import aptsources
from piuparts.backends import Backend, BaseSpec
from piuparts.options import conf_dir, host_architecture
from piuparts.scenarios import TreeWatcher
from piuparts.state import Ignores
from tests.debs import LEFTOVER, RESHAPER

pytestmark = [pytest.mark.root, pytest.mark.network]


def host_spec() -> BaseSpec:
    dist, mirror = aptsources.default_distribution_and_mirror(aptsources.read_host_sources(),
                                                              aptsources.host_codename())
    return BaseSpec(dist, mirror, host_architecture())


def test_upper_dir_and_full_walk_give_identical_diffs(cache_dir, debs):
    ignores = Ignores.load(conf_dir() / "ignores.conf")
    backend = Backend.create("debootstrap", host_spec(), cache_dir)
    try:
        with backend.instance() as chroot:
            fast, slow = TreeWatcher(chroot, ignores, use_upper=True), TreeWatcher(chroot, ignores, use_upper=False)
            before_fast, before_slow = fast.take(), slow.take()
            targets = [chroot.copy_in(debs(spec), "/tmp/piuparts-debs") for spec in (LEFTOVER, RESHAPER)]
            assert chroot.run(["apt-get", "-y", "install", *targets]).ok
            assert chroot.run(["dpkg", "--purge", "pp-leftover", "pp-reshaper"]).ok
            after_fast, after_slow = fast.take(), slow.take()
            by_upper = fast.compare(before_fast, after_fast)
            by_walk = slow.compare(before_slow, after_slow)
    finally:
        backend.close()
    assert by_upper == by_walk
    assert set(by_walk.added) == {"/etc/x", "/etc/x/generated.conf", "/etc/skel/new", "/etc/dangling"}
    assert set(by_walk.removed) == {"/etc/debian_version", "/etc/skel/.bashrc", "/etc/skel/.profile",
                                    "/etc/skel/.bash_logout"}
    assert set(by_walk.modified) == {"/etc/issue", "/etc/issue.net"}
    old, new = by_walk.modified["/etc/issue"]
    assert (old.mode, new.mode, old.digest == new.digest) == (0o644, 0o600, True)
