"""What machine this is, as a run's bits depend on it: the CPU's model and the instruction
sets its kernels dispatch on (recorded in every run's header, compared before a replay is
called bitwise), the code path of MKL's matrix products, whether Paddle computes on an
accelerator here, and the process's peak memory (a review farm asks a node for as much)."""
import ast
import functools
import importlib.util
import os
import platform
import resource
import sys

from repro.errors import ReproError

ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")

# MKL's code paths a run may name, as the variables that select each. The MKL that Paddle 3.3 ships
# (libmklml_intel.so, 2019.0.5) dispatches to its vectorised kernels on Intel CPUs only and elsewhere
# takes a generic path: on an AMD EPYC the MNIST-1D CNN's products took 1.5 to 4 times PyTorch's time,
# and 3 to 6 times less with the AVX2 path named (MKL_DEBUG_CPU_TYPE=5). That path's results depend
# on how the operands happen to be aligned in memory (the same product twice gave other bits:
# tests/test_inception.py) unless MKL's conditional numerical reproducibility is strict
# (MKL_CBWR=AVX2,STRICT), which gives some of the speed back (55 -> 68 us on [1000, 75] x [75, 25])
# and makes a replay bitwise.
MKL_VARIABLES = ("MKL_DEBUG_CPU_TYPE", "MKL_CBWR")
MKL_PATHS = {"avx2": ("5", "AVX2,STRICT")}
AVX2 = {"avx2", "fma"}  # what MKL's AVX2 path needs of the CPU


@functools.lru_cache(maxsize=1)
def _cpuinfo():
    """(model name, vendor, flags) of the first CPU /proc/cpuinfo lists."""
    model, vendor, flags = platform.processor() or platform.machine(), "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "vendor_id":
                    vendor = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, vendor, flags


def cpu():
    """(model name, the instruction-set extensions kernels dispatch on): a run's
    bits depend on them, so same-platform replay means the same of both."""
    model, _, flags = _cpuinfo()
    return model, ",".join(f for f in ISA if f in flags)


def takes_avx2():
    """Whether this CPU can take MKL's AVX2 path (elsewhere use_mkl_path leaves MKL its own)."""
    return AVX2 <= _cpuinfo()[2]


def mkl_path():
    """The MKL code path a new run takes on this machine: "avx2" on an x86 CPU that is not
    Intel's and has AVX2 and FMA (where MKL would take its generic path), else None (MKL's own
    choice: its best kernels on Intel CPUs)."""
    vendor = _cpuinfo()[1]
    return "avx2" if vendor and vendor != "GenuineIntel" and takes_avx2() else None


def mkl_path_in_effect():
    """The MKL code path this process's environment names (None: MKL's own choice); values the
    harness does not know are returned as the variables' text, so a header never hides them."""
    values = tuple(os.environ.get(k) for k in MKL_VARIABLES)
    if values == (None,) * len(MKL_VARIABLES):
        return None
    return next((name for name, v in MKL_PATHS.items() if v == values),
                " ".join(f"{k}={v}" for k, v in zip(MKL_VARIABLES, values) if v is not None))


def check_mkl_path(path, where):
    """path if it is one MKL_PATHS names or None; else one line naming where it came from."""
    if path is not None and (not isinstance(path, str) or path not in MKL_PATHS):
        raise ReproError(f"{where}: MKL code path {str(path)[:60]!r} is not one this harness knows "
                         f"({', '.join(MKL_PATHS)} or null)")
    return path


_APPLIED = []  # the MKL variables' values use_mkl_path set in this process, in order


def use_mkl_path(path):
    """Make MKL take path (None: its own choice) in this process. MKL reads the variable once,
    at its first call, so this must happen before Paddle computes (train, the audit's workers and
    the redraw call it first); a process that set another path and has loaded Paddle since cannot
    switch and says so. A path this CPU cannot take (AVX2 on a CPU without it) is left to MKL:
    such a machine is another platform for the run anyway, and its replay is not called bitwise."""
    check_mkl_path(path, "use_mkl_path")
    values = MKL_PATHS[path] if path is not None and takes_avx2() else (None,) * len(MKL_VARIABLES)
    if _APPLIED and _APPLIED[-1] != values and "paddle" in sys.modules:
        raise ReproError(f"this process already computed with MKL's code path {mkl_path_in_effect()!r} and MKL "
                         f"cannot switch to {path!r}: run it in a new process")
    _APPLIED.append(values)
    for key, value in zip(MKL_VARIABLES, values):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
