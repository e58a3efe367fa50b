"""What a run was: environment and code identity, recorded in its header."""
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys

HARNESS = os.path.dirname(os.path.abspath(__file__))  # the repro package


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(where, *args):
    try:
        out = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _files(folder):
    """Every file under folder, caches excluded, as sorted absolute paths."""
    paths = []
    for dirpath, dirnames, files in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        paths += [os.path.join(dirpath, f) for f in files if not f.endswith((".pyc", ".pyo"))]
    return sorted(paths)


def file_hashes(base, folders):
    """{path relative to base: sha256} of every file under the folders (given relative to base)."""
    out = {}
    for folder in folders:
        for path in _files(os.path.join(base, folder)):
            with open(path, "rb") as f:
                out[os.path.relpath(path, base).replace(os.sep, "/")] = hashlib.sha256(f.read()).hexdigest()
    return out


def digest(hashes):
    """One sha256 for a {path: sha256} map."""
    return hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in sorted(hashes.items())).encode()).hexdigest()


def _repository(path, folders):
    """(root, commit, dirty, sha256 of the changes) of the git repository holding
    path, where dirty means the folders differ from the commit (edited, added or
    deleted files); (None, None, None, None) outside git."""
    top = _git(path, "rev-parse", "--show-toplevel")
    if not top:
        return None, None, None, None
    top = top.strip()
    commit = _git(top, "rev-parse", "HEAD")
    status = _git(top, "status", "--porcelain", "--untracked-files=all", "--", *folders)
    diff = _git(top, "diff", "HEAD", "--", *folders)
    dirty = bool(status) if status is not None else None
    changes = hashlib.sha256(((status or "") + (diff or "")).encode()).hexdigest() if dirty else None
    return top, commit.strip() if commit else None, dirty, changes


def paper_code(paper, exp=None):
    """The identity of a paper's own code: its package and configs, file by file,
    relative to the repository that holds them (or the package's parent folder),
    and which of those files is the experiment's config."""
    package = paper.root
    configs = os.path.normpath(os.path.join(package, paper.config_dir))
    folders = [package] + ([configs] if os.path.commonpath([package, configs]) != package else [])
    top, commit, dirty, changes = _repository(package, folders)
    base = top or os.path.dirname(package)
    rel = [os.path.relpath(f, base).replace(os.sep, "/") for f in folders]
    hashes = file_hashes(base, rel)
    config = os.path.relpath(paper.config_path(exp), base).replace(os.sep, "/") if exp is not None else None
    return {"package": rel[0], "configs": rel[-1], "config_file": config, "sha256": digest(hashes),
            "files": hashes, "git_commit": commit, "git_dirty": dirty, "git_changes_sha256": changes}


def harness_code():
    """The identity of the harness that ran: its version, a hash of its files, and
    where it is a checkout, its commit."""
    from repro import __version__
    metrics = os.path.join(os.path.dirname(HARNESS), "metrics")
    folders = [HARNESS] + ([metrics] if os.path.isfile(os.path.join(metrics, "__init__.py")) else [])
    base = os.path.dirname(HARNESS)
    _, commit, dirty, changes = _repository(HARNESS, folders)
    return {"version": __version__, "sha256": digest(file_hashes(base, [os.path.relpath(f, base) for f in folders])),
            "git_commit": commit, "git_dirty": dirty, "git_changes_sha256": changes}


def code_identity(paper, exp=None):
    """What code ran: the paper's own (package and configs) and the harness's, apart."""
    return {"paper": paper_code(paper, exp), "harness": harness_code()}


def command():
    """The command line as a user would retype it: the module instead of the
    script's path, and paths under the working directory made relative to it,
    so a shipped log names no folder of the machine that made it."""
    argv = list(sys.argv)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None and spec.name else ["python", os.path.basename(argv[0])]
    cwd = os.getcwd()
    out = []
    for arg in argv[1:]:
        key, eq, value = arg.partition("=") if arg.startswith("-") is False and "=" in arg else ("", "", arg)
        if os.path.isabs(value) and os.path.commonpath([cwd, os.path.abspath(value)]) == cwd:
            value = os.path.relpath(value, cwd)
        out.append(f"{key}{eq}{value}")
    return head + out


ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def cpu():
    """(model name, the instruction-set extensions kernels dispatch on): a run's
    bits depend on them, so same-platform replay means the same of both."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, ",".join(f for f in ISA if f in flags)

def run_cpu(run_env):
    """(model name, instruction sets) a run's header env records."""
    return run_env.get("cpu"), run_env.get("cpu_isa")


def same_cpu(run_env):
    """Whether this machine is the CPU a run was made on: only then is a replay bitwise."""
    return run_cpu(run_env) == cpu()


def environment(threads=1):
    import paddle

    return {
        "python": platform.python_version(),
        "paddlepaddle": paddle.__version__,
        "paddlenlp": _version("paddlenlp"),
        "ppdiffusers": _version("ppdiffusers"),
        "numpy": _version("numpy"),
        "cuda": paddle.version.cuda() if paddle.is_compiled_with_cuda() else None,
        "cudnn": paddle.version.cudnn() if paddle.is_compiled_with_cuda() else None,
        "device": paddle.device.get_device(),
        "cpu": cpu()[0],
        "cpu_isa": cpu()[1],
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "world_size": int(os.environ.get("PADDLE_TRAINERS_NUM", "1")),
        "threads": threads,
        "command": command(),
    }
