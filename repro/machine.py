"""What machine this is, as a run's bits depend on it: the CPU's model and the instruction
sets its kernels dispatch on (recorded in every run's header, compared before a replay is
called bitwise), whether Paddle computes on an accelerator here, and the process's peak
memory (a review farm asks a node for as much)."""
import ast
import importlib.util
import os
import platform
import resource

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


def on_accelerator():
    """Whether Paddle computes on something other than the CPU here (its kernels there are not
    bitwise reproducible). A build for the CPU alone, with no custom-device plugin, never does:
    that is read from the constants of Paddle's generated version file (parsed, not run), so the
    judge does not load Paddle (a second and a half) to learn it; any other build is asked."""
    spec = importlib.util.find_spec("paddle")
    if spec is None or not spec.origin:
        return False
    site = os.path.dirname(os.path.dirname(spec.origin))
    build = _constants(os.path.join(os.path.dirname(spec.origin), "version", "__init__.py"))
    cpu_only = build.get("cuda_version") == "False" and build.get("xpu_xre_version") == "False" \
        and "hip_version" in build and build["hip_version"] is None
    if cpu_only and not os.environ.get("CUSTOM_DEVICE_ROOT") \
            and not os.path.isdir(os.path.join(site, "paddle_custom_device")):
        return False
    try:
        import paddle
    except ImportError:
        return False
    return paddle.device.get_device() != "cpu"


def _constants(path):
    """{name: value} of a Python file's top-level `name = literal` lines ({} if it cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return {}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def peak_memory():
    """The most resident memory this process has held, in bytes (a cluster asks a node for as
    much when it audits the run: repro.boundary.task.Needs)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux counts it in KiB


def run_cpu(run_env):
    """(model name, instruction sets) a run's header env records."""
    return run_env.get("cpu"), run_env.get("cpu_isa")


def same_cpu(run_env):
    """Whether this machine is the CPU a run was made on: only then is a replay bitwise."""
    return run_cpu(run_env) == cpu()
