"""--scriptsdir: piuparts' hook names, order and environment; Debian's own hook directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.debs import CLEAN, LEFTOVER
from tests.integration.helpers import leaks, piuparts, blame_text, owner_text

pytestmark = [pytest.mark.root, pytest.mark.network]

DEBIAN_HOOKS = Path("/etc/piuparts/scripts")


def scripts(directory: Path, **bodies: str) -> Path:
    directory.mkdir()
    for name, body in bodies.items():
        (directory / name).write_text("#!/bin/sh\n" + body + "\n")
        (directory / name).chmod(0o755)
    return directory


def test_hooks_run_in_order_with_piuparts_environment(cache_dir, debs, tmp_path):
    log = "/tmp/hooks.log"  # inside the instance (ignored scratch space): the last hook checks the order
    hooks = scripts(tmp_path / "hooks", **{
        f"{phase}_record": f'echo "{phase} $PIUPARTS_OBJECTS $PIUPARTS_TEST $PIUPARTS_PHASE" >> {log}'
        for phase in ("pre_test", "pre_install", "post_install", "pre_remove", "post_remove", "post_purge")},
        post_test_verify=f"""printf '%s\\n' "pre_test pp-clean install install" "pre_install pp-clean install install" \
"post_install pp-clean install install" "pre_remove pp-clean install install" \
"post_remove pp-clean install install" "post_purge pp-clean install install" | diff - {log} >&2
[ "$PIUPARTS_DISTRIBUTION" = "$(. /etc/os-release; echo $VERSION_CODENAME)" ] || exit 3
rm {log}""")
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", str(hooks), "--no-upgrade-test", str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []


def test_failing_hook_fails_the_scenario(cache_dir, debs, tmp_path):
    hooks = scripts(tmp_path / "hooks", post_install_broken='echo "broken hook" >&2; exit 4')
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", str(hooks), "--no-upgrade-test", str(debs(CLEAN)))
    assert run.returncode == 1
    assert [(f["check"], f["subject"], f["message"]) for f in run.findings()] == [
        ("hooks", "post_install_broken", "post_install_broken exited with 4: broken hook")]
    assert leaks(cache_dir) == []


@pytest.mark.parametrize("status, code, verdict", [(1, 0, "SKIP"), (2, 1, "FAIL")])
def test_is_testable_skips_or_fails(cache_dir, debs, tmp_path, status, code, verdict):
    hooks = scripts(tmp_path / "hooks", is_testable_no=f'echo "not today"; exit {status}')
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", str(hooks), str(debs(CLEAN)))
    assert run.returncode == code, run.stdout + run.stderr
    assert [(s["name"], s["verdict"]) for s in run.report["scenarios"]] == [("is-testable", verdict)]


def test_missing_scriptsdir_is_a_usage_error(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", str(tmp_path / "nope"), str(debs(CLEAN)))
    assert run.returncode == 2
    assert run.stderr.strip() == f"piuparts: error: --scriptsdir {tmp_path}/nope: no such directory"


# Under CI, ./bootstrap has installed Debian's piuparts: a missing directory must fail there, not skip.
@pytest.mark.skipif(not DEBIAN_HOOKS.is_dir() and not os.environ.get("CI"),
                    reason="Debian's piuparts is not installed (./bootstrap installs it)")
@pytest.mark.parametrize("spec, code", [(CLEAN, 0), (LEFTOVER, 1)])
def test_debian_piuparts_hook_directory_runs_unchanged(cache_dir, debs, tmp_path, spec, code):
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", str(DEBIAN_HOOKS), str(debs(spec)))
    assert run.returncode == code, run.stdout + run.stderr
    assert "Running pre_remove scripts: pre_remove_40_find_missing_md5sums" in run.stdout
    expected = {("/etc/x/", "not owned"), ("/etc/x/generated.conf", "not owned")} if code else set()
    assert {(f["subject"], owner_text(f)) for f in run.findings()} == expected


def test_a_hook_that_undoes_itself_leaves_no_finding(cache_dir, debs, tmp_path):
    # piuparts records the system before the test's first hook: what pre_install does
    # and post_purge undoes is no change (as with Debian's scripts-log-alternatives).
    hooks = scripts(tmp_path / "hooks",
                    pre_install_divert="[ -e /usr/bin/cmp.orig ] && exit 0\n"
                                       "dpkg-divert --divert /usr/bin/cmp.orig --rename /usr/bin/cmp\n"
                                       "printf '#!/bin/sh\\nexec /usr/bin/cmp.orig \"$@\"\\n' > /usr/bin/cmp\n"
                                       "chmod +x /usr/bin/cmp",
                    post_purge_undivert="rm /usr/bin/cmp\ndpkg-divert --rename --remove /usr/bin/cmp")
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", str(hooks), "--no-upgrade-test", str(debs(CLEAN)))
    assert (run.returncode, run.findings()) == (0, []), run.stdout + run.stderr


@pytest.mark.skipif(not DEBIAN_HOOKS.is_dir() and not os.environ.get("CI"),
                    reason="Debian's piuparts is not installed (./bootstrap installs it)")
def test_debian_piuparts_bookworm_section_hooks_leave_a_clean_package_clean(cache_dir, debs, tmp_path):
    # piuparts.debian.org's [bookworm] section: the alternatives logger first, then the usual hooks.
    run = piuparts(cache_dir, tmp_path, "--scriptsdir", "/etc/piuparts/scripts-log-alternatives",
                   "--scriptsdir", str(DEBIAN_HOOKS), "--no-upgrade-test", str(debs(CLEAN)))
    assert (run.returncode, run.findings()) == (0, []), run.stdout + run.stderr
