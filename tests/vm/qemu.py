"""Boot a small VM (qemu, TCG) whose root is the host's, read-only over 9p.

The kernel is Debian's (the package linux-image-amd64 depends on now,
fetched with apt-get download and unpacked, never installed); the
initramfs is busybox-static plus the modules the VM needs, loaded in
dependency order by tests/vm/init.sh.  That script lays a tmpfs overlay
over the host's root and runs tests/vm/guest.sh in it, which reports on the
serial console, the only way results come back.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: What the VM loads (dependencies are found and loaded first): virtio disk and
#: 9p for the host's root, overlay to write on it, device-mapper snapshots
#: and ext4 for LVM, crc32c for ext4 (no modprobe in there to load it).
MODULES = ("virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay", "dm_mod", "dm_snapshot",
           "crc32c_generic", "ext4")
BUSYBOX = Path("/bin/busybox")


@dataclass(frozen=True)
class Kernel:
    """A kernel image and the modules of :data:`MODULES`, in load order."""

    image: Path
    modules: tuple[Path, ...]


def _kernel_package() -> tuple[str, str]:
    """The package (and version) that linux-image-amd64 depends on in the host's apt lists."""
    show = subprocess.run(["apt-cache", "show", "--no-all-versions", "linux-image-amd64"], capture_output=True,
                          text=True, check=True).stdout
    match = re.search(r"^Depends: (linux-image-[^\s,]+) \(= ([^)]+)\)", show, re.M)
    if not match:
        raise RuntimeError(f"cannot tell which kernel linux-image-amd64 depends on:\n{show}")
    return match[1], match[2]


def _module_name(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def _module_bytes(path: Path) -> bytes:
    """The module, decompressed (busybox's insmod takes plain .ko files)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def _load_order(tree: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The .ko files of ``wanted`` and of what they depend on (their modinfo), dependencies first."""
    index = {_module_name(p): p for p in tree.glob("lib/modules/*/kernel/**/*.ko*")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = index[name]
        found = re.search(rb"(?:^|\0)depends=([^\0]*)\0", _module_bytes(path))
        for dep in (found[1].decode().split(",") if found and found[1] else []):
            visit(dep.replace("-", "_"))
        order.append(path)

    for name in wanted:
        visit(name)
    return order


def fetch_kernel(cache: Path) -> Kernel:
    """Debian's current kernel and the modules the VM needs, cached under ``cache``."""
    package, version = _kernel_package()
    key = hashlib.sha256(" ".join(MODULES).encode()).hexdigest()[:8]
    target = cache / f"{package}_{version}-{key}"
    order_file = target / "modules.order"
    if not order_file.exists():
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
        try:
            fetched = subprocess.run(["apt-get", "download", "-q", f"{package}={version}"], cwd=work,
                                     capture_output=True, text=True, check=False)
            if fetched.returncode != 0:
                raise RuntimeError(f"apt-get download {package}={version} failed: {fetched.stderr.strip()}")
            [deb] = work.glob("*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "tree")], check=True)
            kept = work / "kept"
            (kept / "modules").mkdir(parents=True)
            [image] = (work / "tree/boot").glob("vmlinuz-*")
            shutil.copyfile(image, kept / "vmlinuz")
            names = []
            for path in _load_order(work / "tree", MODULES):
                (kept / "modules" / f"{_module_name(path)}.ko").write_bytes(_module_bytes(path))
                names.append(_module_name(path))
            (kept / "modules.order").write_text("\n".join(names) + "\n")
            for older in cache.glob("linux-image-*"):  # a kernel Debian no longer ships
                shutil.rmtree(older)
            os.rename(kept, target)
        finally:
            shutil.rmtree(work)
    names = order_file.read_text().split()
    return Kernel(target / "vmlinuz", tuple(target / "modules" / f"{name}.ko" for name in names))


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    """One member of a "newc" cpio archive, the initramfs format."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields) + encoded
    return header + b"\0" * (-len(header) % 4) + data + b"\0" * (-len(data) % 4)


def build_initramfs(kernel: Kernel, out: Path) -> Path:
    """busybox, the modules and tests/vm/init.sh as an (uncompressed) initramfs at ``out``."""
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = [
        (d, 0o040755, b"", (0, 0)) for d in ("bin", "dev", "proc", "sys", "lower", "rw", "newroot", "lib",
                                              "lib/modules")]
    entries += [("dev/console", 0o020600, b"", (5, 1)),
                ("bin/busybox", 0o100755, BUSYBOX.read_bytes(), (0, 0)),
                ("init", 0o100755, (HERE / "init.sh").read_bytes(), (0, 0)),
                ("modules", 0o100644, "".join(f"{p.stem}\n" for p in kernel.modules).encode(), (0, 0))]
    entries += [(f"lib/modules/{p.name}", 0o100644, p.read_bytes(), (0, 0)) for p in kernel.modules]
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    entries += [(f"bin/{applet}", 0o120777, b"busybox", (0, 0)) for applet in applets if applet != "busybox"]
    with open(out, "wb") as archive:
        for ino, (name, mode, data, rdev) in enumerate(entries, start=1):
            archive.write(_cpio_entry(name, mode, data, rdev, ino))
        archive.write(_cpio_entry("TRAILER!!!", 0))
    return out


@dataclass
class Boot:
    """What a VM run printed on its serial console, and how long it took."""

    console: str
    seconds: float
    timed_out: bool


def base_image(tree: Path, out: Path, size: int = 2 << 30) -> Path:
    """An ext4 image (sparse, made without mounting) holding a copy of ``tree``.

    The VM reads it as a disk: copying a base over 9p under TCG takes minutes.
    """
    with open(out, "wb") as image:
        image.truncate(size)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-d", str(tree), str(out)],
                   check=True, capture_output=True)
    return out


def boot(kernel: Kernel, initramfs: Path, disks: list[tuple[Path, bool]], settings: dict[str, str],
         console: Path, timeout: float, memory: str = "2G", cpus: int = 2) -> Boot:
    """Run the VM until it powers off (or ``timeout``, when qemu is killed).

    ``settings`` become ``ppvm_NAME`` variables of the initramfs' init;
    ``disks`` are raw images and whether each is writable: /dev/vda, vdb...
    """
    cmdline = " ".join(["console=ttyS0", "panic=-1", "loglevel=4",
                        *(f"ppvm_{name}={value}" for name, value in settings.items())])
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", str(cpus), "-m", memory,
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(kernel.image), "-initrd", str(initramfs), "-append", cmdline,
            "-serial", f"file:{console}",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
            *(arg for disk, writable in disks for arg in (
                "-drive", f"file={disk},if=virtio,format=raw,cache=unsafe,readonly={'off' if writable else 'on'}"))]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timed_out = False
    try:
        output = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()  # this qemu only, by its PID
        output = proc.communicate()[0]
    text = console.read_text(errors="replace") if console.exists() else ""
    if proc.returncode not in (0, None) and not timed_out:
        text += f"\n[qemu exited {proc.returncode}: {output.decode(errors='replace')}]"
    return Boot(text, time.monotonic() - start, timed_out)
