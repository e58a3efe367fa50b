"""The worker's system-call filter: what a process that imports paper code may not ask the
kernel for, compiled by libseccomp (through pyseccomp) and handed to bubblewrap
(`--seccomp FD`), which installs it in the worker just before exec.

Refused (EPERM): tracing or reading other processes (ptrace, process_vm_*, kcmp,
pidfd_getfd: the sandbox's init cannot be traced), any mount or change of root
(mount, umount2, pivot_root, chroot, the new mount API), new namespaces (unshare, setns,
clone with a CLONE_NEW* flag; clone3 answers ENOSYS so the C library falls back to
clone, whose flags the filter can read), the kernel's keyrings, BPF and perf, loading
modules or kernels, userfaultfd, open_by_handle_at (reads files by inode past any
mount), and the clock, swap, reboot and accounting calls. A system call of another
architecture (a 32-bit one on x86-64) kills the process (libseccomp's default).
"""
import errno
import tempfile

from repro.errors import ReproError

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr",
    "unshare", "setns",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "name_to_handle_at", "open_by_handle_at", "acct", "swapon", "swapoff", "reboot", "syslog",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "quotactl", "lookup_dcookie", "uselib",
    "vhangup", "iopl", "ioperm",
)
# every CLONE_NEW* flag: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
INSTALL_HINT = "pip install pyseccomp (libseccomp itself: Debian/Ubuntu libseccomp2, Fedora libseccomp)"


def _library():
    try:
        import pyseccomp  # optional at import time: only a sandboxed worker needs it
        return pyseccomp
    except (ImportError, OSError) as e:
        raise ReproError(f"the worker's system-call filter needs libseccomp's Python binding, which is not usable "
                         f"here ({type(e).__name__}): {INSTALL_HINT}") from None


def compiled():
    """A file (open, at offset 0) holding the filter as a BPF program, for bwrap --seccomp."""
    lib = _library()
    f = lib.SyscallFilter(lib.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(lib.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):  # a call this architecture does not have
            pass
    for flag in CLONE_NAMESPACES:
        f.add_rule(lib.ERRNO(errno.EPERM), "clone", lib.Arg(0, lib.MASKED_EQ, flag, flag))
    f.add_rule(lib.ERRNO(errno.ENOSYS), "clone3")
    out = tempfile.TemporaryFile()
    f.export_bpf(out)
    out.seek(0)
    return out
