"""The sandbox: the one place that starts a process which imports paper code.

Every worker (repro.worker: building a split, recomputing outputs, replaying a
segment) runs through Sandbox.run() below. Under bubblewrap (`bwrap`, Debian's package
`bubblewrap`, the sandbox Flatpak uses) the worker is nobody:

  - it runs as an unprivileged user (uid and gid WORKER_ID, 65534, "nobody") with no
    capability at all and no_new_privs: a judge running as root starts bwrap without a
    user namespace and drops to that user with util-linux's setpriv (so the worker is
    uid 65534 on the host too, and nothing it makes belongs to root); any other judge
    gives bwrap a user namespace mapping WORKER_ID to itself, with every capability
    dropped and no way to make another (--disable-userns);
  - a system-call filter (repro.boundary.seccomp) refuses ptrace, mount, new namespaces
    and the like, so it can neither trace the sandbox's init nor remount a read-only bind;
  - new network, PID, IPC, UTS and cgroup namespaces (no network at all), a new
    session, killed with its parent;
  - an environment cleared to an allowlist (no tokens, no proxies, HOME=/tmp);
  - read-only: the system's /usr and the few /etc files the loader needs (a passwd
    naming only the worker's user), the Python installation and virtual environment
    (never any other folder of sys.path), the harness, and what its caller binds (the
    datasets folders this run needs, a snapshot of exactly the submission's identified
    files, the task's inputs under /in);
  - size-limited private tmpfs folders for /tmp and for its outputs (/out), which
    vanish with it: no file it makes (a setuid one, a device, a link) reaches the host;
  - limits on address space, CPU time, file size, open files and processes.

What it hands back comes as one stream on its standard output (repro.boundary.exchange),
read by the judge up to a cap into a folder of the judge's own; its standard error is a
capped pipe. A worker that writes more than either cap is killed. Without bwrap, mode
"required" (a contest review, verify --contest) refuses with how to install it; "off"
(--no-sandbox) runs the same worker in a plain child process with the same cleared
environment, and every page says so.
"""
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from repro.boundary import seccomp
from repro.errors import ReproError

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
MODES = ("required", "auto", "off")
WORKER_ID = 65534  # the worker's uid and gid ("nobody")
IN, OUT = "/in", "/out"  # where a sandboxed worker finds its inputs and writes its outputs

# the worker's limits; time is the caller's timeout (wall clock), CPU time a multiple of it
MEMORY_BYTES = 16 << 30     # address space (Paddle maps a few GB of virtual memory at import)
FILE_BYTES = 2 << 30        # any one file it writes
OPEN_FILES = 4096
PROCESSES = 512             # threads count here too (per user: the worker's own uid)
TMPFS_BYTES = 1 << 30       # its private /tmp
STDERR_BYTES = 16 << 20     # its standard error, in all (the last STDERR_TAIL kept)
STDERR_TAIL = 64 << 10

ENV_PASS = ("LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE",
            # the instruction sets MKL and oneDNN may dispatch to (a verifier can replay as another CPU would)
            "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ENV_PASS_PREFIX = ("FLAGS_",)  # Paddle's kernel switches decide the bits; they are not secrets
ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
PASSWD = f"nobody:x:{WORKER_ID}:{WORKER_ID}:nobody:/tmp:/usr/sbin/nologin\n"
GROUP = f"nogroup:x:{WORKER_ID}:\n"


def bwrap():
    return shutil.which("bwrap")


def _as_root():
    return os.geteuid() == 0


_PROBED = {}


def why_unusable():
    """'' when a worker can be started as nobody here, else why not (one line, with the fix)."""
    if "why" not in _PROBED:
        _PROBED["why"] = _probe()
    return _PROBED["why"]


def available():
    """Whether bubblewrap is installed and can make a worker that is nobody here."""
    return why_unusable() == ""


def _probe():
    if not bwrap():
        return f"bubblewrap is not installed: {INSTALL_HINT}"
    if _as_root() and not shutil.which("setpriv"):
        return "util-linux's setpriv is not installed (it drops a root judge's worker to nobody): install util-linux"
    try:
        with seccomp.compiled() as bpf, _etc_files() as etc:
            fds = (bpf.fileno(), *etc.fds)
            cmd = _bwrap_command(["/bin/cat", "/proc/self/status"], [], {"PATH": "/usr/bin:/bin"}, *fds)
            p = subprocess.run(cmd, capture_output=True, timeout=60, pass_fds=fds, env={"PATH": "/usr/bin:/bin"})
    except ReproError as e:
        return str(e)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap could not start a worker here ({type(e).__name__})"
    if p.returncode != 0:
        said = p.stderr.decode("utf-8", "replace").strip().splitlines()
        hint = ("" if _as_root() else "; this kernel may forbid unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1, or run the review as root)")
        return f"bubblewrap could not make the worker's namespaces: {said[-1][:200] if said else p.returncode}{hint}"
    status = dict(ln.split(":", 1) for ln in p.stdout.decode("utf-8", "replace").splitlines() if ":" in ln)
    got = {k: status.get(k, "").split() for k in ("Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp")}
    if got["Uid"][:1] != [str(WORKER_ID)] or got["Gid"][:1] != [str(WORKER_ID)] \
            or any(got[k] != ["0000000000000000"] for k in ("CapEff", "CapPrm", "CapBnd")) \
            or got["NoNewPrivs"] != ["1"] or got["Seccomp"] != ["2"]:
        return f"the worker would not be nobody here (its status: {got})"
    return ""


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
                             f"{why_unusable()}; or pass --no-sandbox to run submitted code unconfined "
                             f"(every page will say so)")

    def describe(self):
        if self.enabled:
            return "bubblewrap"
        return "off (--no-sandbox)" if self.mode == "off" else "off (bubblewrap not available)"

    def run(self, argv, readonly=(), env=None, timeout=3600, receive=None, host_out=None):
        """Run argv (argv[0] is this Python) as a worker and hand its standard output to
        receive(stream) while it runs. readonly: [(host path, path inside)]; host_out: the
        worker's output folder when unsandboxed (sandboxed, it is a tmpfs at OUT); env: extra
        variables. Returns Ended: its status (-9: killed at the time limit), whether it flooded
        its standard error, the end of what it wrote there, and what receive returned (an
        exception it returns, for output that cannot be taken, kills the worker at once)."""
        child_env = _env(env or {})
        bpf, etc = (seccomp.compiled(), _etc_files()) if self.enabled else (None, None)
        try:
            if self.enabled:
                fds = (bpf.fileno(), *etc.fds)
                cmd, run_env, cwd = _bwrap_command(argv, readonly, child_env, *fds), {"PATH": "/usr/bin:/bin"}, \
                    tempfile.gettempdir()
            else:
                cmd, run_env, cwd, fds = list(argv), child_env, host_out or tempfile.gettempdir(), ()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=run_env, cwd=cwd, pass_fds=fds, preexec_fn=lambda: _limits(timeout))
        finally:
            if bpf is not None:
                bpf.close()
                etc.close()
        return _watch(proc, timeout, receive)


class Ended:
    def __init__(self, code, flooded, stderr, received, timed_out):
        self.code, self.flooded, self.stderr, self.received = code, flooded, stderr, received
        self.timed_out = timed_out  # killed at its time limit (not for what it sent)


def _watch(proc, timeout, receive):
    killed = threading.Event()

    def kill():
        killed.set()
        _kill(proc)

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    err = {"tail": b"", "flooded": False}

    def drain():
        total = 0
        for chunk in iter(lambda: proc.stderr.read1(1 << 16), b""):
            total += len(chunk)
            err["tail"] = (err["tail"] + chunk)[-STDERR_TAIL:]
            if total > STDERR_BYTES:
                err["flooded"] = True
                _kill(proc)
                return

    reader = threading.Thread(target=drain, daemon=True)
    timer.start()
    reader.start()
    received = None
    try:
        received = receive(proc.stdout) if receive else None
        if isinstance(received, BaseException):  # what it sent cannot be taken: stop it now
            _kill(proc)
        else:
            while proc.stdout.read(1 << 16):  # nothing should follow; drain so the worker can exit
                pass
        proc.wait()
    except BaseException:
        _kill(proc)
        raise
    finally:
        timer.cancel()
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    code = -9 if killed.is_set() else proc.returncode
    return Ended(code, err["flooded"], err["tail"].decode("utf-8", "replace"), received, killed.is_set())


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except OSError:
        pass


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


def readable_by_workers(top):
    """Every folder and file under top readable by others (links left alone): a sandboxed worker
    is another user (WORKER_ID), and mkdtemp makes 0700, some writers 0600."""
    for folder, _, files in os.walk(top):
        for p, want in [(folder, 0o755)] + [(os.path.join(folder, f), 0o644) for f in files]:
            st = os.lstat(p)
            if not os.path.islink(p) and st.st_mode & 0o777 & want != want:
                os.chmod(p, (st.st_mode & 0o777) | want)


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
    args += ["--perms", "0755", "--dir", "/etc"]  # else bwrap makes it 0700 and the worker (nobody) reads none of it
    for f in ETC:
        args += ["--ro-bind-try", f, f]
    return args


def python_roots():
    """The interpreter's installation, the virtual environment and the site-packages folders its
    .pth files add: the folders that hold this Python and what it imports. Never a folder that
    PYTHONPATH names (one into a home folder, say), the current folder, or a checkout holding
    runs (the harness's own folders are bound apart)."""
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix,
                                              os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))}
    prefixes |= {os.path.abspath(p) for p in (sys.base_prefix, sys.prefix)}
    named = {os.path.realpath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    skip = named | {os.path.realpath(os.getcwd()), os.path.realpath(harness_roots()[1] or os.sep), os.sep}
    prefixes |= {os.path.abspath(p) for p in sys.path
                 if p and os.path.isdir(p) and os.path.realpath(p) not in skip
                 and os.path.basename(os.path.normpath(p)) in ("site-packages", "dist-packages")}
    roots = sorted(p for p in prefixes if os.path.isdir(p) and p != os.sep)
    return [p for p in roots if not any(p != q and p.startswith(q + os.sep) for q in roots)]


_SAFE = re.compile(r"^/[A-Za-z0-9._/+@=,-]*$")


def _bwrap_command(argv, readonly, env, seccomp_fd, passwd_fd, group_fd):
    args = [bwrap(), "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv", "--seccomp", str(seccomp_fd),
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",
            "--perms", "0777", "--size", str(TMPFS_BYTES), "--tmpfs", OUT]
    if not _as_root():
        args += ["--unshare-user", "--uid", str(WORKER_ID), "--gid", str(WORKER_ID), "--cap-drop", "ALL",
                 "--disable-userns"]
    args += _system_binds()
    args += ["--perms", "0644", "--ro-bind-data", str(passwd_fd), "/etc/passwd",
             "--perms", "0644", "--ro-bind-data", str(group_fd), "/etc/group"]
    binds = [(folder, folder) for folder in python_roots() + harness_roots()[0]] + list(readonly)
    for host, inside in binds:
        if not _SAFE.match(inside):
            raise ReproError(f"a path the worker would see has unusual characters: {inside[:80]!r}")
    for folder in _parents([inside for _, inside in binds]):  # bwrap would make them 0700: the worker is nobody
        args += ["--perms", "0755", "--dir", folder]
    for host, inside in binds:
        args += ["--ro-bind", host, inside]
    args += ["--chdir", OUT]
    for k, v in sorted(env.items()):
        args += ["--setenv", k, v]
    if _as_root():  # bwrap keeps no user namespace for root: drop to nobody, every capability and privilege gone
        argv = ["setpriv", f"--reuid={WORKER_ID}", f"--regid={WORKER_ID}", "--clear-groups", "--inh-caps=-all",
                "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]
    return args + ["--"] + list(argv)


def _parents(paths):
    """The folders above the mount points, outermost first, that no mount provides."""
    out = []
    for path in paths:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            folder = "/" + "/".join(parts[:i])
            if folder not in out and folder not in ("/usr", "/etc", "/tmp", OUT, "/proc", "/dev") \
                    and not any(folder == p or folder.startswith(p.rstrip("/") + "/") for p in paths):
                out.append(folder)
    return sorted(out, key=lambda f: f.count("/"))


class _etc_files:
    """The worker's /etc/passwd and /etc/group, each in an unnamed file (open, at offset 0) that
    bwrap copies in (--ro-bind-data): nothing is left in /tmp by a judge that is killed."""

    def __init__(self):
        self.files = []
        for text in (PASSWD, GROUP):
            f = tempfile.TemporaryFile()
            f.write(text.encode("utf-8"))
            f.seek(0)
            self.files.append(f)
        self.fds = tuple(f.fileno() for f in self.files)

    def close(self):
        for f in self.files:
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def worker_argv(*args):
    """This Python running repro.worker: no bytecode written, no user site, isolated from cwd."""
    return [sys.executable, "-B", "-s", "-m", "repro.worker", *args]


def elapsed(t0):
    return round(time.perf_counter() - t0, 3)
