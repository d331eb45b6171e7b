"""-d NAME through a distros.conf, for real: the base is the chain's first
release, the instance's apt sources the whole chain, and the target
release is what apt installs from (piuparts' -t), here a team repository
whose hello is older than bookworm's."""

from __future__ import annotations

import pytest

from tests.debs import DebSpec, reprepro
from tests.integration.helpers import leaks, piuparts, serve_directory

pytestmark = [pytest.mark.root, pytest.mark.network]

#: Older than bookworm's hello (2.10-3): only the target release makes apt take it.
TEAM_HELLO = DebSpec("hello", "1.0-0pp1", files={"/usr/share/doc/hello/pp-team": "from the team's repository\n"})


def test_a_distros_conf_chain_with_a_target_release(cache_dir, debs, tmp_path):
    repo = tmp_path / "repo"
    reprepro(repo, [debs(TEAM_HELLO)])
    conf = tmp_path / "distros.conf"
    with serve_directory(repo) as server:  # over HTTP on the host's loopback, as a team's archive is served
        conf.write_text(f"[bookworm-team]\nuri = http://127.0.0.1:{server.server_port}\ndistribution = pp\n"
                        "depends = bookworm\ntarget-release = pp\n")
        # Unsigned, as reprepro made it: --do-not-verify-signatures, as piuparts users give it.
        run = piuparts(cache_dir, tmp_path, "-d", "bookworm-team", "--distros-conf", str(conf),
                       "--do-not-verify-signatures", "-v", "--apt", "hello")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"-d bookworm-team: {conf} makes it bookworm + pp, installing from pp" in run.stdout
    assert run.report["distribution"] == "bookworm"
    assert "Unpacking hello (1.0-0pp1)" in run.stdout  # the target release's, not bookworm's 2.10-3
    assert leaks(cache_dir) == []
