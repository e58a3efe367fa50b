"""What machine this is, as a run's bits depend on it: the CPU's model and the instruction
sets its kernels dispatch on (recorded in every run's header, compared before a replay is
called bitwise), and the process's peak memory (a review farm asks a node for as much)."""
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
