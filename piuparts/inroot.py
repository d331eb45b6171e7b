"""The harness's own file operations on an instance, resolved inside its root.

A maintainer script can make any path of the instance a symlink, with an
absolute target meant for the chroot (``/tmp/piuparts-debs -> /home``).
Followed from the host, such a link leads out of the instance: a copy into
it, a read or a removal would touch the host.  Every host-side operation on
an instance's files goes through this module instead, which opens paths with
openat2(2) and ``RESOLVE_IN_ROOT``: the kernel resolves each component as
a process chrooted into the root would (an absolute target or ``..``
never leaves it, /proc's magic links are refused), and the last component
is never followed where a file is written or removed.  The operations work
on open directory descriptors, so a link swapped in meanwhile changes
nothing either.  Paths are given as the chroot sees them (``/etc/passwd``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: openat2(2)'s number (the same on every architecture that has it).
_SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
#: Directory symlinks followed while making directories, as the kernel's limit.
MAX_LINKS = 40


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _relative(inner: str) -> str:
    return inner.strip("/") or "."


@contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def open_at(root: Path, inner: str, flags: int = os.O_RDONLY, mode: int = 0o644, follow: bool = True) -> int:
    """A descriptor of ``inner`` resolved inside ``root`` (the caller closes it).

    With ``follow`` false no symlink at all is followed (for trees that are
    not a root, such as an overlay's upper directory)."""
    resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS if follow else RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
    with _fd(os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)) as top:
        return _openat2(top, _relative(inner), flags, mode, resolve)


@contextmanager
def directory(root: Path, inner: str, follow: bool = True) -> Iterator[int]:
    """An open descriptor of the directory ``inner`` inside ``root``."""
    with _fd(open_at(root, inner, os.O_RDONLY | os.O_DIRECTORY, follow=follow)) as fd:
        yield fd


def _split(inner: str) -> tuple[str, str]:
    parent, _, name = inner.rstrip("/").rpartition("/")
    if name in ("", ".", ".."):
        raise IsADirectoryError(errno.EISDIR, "not a file name", inner)
    return parent or "/", name


def _open_regular(root: Path, inner: str) -> int | None:
    """A read descriptor of the regular file ``inner``, None when there is none.

    Found with O_PATH first: a device node or a fifo is never opened."""
    try:
        with _fd(open_at(root, inner, os.O_PATH)) as found:
            if not stat.S_ISREG(os.fstat(found).st_mode):
                return None
            return os.open(f"/proc/self/fd/{found}", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EXDEV):
            return None
        raise


def lstat(root: Path, inner: str) -> os.stat_result | None:
    """What is at ``inner`` (itself not followed; its directories resolved inside), None when nothing."""
    parent_path, name = _split(inner)
    try:
        with directory(root, parent_path) as parent:
            return os.lstat(name, dir_fd=parent)
    except OSError:
        return None


def read_bytes(root: Path, inner: str) -> bytes | None:
    """The content of the regular file ``inner``; None when there is none (missing, or not a file)."""
    fd = _open_regular(root, inner)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as stream:
        return stream.read()


def read_text(root: Path, inner: str) -> str:
    """The text of the regular file ``inner``, "" when there is none."""
    data = read_bytes(root, inner)
    return "" if data is None else data.decode("utf-8", "replace")


def is_dir(root: Path, inner: str) -> bool:
    """True when ``inner`` resolves to a directory inside ``root``."""
    try:
        with directory(root, inner):
            return True
    except OSError:
        return False


def makedirs(root: Path, inner: str, mode: int = 0o755) -> None:
    """``mkdir -p`` inside ``root``; a symlink on the way is followed as the
    chroot sees it, and the directories it points to are made there."""
    _makedirs(root, inner, mode, 0)


def _makedirs(root: Path, inner: str, mode: int, links: int) -> None:
    parts = [p for p in inner.split("/") if p and p != "."]
    for i, name in enumerate(parts):
        here = "/".join(parts[: i + 1])
        if is_dir(root, here):
            continue
        with directory(root, "/".join(parts[:i])) as parent:
            try:
                os.mkdir(name, mode, dir_fd=parent)
                continue
            except FileExistsError:
                pass
            if not stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode) or links >= MAX_LINKS:
                raise NotADirectoryError(errno.ENOTDIR, "not a directory inside the instance", "/" + here)
            target = os.readlink(name, dir_fd=parent)
        base = "/" if target.startswith("/") else "/" + "/".join(parts[:i])
        _makedirs(root, posixpath.join(base, target), mode, links + 1)


def write_bytes(root: Path, inner: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``inner`` as a new file (what was there is unlinked first, so a
    symlink or a hard link never carries the write elsewhere); its directory
    is made if need be."""
    parent_path, name = _split(inner)
    makedirs(root, parent_path)
    with directory(root, parent_path) as parent:
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=parent)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            os.fchmod(stream.fileno(), mode)


def write_text(root: Path, inner: str, text: str, mode: int = 0o644) -> None:
    """:func:`write_bytes` of ``text``."""
    write_bytes(root, inner, text.encode(), mode)


def copy_file(source: Path, root: Path, inner: str, mode: int | None = None) -> None:
    """Copy the host file ``source`` to ``inner`` (a new file; mode and times kept)."""
    parent_path, name = _split(inner)
    makedirs(root, parent_path)
    info = os.stat(source)
    with directory(root, parent_path) as parent:
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        with os.fdopen(fd, "wb") as out, open(source, "rb") as stream:
            shutil.copyfileobj(stream, out, 1 << 20)
            os.fchmod(out.fileno(), stat.S_IMODE(info.st_mode) if mode is None else mode)
            os.utime(out.fileno(), ns=(info.st_atime_ns, info.st_mtime_ns))


def copy_out(root: Path, inner: str, target: Path) -> bool:
    """Copy the regular file ``inner`` to the host path ``target``; False when it is not one."""
    fd = _open_regular(root, inner)
    if fd is None:
        return False
    with os.fdopen(fd, "rb") as stream:
        with open(target, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
    return True


def listdir(root: Path, inner: str, follow: bool = True) -> list[tuple[str, os.stat_result]]:
    """The entries of the directory ``inner`` (name and lstat), [] when it is not one."""
    try:
        with directory(root, inner, follow) as fd:
            return [(name, os.lstat(name, dir_fd=fd)) for name in sorted(os.listdir(fd))]
    except OSError:
        return []


def unlink(root: Path, inner: str, follow: bool = True) -> None:
    """Remove the file (or symlink) ``inner`` if it is there."""
    parent_path, name = _split(inner)
    try:
        with directory(root, parent_path, follow) as parent:
            os.unlink(name, dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        pass


def remove_tree(root: Path, inner: str) -> None:
    """``rm -rf inner`` inside ``root``: a symlink is removed, never followed."""
    parent_path, name = _split(inner)
    try:
        with directory(root, parent_path) as parent:
            if stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        pass


def host_path(root: Path, inner: str) -> Path:
    """The host path of the directory ``inner`` as resolved inside ``root``,
    for reading its entries (each then opened without following links); a
    directory that does not resolve inside gives a path that does not exist."""
    try:
        with directory(root, inner) as fd:
            return Path(os.path.realpath(f"/proc/self/fd/{fd}"))
    except OSError:
        return root / ".piuparts-missing" / inner.strip("/")


def available() -> str | None:
    """None when the kernel has openat2 with RESOLVE_IN_ROOT (Linux 5.6), else why not."""
    try:
        os.close(open_at(Path("/"), "/", os.O_PATH))
    except OSError as err:
        return f"the kernel has no openat2(2) with RESOLVE_IN_ROOT ({err.strerror}); Linux 5.6 or later is needed"
    return None
