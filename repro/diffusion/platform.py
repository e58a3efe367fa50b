"""The platform record a bundle's works carry: what decides a drawn image's bits, written
where the works are drawn (repro.diffusion.works, the redraw worker) and compared by the judge
(repro.diffusion.judge_redraw) key by key."""
import importlib.metadata

from repro.machine import cpu, mkl_path_in_effect

PLATFORM_KEYS = ("paddlepaddle", "paddle_commit", "ppdiffusers", "device", "gpu", "cpu", "cpu_isa", "threads",
                 "mkl_path")


def _version(dist):
    for name in (dist, f"{dist}-gpu"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def platform(threads):
    """What decides a drawn image's bits: Paddle (version and build), ppdiffusers, the
    device (and the GPU's name), the CPU and the instruction sets its kernels use, the
    number of CPU threads and the code path of MKL's products (repro.machine.mkl_path). Two
    draws with the same record give the same pixels."""
    import paddle
    device = paddle.device.get_device()
    gpu = None
    if device.startswith("gpu"):
        try:
            gpu = paddle.device.cuda.get_device_name()
        except Exception:  # noqa: BLE001 -- a name we cannot read is left out, not fatal
            gpu = "unknown"
    model, isa = cpu()
    return {"paddlepaddle": paddle.__version__, "paddle_commit": getattr(paddle.version, "commit", None),
            "ppdiffusers": _version("ppdiffusers"), "device": device, "gpu": gpu, "cpu": model, "cpu_isa": isa,
            "threads": int(threads), "mkl_path": mkl_path_in_effect()}
