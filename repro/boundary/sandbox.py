"""The sandbox: the one place that starts a process which imports paper code.

Every worker (repro.boundary.worker: building a split, recomputing outputs, replaying a
segment) runs through run() below. Under bubblewrap (`bwrap`, Debian's
package `bubblewrap`, the sandbox Flatpak uses) the worker gets:

  - new network, PID, IPC, UTS and cgroup namespaces (no network at all: only a
    loopback that nothing listens on), a new session, killed with its parent;
  - an environment cleared to an allowlist (no tokens, no proxies, HOME=/tmp);
  - read-only: the system's /usr, the Python installation and virtual
    environment, the harness, the datasets folder, and exactly the files it is
    handed: for a submission, a snapshot of the files its code identity covers
    (repro.boundary.identity), never its logs, another submission or the maintainer's home;
  - a private tmpfs for /tmp, and one writable folder for its outputs;
  - limits on address space, CPU time, file size, open files and processes.

What a worker writes is read back by the judge (repro.judge.audit) as tensors and
checked; nothing it reports is believed. Without bwrap, mode "required" (a
contest review, verify --contest) refuses with how to install it; "off"
(--no-sandbox) runs the same worker in a plain child process with the same
cleared environment, and every page says so.
"""
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from repro.errors import ReproError

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
MODES = ("required", "auto", "off")

# the worker's limits; time is the caller's timeout (wall clock), CPU time a multiple of it
MEMORY_BYTES = 16 << 30     # address space (Paddle maps a few GB of virtual memory at import)
FILE_BYTES = 2 << 30        # any one file it writes
OPEN_FILES = 4096
PROCESSES = 512             # threads count here too (RLIMIT_NPROC is per user; no effect for root)
TMPFS_BYTES = 1 << 30       # its private /tmp

ENV_PASS = ("LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE",
            # the instruction sets MKL and oneDNN may dispatch to (a verifier can replay as another CPU would)
            "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ENV_PASS_PREFIX = ("FLAGS_",)  # Paddle's kernel switches decide the bits; they are not secrets


def bwrap():
    return shutil.which("bwrap")


def available():
    """Whether bubblewrap is installed and can make its namespaces here."""
    exe = bwrap()
    if not exe:
        return False
    try:
        p = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


class Sandbox:
    """How workers run: mode 'required' (bwrap or refuse), 'auto' (bwrap where it works),
    'off' (plain child processes: --no-sandbox)."""

    def __init__(self, mode="auto"):
        if mode not in MODES:
            raise ReproError(f"sandbox mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.enabled = mode != "off" and available()
        if mode == "required" and not self.enabled:
            raise ReproError(f"reviewing submitted code needs the bubblewrap sandbox, which is not usable here: "
                             f"{INSTALL_HINT}, or pass --no-sandbox to run submitted code unconfined "
                             f"(every page will say so)")

    def describe(self):
        if self.enabled:
            return "bubblewrap"
        return "off (--no-sandbox)" if self.mode == "off" else "off (bubblewrap not available)"

    def run(self, argv, readonly=(), out_dir=None, env=None, timeout=3600, stdin=None, stderr=None):
        """Run argv (argv[0] is this Python) as a worker; returns the exit status.
        readonly: [(host path, path inside)]; out_dir: the one writable folder (same path
        inside); env: extra variables (on top of the allowlist). A worker over its time
        is killed with everything it started; the status is then -9."""
        child_env = _env(env or {})
        if self.enabled:
            cmd = _bwrap_command(argv, readonly, out_dir, child_env)
            run_env = {"PATH": "/usr/bin:/bin"}
        else:
            cmd, run_env = list(argv), child_env
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr if stderr is not None else subprocess.DEVNULL,
                                env=run_env, cwd=out_dir or tempfile.gettempdir(),
                                preexec_fn=lambda: _limits(timeout), close_fds=True)
        try:
            if stdin is not None:
                try:
                    proc.stdin.write(stdin)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return -9
        except BaseException:
            _kill(proc)
            raise


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _limits(timeout):
    """In the child, before exec: its own process group (killed whole), no core files, limits."""
    os.setsid()
    cpu = int(max(60, 4 * timeout))  # CPU seconds over all its threads; wall time is the caller's
    for what, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, FILE_BYTES),
                        (resource.RLIMIT_AS, MEMORY_BYTES), (resource.RLIMIT_CPU, cpu),
                        (resource.RLIMIT_NOFILE, OPEN_FILES), (resource.RLIMIT_NPROC, PROCESSES)):
        try:
            soft, hard = resource.getrlimit(what)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(what, (value, value))
        except (ValueError, OSError):
            pass


def harness_roots():
    """The folders the harness's code lives in: the installed package, or a checkout's
    repro/, metrics/, papers/ and configs/ (never its logs or tests). Returns (folders, the
    folder to put on PYTHONPATH or None)."""
    import repro
    pkg = os.path.dirname(os.path.abspath(repro.__file__))
    top = os.path.dirname(pkg)
    if os.path.isdir(os.path.join(pkg, "metrics")):  # installed: everything is inside the package
        return [pkg], None
    return [os.path.join(top, d) for d in ("repro", "metrics", "papers", "configs")
            if os.path.isdir(os.path.join(top, d))], top


def _env(extra):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": "/tmp", "HF_HUB_OFFLINE": "1"}
    for k, v in os.environ.items():
        if k in ENV_PASS or k.startswith(ENV_PASS_PREFIX):
            env[k] = v
    _, path = harness_roots()
    if path:
        env["PYTHONPATH"] = path
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _system_binds():
    args = ["--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf",
              "/etc/passwd", "/etc/group", "/etc/alternatives", "/etc/ssl/certs"):
        args += ["--ro-bind-try", f, f]
    return args


def _python_binds():
    """The interpreter, its standard library, the virtual environment and every folder on
    this Python's import path (a .pth file may add one), read-only; never the current
    folder, which may be a checkout holding runs (the harness's own folders are bound apart)."""
    paths = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    paths |= {sys.base_prefix, sys.prefix}
    exe = os.path.abspath(sys.executable)
    paths.add(os.path.dirname(exe))
    here = {os.path.realpath(os.getcwd()), os.path.realpath(harness_roots()[1] or os.sep)}
    for entry in sys.path:
        if entry and os.path.isdir(entry) and os.path.realpath(entry) not in here and os.path.realpath(entry) != os.sep:
            paths.add(os.path.abspath(entry))
    out = []
    for p in sorted(paths):
        if os.path.isdir(p) and not any(p != q and p.startswith(q + os.sep) for q in paths):
            out += ["--ro-bind", p, p]
    return out


def _bwrap_command(argv, readonly, out_dir, env):
    args = [bwrap(), "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--proc", "/proc", "--dev", "/dev", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]
    args += _system_binds() + _python_binds()
    for folder in harness_roots()[0]:
        args += ["--ro-bind", folder, folder]
    for host, inside in readonly:
        args += ["--ro-bind", host, inside]
    if out_dir:
        args += ["--bind", out_dir, out_dir, "--chdir", out_dir]
    else:
        args += ["--chdir", "/tmp"]
    for k, v in sorted(env.items()):
        args += ["--setenv", k, v]
    return args + ["--"] + list(argv)


def worker_argv(*args):
    """This Python running repro.boundary.worker: no bytecode written, no user site, isolated from cwd."""
    return [sys.executable, "-B", "-s", "-m", "repro.boundary.worker", *args]


def elapsed(t0):
    return round(time.perf_counter() - t0, 3)
