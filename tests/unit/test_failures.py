"""piuparts.failures: whose fault a failed apt/dpkg step is, from apt's and dpkg's own lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from piuparts.chroot import Chroot
from piuparts.command import Result
from piuparts.errors import TestbedError, UsageError
from piuparts.failures import apt_part, classify, classify_install_failure, download_failed, free_space
from piuparts.inputs import TestSubject

PLENTY = (10 * 2**30, 20 * 2**30)
APT_HEAD = """Reading package lists...
Building dependency tree...
Reading state information...
The following NEW packages will be installed:
  pp-license
0 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.
"""
DPKG_LICENSE_FAILURE = """Selecting previously unselected package pp-license.
(Reading database ... 6000 files and directories currently installed.)
Preparing to unpack .../pp-license_1.0-1_all.deb ...
Unpacking pp-license (1.0-1) ...
Setting up pp-license (1.0-1) ...
Could not connect to the license server
E: Failed to fetch the licence: Temporary failure resolving license.example.org
Err:1 license.example.org
No space left on device
dpkg: error processing package pp-license (--configure):
 installed pp-license package post-installation script subprocess returned error exit status 1
Errors were encountered while processing:
 pp-license
E: Sub-process /usr/bin/dpkg returned an error code (1)
"""
APT_FETCH_FAILURE = """Get:1 http://deb.example.org/debian bookworm/main amd64 libfoo1 amd64 1.0-1 [10 kB]
Err:2 http://deb.example.org/debian bookworm/main amd64 foo amd64 1.0-1
  Could not connect to deb.example.org:80 (192.0.2.1), connection timed out
E: Failed to fetch http://deb.example.org/debian/pool/main/f/foo/foo_1.0-1_amd64.deb  Could not connect
E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?
"""
DPKG_UNPACK_NO_SPACE = """Preparing to unpack /tmp/piuparts-debs/pp-big_1.0-1_all.deb ...
Unpacking pp-big (1.0-1) ...
dpkg: error processing archive /tmp/piuparts-debs/pp-big_1.0-1_all.deb (--unpack):
 cannot copy extracted data for './usr/share/pp-big/blob' to '/usr/share/pp-big/blob.dpkg-new': failed to write (No space left on device)
Errors were encountered while processing:
 /tmp/piuparts-debs/pp-big_1.0-1_all.deb
E: Sub-process /usr/bin/dpkg returned an error code (1)
"""


def result(output: str, returncode: int = 100) -> Result:
    return Result(("apt-get", "-y", "install", "pp-license"), returncode, output, 1.0)


def test_a_postinst_printing_network_and_space_words_fails_the_package():
    message = classify(result(APT_HEAD + DPKG_LICENSE_FAILURE), TestSubject(), "install", PLENTY)
    assert message == ("install failed: installed pp-license package post-installation script subprocess "
                       "returned error exit status 1")


def test_apt_download_errors_before_dpkg_are_the_test_bed():
    with pytest.raises(TestbedError) as err:
        classify(result(APT_HEAD + APT_FETCH_FAILURE), TestSubject(), "install", PLENTY)
    assert str(err.value) == ("downloading packages failed (mirror or network): "
                              "Err:2 http://deb.example.org/debian bookworm/main amd64 foo amd64 1.0-1")


def test_apt_part_stops_at_dpkg_first_line():
    assert apt_part(APT_HEAD + DPKG_LICENSE_FAILURE) == APT_HEAD
    assert download_failed(APT_HEAD + DPKG_LICENSE_FAILURE) is None
    assert apt_part(APT_FETCH_FAILURE) == APT_FETCH_FAILURE


def test_dpkg_own_unpack_error_for_a_full_disk_is_the_test_bed():
    with pytest.raises(TestbedError) as err:
        classify(result(APT_HEAD + DPKG_UNPACK_NO_SPACE), TestSubject(), "install", PLENTY)
    assert str(err.value).startswith("install: the instance ran out of space (E: Sub-process /usr/bin/dpkg")


def test_dpkg_own_database_write_error_for_a_full_disk_is_the_test_bed():
    # A postinst filled the disk; apt freed its cache files on the way out, so the free space after
    # the step is no longer low: dpkg's own line says it.
    output = APT_HEAD + DPKG_LICENSE_FAILURE.replace(
        "Errors were encountered", "dpkg: error: failed to write status database stanza about 'dash' to "
        "'/var/lib/dpkg/status': No space left on device\nErrors were encountered")
    with pytest.raises(TestbedError, match="ran out of space"):
        classify(result(output), TestSubject(), "install", PLENTY)


def test_little_free_space_after_a_failed_step_is_the_test_bed():
    with pytest.raises(TestbedError, match="ran out of space"):
        classify(result(APT_HEAD + DPKG_LICENSE_FAILURE), TestSubject(), "install", (1024, 100 * 2**20))
    with pytest.raises(TestbedError, match="ran out of space"):  # 1 % of a large filesystem
        classify(result(APT_HEAD + DPKG_LICENSE_FAILURE), TestSubject(), "install", (50 * 2**20, 100 * 2**30))


def test_apt_full_disk_line_is_the_test_bed():
    output = APT_HEAD + "E: You don't have enough free space in /var/cache/apt/archives/.\n"
    with pytest.raises(TestbedError, match="ran out of space"):
        classify(result(output), TestSubject(), "install", PLENTY)


def test_unknown_apt_name_is_a_usage_error_but_not_for_a_deb():
    output = APT_HEAD + "E: Unable to locate package pp-nothing\n"
    with pytest.raises(UsageError, match=r"^--apt pp-nothing: no repository"):
        classify(result(output), TestSubject(apt_names=("pp-nothing",)), "install", PLENTY)
    assert classify(result(output), TestSubject(), "install", PLENTY).startswith("install failed with exit code 100")


def test_unmet_dependencies_name_the_depends_lines():
    output = APT_HEAD + ("The following packages have unmet dependencies:\n"
                         " pp-a : Depends: pp-b but it is not installable\n"
                         "E: Unable to correct problems, you have held broken packages.\n")
    assert classify(result(output), TestSubject(), "install", PLENTY) == (
        "install failed: the dependencies cannot be installed (unmet dependencies): "
        "pp-a : Depends: pp-b but it is not installable")


def test_free_space_is_read_from_the_upper_directory_or_the_root(tmp_path: Path):
    free, size = free_space(Chroot(tmp_path, ("chroot", str(tmp_path))))  # type: ignore[misc]
    assert 0 < free <= size
    assert free_space(Chroot(tmp_path / "gone", (), upper=tmp_path / "also-gone")) is None
    assert free_space(Chroot(tmp_path, (), host_root=False)) is None


def test_without_a_chroot_only_the_output_counts():
    message = classify_install_failure(result(APT_HEAD + DPKG_LICENSE_FAILURE), TestSubject(), "install")
    assert message.endswith("returned error exit status 1")
