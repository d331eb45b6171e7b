"""Load the instance's seccomp filter, then exec the rest of the command line.

Run as ``/usr/bin/python3 -I -S seccomp_exec.py [--cgroup PROCS] PROGRAM ARGS...`` by the
harness, as the first link of every command it runs inside an instance
(after nsenter, before capsh chroots and drops the capabilities): the
filter is inherited across every exec and fork after it, so nothing the
instance runs can shed it.  This file imports nothing of piuparts and runs
with Debian's own Python, because the bindings are Debian's package
python3-seccomp (libseccomp's own bindings: they know every architecture's
syscall numbers, which a BPF program of our own would have to hard-code).

``--cgroup PROCS`` first moves this process into the cgroup whose
``cgroup.procs`` file is PROCS (the instance's pids limit), so that the
command and all it forks are counted there.

``--check`` only says whether the bindings load (exit 0) or not (exit 2,
with what to install on stderr).

What the filter refuses and why (EPERM, as a kernel without the feature
would say it, unless said otherwise):

* ptrace, process_vm_readv/writev, pidfd_getfd: reaching into another
  process (a harness process in the instance's namespaces, before it drops
  its privileges) is how a script would borrow privileges it lacks;
* the mount family (mount, umount2, pivot_root, move_mount, open_tree,
  fsopen, fsconfig, fsmount, fspick, mount_setattr), setns, and unshare or
  clone asking for a new namespace: a new mount or user namespace is where
  capabilities come back (a user namespace's root has them all there);
* clone3 answers ENOSYS: its flags sit in memory a filter cannot read, and
  glibc falls back to clone, whose flags it can;
* module loading, kexec, reboot, swap, process accounting, iopl/ioperm:
  the host's kernel and hardware;
* bpf, perf_event_open, userfaultfd, the kernel keyrings (keyctl, add_key,
  request_key): kernel attack surface no package needs to install;
* open_by_handle_at: opening a host file by its handle, past the chroot;
* io_uring (ENOSYS): it runs operations beside the syscalls, out of a
  filter's sight; everything falls back to plain syscalls.

Everything else is allowed: the capabilities (capsh's allow-list) and the
namespaces are what confine the rest.  no_new_privs is set (libseccomp sets
it to load a filter; we ask for it explicitly): an exec never gains
privileges, which as root inside changes nothing a script needs.
"""

import errno
import os
import sys

#: Syscalls refused with EPERM whatever their arguments.
REFUSED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "setns",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "iopl", "ioperm",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "open_by_handle_at",
)
#: Syscalls that answer ENOSYS, so that callers fall back to others.
UNAVAILABLE = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")
#: The CLONE_NEW* flags (linux/sched.h): unshare(2) and clone(2) with any of them are refused.
NEW_NAMESPACE_FLAGS = {
    "CLONE_NEWTIME": 0x00000080, "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
}
#: Other architectures the native kernel runs binaries of (an i386 program
#: on amd64 makes i386 syscalls): the same rules apply to them.
COMPAT_ARCHES = {"x86_64": ("X86", "X32"), "aarch64": ("ARM",)}


def _seccomp():
    """The python3-seccomp module (Debian's Python, started with -I -S, lacks dist-packages)."""
    sys.path.append("/usr/lib/python3/dist-packages")
    import seccomp  # noqa: PLC0415 (only here: --check reports its absence)
    return seccomp


def build_filter(seccomp):
    """The filter described in the module's docstring."""
    flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    flt.set_attr(seccomp.Attr.CTL_NNP, 1)
    for arch in COMPAT_ARCHES.get(os.uname().machine, ()):
        try:
            flt.add_arch(getattr(seccomp.Arch, arch))
        except (AttributeError, OSError, RuntimeError):
            pass  # the kernel or libseccomp lacks it: nothing runs it either
    for name in REFUSED:
        _add(seccomp, flt, seccomp.ERRNO(errno.EPERM), name)
    for name in UNAVAILABLE:
        _add(seccomp, flt, seccomp.ERRNO(errno.ENOSYS), name)
    for flag in NEW_NAMESPACE_FLAGS.values():
        for name in ("unshare", "clone"):
            _add(seccomp, flt, seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    return flt


def _add(seccomp, flt, action, name, *args):
    try:
        flt.add_rule(action, name, *args)
    except (RuntimeError, OSError, ValueError):
        # A syscall this architecture does not have (iopl on arm64): nothing to refuse.
        pass


def main(argv):
    try:
        seccomp = _seccomp()
    except ImportError:
        print("piuparts: python3-seccomp is missing (apt-get install python3-seccomp)", file=sys.stderr)
        return 2
    if argv[:1] == ["--check"]:
        return 0
    if argv[:1] == ["--cgroup"] and len(argv) > 1:
        try:
            with open(argv[1], "w") as procs:
                procs.write(str(os.getpid()))
        except OSError as err:
            print(f"piuparts: cannot join the instance's cgroup {argv[1]}: {err.strerror}", file=sys.stderr)
            return 126
        argv = argv[2:]
    if not argv:
        print("usage: seccomp_exec.py [--cgroup PROCS] PROGRAM [ARGUMENT...]", file=sys.stderr)
        return 2
    build_filter(seccomp).load()
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"piuparts: cannot run {argv[0]}: {err.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
