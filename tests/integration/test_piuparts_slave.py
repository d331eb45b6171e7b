"""piuparts.debian.org's own machinery over piuparts-ng, unchanged: Debian's
piuparts-slave and piuparts-master 1.1.7 test a small section (a reprepro
repository of fixture packages over HTTP on 127.0.0.1), the slave talking to
the master through a real sshd on 127.0.0.1, and piuparts-report makes its
pages from the master's directory.

The configuration has two sections over the same repository, base tarball
and flags (the ``[bookworm]`` section's): one whose piuparts-command is ours,
one whose is Debian's /usr/sbin/piuparts.  Each package must land in the same
directory (pass/ or fail/) of both, and in the same known_problems categories
as piuparts-report files them.  The fixtures show one defect each that a
category of piuparts-common 1.1.7's known_problems names (leftovers warned,
an owned file modified, a failing postinst and prerm, a command not found,
a process left running, a diversion and an alternative left, a missing
copyright file, another package's file overwritten, a broken symlink that
adequate sees too);
the categories that need an upgrade (a conffile prompt, obsolete
conffiles) are not reached with the slave's --no-upgrade-test.

Every program of piuparts-slave/-master/-report reads the fixed paths
/etc/piuparts/piuparts.conf and /etc/ssh/ssh_config: they run in a mount
namespace of their own where the test's files are bound over those, so the
host's files are never touched.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.debs import (ALTERNATIVE_LEFT, BROKEN_LINK, CLEAN, DAEMON, DIVERTER, FAILING_POSTINST, FAILING_PRERM,
                        LEFTOVER, NO_COPYRIGHT, NOT_FOUND, OVERWRITER, USR_LOCAL_LEFT)
from tests.integration.helpers import BOOKWORM_FLAGS, leaks, serve_directory

pytestmark = [pytest.mark.root, pytest.mark.network]

SLAVE = Path("/usr/share/piuparts/piuparts-slave")
REPORT = Path("/usr/share/piuparts/piuparts-report")
MASTER = Path("/usr/share/piuparts/piuparts-master")
SSHD = Path("/usr/sbin/sshd")
DEBIAN_PIUPARTS = Path("/usr/sbin/piuparts")
needs_the_tools = pytest.mark.skipif(
    not all(p.exists() for p in (SLAVE, REPORT, MASTER, SSHD, DEBIAN_PIUPARTS)) and not os.environ.get("CI"),
    reason="piuparts, piuparts-slave, piuparts-master or openssh-server is not installed (./bootstrap installs them)")

#: The fixtures of the section, and the directory each must land in (both tools agree).
FIXTURES = ((CLEAN, "pass"), (LEFTOVER, "pass"), (FAILING_POSTINST, "fail"), (DAEMON, "fail"), (DIVERTER, "fail"),
            (NO_COPYRIGHT, "pass"), (ALTERNATIVE_LEFT, "pass"), (USR_LOCAL_LEFT, "pass"),
            (NOT_FOUND, "fail"), (FAILING_PRERM, "fail"), (OVERWRITER, "fail"), (BROKEN_LINK, "pass"))
SECTIONS = {"ng": f"{sys.executable} -m piuparts", "deb": str(DEBIAN_PIUPARTS)}
DISTRO = "ppslave"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def signing_key(cache_dir: Path) -> tuple[Path, str]:
    """A throwaway OpenPGP key the fixture section is signed with (kept in the
    cache; its gpg-agent ended after each use): (GNUPGHOME, fingerprint)."""
    home = cache_dir / "test-inputs" / "slave-gnupg"
    if not (home / "fingerprint").exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True, mode=0o700)
        gpg = ["gpg", "--batch", "--homedir", str(home)]
        subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "piuparts-ng slave test <pp@example.org>",
                        "ed25519", "sign", "never"], check=True, capture_output=True)
        listing = subprocess.run([*gpg, "--with-colons", "--list-secret-keys"], check=True, capture_output=True,
                                 text=True).stdout
        (home / "fingerprint").write_text(next(line.split(":")[9] for line in listing.splitlines()
                                               if line.startswith("fpr:")))
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=True)
    return home, (home / "fingerprint").read_text()


def _repository(root: Path, debs: list[Path], key: tuple[Path, str]) -> None:
    """A signed reprepro distribution with binary and (empty) source indices, as
    piuparts-report reads both."""
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "distributions").write_text(
        f"Codename: {DISTRO}\nComponents: main\nArchitectures: amd64 source\nSignWith: {key[1]}\n")
    try:
        for deb in debs:
            subprocess.run(["reprepro", "-b", str(root), "includedeb", DISTRO, str(deb)], check=True,
                           capture_output=True, env={**os.environ, "GNUPGHOME": str(key[0])})
    finally:
        subprocess.run(["gpgconf", "--homedir", str(key[0]), "--kill", "all"], check=True)


@pytest.fixture(scope="module")
def base_tarball(cache_dir: Path, base_root: Path, signing_key: tuple[Path, str]) -> Path:
    """The cached base as a gzip tarball (piuparts 1.1.7 unpacks -b with tar -z;
    device nodes kept) that trusts the section's key, as a slave's base trusts
    its archive's; named by the base's directory (its key) and the key."""
    inputs = cache_dir / "test-inputs"
    name = hashlib.sha256(f"{base_root} {signing_key[1]}".encode()).hexdigest()[:16]
    tarball = inputs / f"slave-base-{name}.tgz"
    if not tarball.exists():
        keyring = inputs / f"slave-keyring-{name}"
        (keyring / "etc/apt/trusted.gpg.d").mkdir(parents=True, exist_ok=True)
        (keyring / "etc/apt/trusted.gpg.d/piuparts-ng-slave-test.gpg").write_bytes(subprocess.run(
            ["gpg", "--batch", "--homedir", str(signing_key[0]), "--export", signing_key[1]], check=True,
            capture_output=True).stdout)
        partial = tarball.with_name(f"{tarball.name}.{os.getpid()}")
        subprocess.run(["tar", "--create", "--use-compress-program=gzip -1", f"--file={partial}", "--numeric-owner",
                        f"--directory={base_root}", "--exclude=./proc/*", "--exclude=./sys/*", ".",
                        f"--directory={keyring}", "./etc/apt/trusted.gpg.d/piuparts-ng-slave-test.gpg"], check=True)
        os.rename(partial, tarball)
        shutil.rmtree(keyring)
    return tarball


def _ssh(tmp: Path) -> tuple[int, Path, Path]:
    """Keys, an sshd configuration on 127.0.0.1 and the client's configuration
    naming the master by an alias: (port, sshd_config, ssh_config)."""
    port = _free_port()
    for key in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pp-{key}", "-f", str(tmp / key)],
                       check=True)
    (tmp / "authorized_keys").write_text((tmp / "client.pub").read_text())
    (tmp / "known_hosts").write_text("pp-master " + (tmp / "host.pub").read_text())
    sshd_config = tmp / "sshd_config"
    sshd_config.write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {tmp / 'host'}
AuthorizedKeysFile {tmp / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile {tmp / 'sshd.pid'}
""")
    ssh_config = tmp / "ssh_config"
    ssh_config.write_text(f"""\
Host pp-master
    HostName 127.0.0.1
    Port {port}
    HostKeyAlias pp-master
    IdentityFile {tmp / 'client'}
    IdentitiesOnly yes
    UserKnownHostsFile {tmp / 'known_hosts'}
    StrictHostKeyChecking yes
    BatchMode yes
""")
    return port, sshd_config, ssh_config


def _piuparts_conf(tmp: Path, mirror: str, cache_dir: Path, tarball: Path) -> Path:
    flags = " ".join(BOOKWORM_FLAGS)
    sections = "".join(f"""
[{name}]
description = {name}: fixture section tested by {command.split()[0]}
piuparts-command = {command}{' --cache-dir ' + str(cache_dir) if name == 'ng' else ''}
""" for name, command in SECTIONS.items())
    conf = tmp / "piuparts.conf"
    conf.write_text(f"""\
[global]
sections = {' '.join(SECTIONS)}
mirror = {mirror}
distro = {DISTRO}
area = main
arch = amd64
piuparts-flags = {flags}
basetgz-directory = {tarball.parent}
chroot-tgz = {tarball.name}
max-tgz-age = -1
max-reserved = 50
idle-sleep = 60
tmpdir = {tmp / 'scratch'}
master-host = pp-master
master-user = root
master-command = {MASTER}
master-directory = {tmp / 'master'}
slave-directory = {tmp / 'slave'}
output-directory = {tmp / 'html'}
doc-root = /
{sections}""")
    return conf


def _in_namespace(binds: dict[Path, Path], script: str) -> list[str]:
    """A command running ``script`` in a private mount namespace where each
    fixed path is bound to the test's file."""
    mounts = "".join(f"mount --bind {source} {target}\n" for target, source in binds.items())
    return ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-euc", mounts + script]


def _logs(master: Path, section: str) -> dict[str, str]:
    """package name -> the directory of the master's section its log is in."""
    found = {}
    for where in ("pass", "fail", "untestable"):
        for log in (master / section / where).glob("*.log"):
            found[log.name.split("_", 1)[0]] = where
    return found


def _categories(master: Path, section: str) -> dict[str, set[str]]:
    """package name -> the known_problems categories piuparts-report filed it
    under (its .kpr file beside the log: "LOG CATEGORY.conf" lines)."""
    found: dict[str, set[str]] = {}
    for kpr in (master / section).glob("*/*.kpr"):
        found[kpr.name.split("_", 1)[0]] = {line.split()[1].removesuffix(".conf")
                                            for line in kpr.read_text().splitlines() if line.strip()}
    return found


def _named(page: Path) -> set[str]:
    """The fixture packages a report page names."""
    return set(re.findall(r"\bpp-[a-z]+\b", page.read_text()))


@needs_the_tools
def test_piuparts_slave_and_master_file_our_results_where_piuparts_files_its(cache_dir, tmp_path, debs,
                                                                              base_tarball, signing_key):
    repo = tmp_path / "repo"
    _repository(repo, [debs(spec) for spec, _ in FIXTURES], signing_key)
    for name in ("scratch", "slave", "master", "html"):
        (tmp_path / name).mkdir()
    for page in Path("/usr/share/piuparts/htdocs").iterdir():  # the static pages, as the master's setup copies them
        (shutil.copytree if page.is_dir() else shutil.copy)(page, tmp_path / "html" / page.name)
    port, sshd_config, ssh_config = _ssh(tmp_path)
    made_run_sshd = not Path("/run/sshd").exists()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    root_ssh_before = Path("/root/.ssh").exists()
    with serve_directory(repo) as server:
        conf = _piuparts_conf(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", cache_dir, base_tarball)
        binds = {Path("/etc/piuparts/piuparts.conf"): conf, Path("/etc/ssh/ssh_config"): ssh_config}
        slave_log = (tmp_path / "slave.log").open("w")
        slave = subprocess.Popen(_in_namespace(binds, f"""\
{SSHD} -D -e -f {sshd_config} 2>{tmp_path / 'sshd.log'} &
cd {tmp_path / 'slave'}
exec {SLAVE}
"""), stdout=slave_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 1500
            while time.monotonic() < deadline and slave.poll() is None and not all(
                    len(_logs(tmp_path / "master", section)) == len(FIXTURES) for section in SECTIONS):
                time.sleep(5)
        finally:
            os.killpg(slave.pid, signal.SIGTERM)
            slave.wait(timeout=60)
            slave_log.close()
            if made_run_sshd:
                Path("/run/sshd").rmdir()
        slave_output = (tmp_path / "slave.log").read_text()
        expected = {spec.name: where for spec, where in FIXTURES}
        for section in SECTIONS:
            assert _logs(tmp_path / "master", section) == expected, (section, slave_output[-5000:])
        report = subprocess.run(_in_namespace(binds, str(REPORT)), capture_output=True, text=True,
                                timeout=600)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    assert Path("/root/.ssh").exists() == root_ssh_before
    expected_pass = {spec.name for spec, where in FIXTURES if where == "pass"}
    for section in SECTIONS:
        for log in (tmp_path / "master" / section).glob("*/*.log"):
            text = log.read_text()
            assert "PIUPARTS OUTPUT INCOMPLETE" not in text and "\nret=" in text, text[-3000:]
        pages = tmp_path / "html" / section
        assert _named(pages / "state-successfully-tested.html") == expected_pass
        assert _named(pages / "state-failed-testing.html") == set(expected) - expected_pass
        assert _named(pages / "processes_running_error.html") == {DAEMON.name}
        assert (pages / "index.html").exists() and (pages / "states.png").exists()
    ours, theirs = (_categories(tmp_path / "master", section) for section in SECTIONS)
    assert ours == theirs
    assert ours == {  # the categories of piuparts-common 1.1.7 these fixtures show
        CLEAN.name: set(), LEFTOVER.name: {"unowned_files_after_purge_issue"},
        FAILING_POSTINST.name: {"post_installation_script_error"}, DAEMON.name: {"processes_running_error"},
        DIVERTER.name: {"diversion_error", "disappeared_files_after_purge_error", "owned_files_after_purge_error",
                        "unowned_files_after_purge_error"},
        NO_COPYRIGHT.name: {"missing_copyright_file_inadequate_issue"},
        ALTERNATIVE_LEFT.name: {"alternatives_after_purge_issue", "unowned_files_after_purge_issue"},
        # files_in_usr_local_error is a failure's: with --warn-on-leftovers-after-purge it passes, unfiled
        USR_LOCAL_LEFT.name: set(),
        NOT_FOUND.name: {"command_not_found_error", "post_installation_script_error"},
        FAILING_PRERM.name: {"pre_removal_script_error"},
        OVERWRITER.name: {"overwrite_other_packages_files_error"},
        BROKEN_LINK.name: {"broken_symlinks_issue", "boring_broken_symlink_inadequate_issue"}}
    assert leaks(cache_dir) == []
