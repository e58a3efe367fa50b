"""What a run was: environment and code identity, recorded in its header."""
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys

from repro.paper import REPO_ROOT


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args):
    try:
        out = subprocess.run(["git", "-C", REPO_ROOT, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def tree_hash(*folders):
    """sha256 over the relative paths and bytes of every file under the
    folders (relative to the repo root), caches excluded."""
    h = hashlib.sha256()
    for folder in folders:
        root = os.path.join(REPO_ROOT, folder)
        paths = []
        for dirpath, dirnames, files in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            paths += [os.path.join(dirpath, f) for f in files if not f.endswith(".pyc")]
        for path in sorted(paths):
            h.update(os.path.relpath(path, REPO_ROOT).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def code_identity(paper_name):
    """git commit, whether the tree differs from it (and a hash of that diff),
    and hashes of the harness's and the paper's own files as they ran."""
    commit = _git("rev-parse", "HEAD")
    diff = _git("diff", "HEAD")
    return {
        "git_commit": commit.strip() if commit else None,
        "git_dirty": bool(diff) if diff is not None else None,
        "git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "harness_sha256": tree_hash("repro", "metrics"),
        "paper_sha256": tree_hash(f"papers/{paper_name}", f"configs/{paper_name}"),
    }


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
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "world_size": int(os.environ.get("PADDLE_TRAINERS_NUM", "1")),
        "threads": threads,
        "command": command(),
    }
