"""The LVM backend on real LVM, inside a VM (the host kernel may have no device-mapper).

The host prepares what needs the network: the debootstrap base (in the test
cache) and Debian's kernel (tests/vm/qemu.py).  The VM (qemu, TCG) sees the
host's root read-only with a tmpfs overlay, makes a volume group on a
sparse virtio disk, fills ppvg/base with ``piuparts lvm-setup`` from that
base, runs the LVM case of the contract suite and tests/integration/
test_backend_lvm.py with CI=true, and lists the volumes that remain.  Its
serial console is the report.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from piuparts.backends.debootstrap import DebootstrapBackend
from piuparts.backends.lvm import host_spec
from tests.vm import qemu

pytestmark = [pytest.mark.root, pytest.mark.network]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 1800
EXPECTED = [f"tests/integration/test_backend_contract.py::{name}[lvm]" for name in (
    # (tests/vm/guest.sh says which contract tests are left to the host's backends, and why)
    "test_clean_fixture_passes", "test_exception_inside_the_instance_leaves_nothing")] + [
    f"tests/integration/test_backend_lvm.py::{name}" for name in (
        "test_missing_volume_is_a_one_line_usage_error",
        "test_sigkilled_run_leaves_a_snapshot_that_cleanup_removes",
        "test_lvm_setup_without_the_volume_group_is_a_usage_error")]


def _missing() -> str | None:
    for tool in ("qemu-system-x86_64", "apt-get", "dpkg-deb", "lvcreate"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None if qemu.BUSYBOX.is_file() else "busybox-static is not installed"


def _between(text: str, begin: str, end: str) -> list[str]:
    match = re.search(rf"^{begin}\r?$(.*?)^{end}\r?$", text, re.M | re.S)
    return [line.strip() for line in match[1].splitlines() if line.strip()] if match else []


def test_lvm_backend_in_a_vm(cache_dir: Path, tmp_path: Path) -> None:
    if (why_not := _missing()) and not os.environ.get("CI"):
        pytest.skip(why_not)
    base = DebootstrapBackend(host_spec(), cache_dir)  # built or refreshed here, where the network is
    try:
        base.prepare()
    finally:
        base.close()
    kernel = qemu.fetch_kernel(cache_dir / "vm")
    initramfs = qemu.build_initramfs(kernel, tmp_path / "initramfs.cpio")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as sparse:
        sparse.truncate(6 << 30)  # sparse: the volume group, for the origin volume and the snapshots
    console = tmp_path / "console.log"
    settings = {"repo": str(REPO), "python": sys.executable, "host_cache": str(cache_dir),
                "base": str(base.root), "tmpfs": "1g"}
    try:
        image = qemu.base_image(base.root, tmp_path / "base.img")
        run = qemu.boot(kernel, initramfs, [(disk, True), (image, False)], settings, console, TIMEOUT)
    finally:
        for path in (disk, tmp_path / "base.img"):
            path.unlink(missing_ok=True)
    out = run.console
    (cache_dir / "vm" / "console.log").write_text(out)  # to read after the run
    stages = re.findall(r"^PIUPARTS-VM-STAGE (\S+) ([0-9.]+)", out, re.M)
    print(f"VM run: {run.seconds:.0f} s end to end; guest uptime at each stage: "
          + ", ".join(f"{name} {float(at):.0f} s" for name, at in stages))
    tail = out[-6000:]
    assert not run.timed_out, f"the VM did not finish in {TIMEOUT} s:\n{tail}"
    assert re.search(r"^PIUPARTS-VM-RESULT rc=0\r?$", out, re.M), tail
    for test in EXPECTED:
        assert re.search(rf"^{re.escape(test)} PASSED", out, re.M), f"{test} did not pass:\n{tail}"
    summary = re.findall(r"^=+ (.*) in [0-9.]+s.*=+\r?$", out, re.M)
    assert summary and summary[-1].startswith(f"{len(EXPECTED)} passed"), tail
    assert not re.search(r"failed|error|skipped", summary[-1]), summary[-1]
    volumes = [line.split() for line in _between(out, "PIUPARTS-VM-LVS-BEGIN", "PIUPARTS-VM-LVS-END")]
    assert volumes == [["base"]], f"volumes left in the VM (name, origin): {volumes}"
