"""Hostile fixture packages: maintainer scripts that try to get out of the
instance onto the host, each leaving a marker file on the host's /var/tmp
if it does.  Used by tests/integration/test_confinement.py (one package a
run) and test_celery.py (the whole set through ``piuparts worker``).

Each script goes on after a refused attempt and says what was refused on
its output (which the log keeps): the verdict is the harness's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.debs import DebSpec

HERE = Path(__file__).parent
#: The host's directory the markers would land in.
MARKERS = Path("/var/tmp")
#: The effective capabilities of a command inside (ALLOWED_CAPABILITIES as
#: /proc/PID/status shows them): chown, dac_override, fowner, fsetid, kill,
#: setgid, setuid, net_bind_service, audit_write, setfcap.
CONFINED_CAPS = f"{sum(1 << n for n in (0, 1, 3, 4, 5, 6, 7, 10, 29, 31)):016x}"


def marker(name: str) -> Path:
    return MARKERS / f"pp-escape-{name}"


def build_ptrace_helper(outdir: Path) -> bytes:
    """tests/hostile/ptrace_escape.c, built static (the instance has no compiler)."""
    out = outdir / "ptrace_escape"
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out), str(HERE / "ptrace_escape.c")], check=True,
                   capture_output=True, timeout=120)
    return out.read_bytes()


def ptracer(helper: bytes) -> DebSpec:
    """Escape 1: ptrace any process it sees (the namespace holder, PID 1, and
    a daemon of its own), make it chroot out and write the marker."""
    return DebSpec("pp-ptracer", files={"/usr/lib/pp-ptracer/escape": helper},
                   executables=("/usr/lib/pp-ptracer/escape",), scripts={"postinst": f"""\
if [ "$1" = configure ]; then
    setsid sleep 7772 </dev/null >/dev/null 2>&1 &
    sleep 0.3
    /usr/lib/pp-ptracer/escape {marker("ptrace")}
    kill $! 2>/dev/null || true
fi"""})


#: Escape 2: a dpkg-query on adequate's PATH, planted by the postinst; run
#: where adequate runs, it climbs out of the chroot if it can, writes the
#: marker and, to adequate (its parent is
#: perl; the harness's own queries are left alone), says with what capabilities.
PLANTED_DPKG_QUERY = f"""#!/usr/bin/perl
# In a child: climb out of the chroot (with CAP_SYS_CHROOT, as on the host) and write the marker.
my $child = fork;
if (defined $child && $child == 0) {{
    mkdir '/tmp/pp-out';
    if (chroot '/tmp/pp-out') {{ chdir '..' for 1..64; chroot '.'; }}
    open(my $out, '>', '{marker("adequate")}') and close($out);
    exit 0;
}}
waitpid($child, 0) if $child;
open(my $status, '<', '/proc/self/status');
my ($caps) = grep {{ /^CapEff:/ }} <$status>;
chomp $caps;
open(my $parent, '<', '/proc/' . getppid() . '/comm');
my $comm = <$parent> // '';
print STDERR "pp-planted dpkg-query ran: $caps\\n" if $comm =~ /^perl/;
exec '/usr/bin/dpkg-query', @ARGV;
"""
ADEQUATE_ESCAPER = DebSpec("pp-adequate-escaper", scripts={
    "postinst": f"""\
if [ "$1" = configure ]; then
    cat > /usr/local/bin/dpkg-query <<'EOF'
{PLANTED_DPKG_QUERY}EOF
    chmod 0755 /usr/local/bin/dpkg-query
fi""",
    "postrm": 'if [ "$1" = remove ] || [ "$1" = purge ]; then rm -f /usr/local/bin/dpkg-query; fi'})

#: Device nodes, namespaces to win capabilities back in, and the syscalls
#: the seccomp filter refuses; each says whether it was refused.
KERNEL_PROBER = DebSpec("pp-kernel-prober", scripts={"postinst": f"""\
if [ "$1" = configure ]; then
    mknod /tmp/pp-disk b 8 0 2>/dev/null && echo "pp-probe: mknod made a disk node" || echo "pp-probe: mknod refused"
    mknod /tmp/pp-mem c 1 1 2>/dev/null && echo "pp-probe: mknod made /dev/mem" || echo "pp-probe: mknod refused"
    unshare -Urm sh -c 'mount -t tmpfs pp-escape-userns /mnt && touch {marker("userns")}' 2>/dev/null \\
        && echo "pp-probe: a user namespace gave mount back" || echo "pp-probe: user namespace refused"
    unshare -m true 2>/dev/null && echo "pp-probe: unshare -m worked" || echo "pp-probe: mount namespace refused"
    perl -e '
        my %nr = (ptrace => 101, kexec_load => 246, init_module => 175, bpf => 321, perf_event_open => 298,
                  keyctl => 250, add_key => 248, open_by_handle_at => 304, setns => 308, mount => 165,
                  process_vm_readv => 310, userfaultfd => 323, swapoff => 168, reboot => 169);
        for my $name (sort keys %nr) {{
            my $r = syscall($nr{{$name}}, 0, 0, 0, 0, 0);
            printf "pp-probe: %s %s\\n", $name, $r == -1 && $!{{EPERM}} ? "refused" : "answered ($r, $!)";
        }}'
fi"""})

#: A fork bomb: as many processes as it can, each sleeping; stops (and
#: fails the postinst) at the first fork the kernel refuses.
FORK_BOMB = DebSpec("pp-fork-bomb", scripts={"postinst": """\
if [ "$1" = configure ]; then
    perl -e 'for my $n (1..12000) {
        my $pid = fork;
        defined $pid or die "pp-fork-bomb: stopped at $n processes: $!\\n";
        if (!$pid) { open(STDOUT, ">", "/dev/null"); open(STDERR, ">", "/dev/null"); sleep 600; exit 0 }
    }
    print "pp-fork-bomb: 12000 processes started\\n"'
fi"""})

#: Fills the instance's disk.
DISK_FILLER = DebSpec("pp-disk-filler", scripts={"postinst": """\
if [ "$1" = configure ]; then
    dd if=/dev/zero of=/var/lib/pp-fill bs=1M
fi"""})
