"""Paddle's CPU threads decide a result's bits, so every process that computes sets the run's
count; a worker that may never compute with Paddle (a data build in numpy) says one thread
through the variables Paddle's libraries read when they load, and does not load Paddle."""
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

# products (MKL splits them over threads; only these differ here), reductions, a convolution, a softmax;
# on MKL's own code path (its strict AVX2 path, which new runs take on AMD CPUs, gave these products the
# same bits on one thread and two)
PROBE = """
import hashlib, json, sys
from repro.run import recipe
mode = sys.argv[1]
if mode == "unloaded":
    recipe.set_threads(1, load=False, mkl=None)
    assert "paddle" not in sys.modules
import paddle
if mode != "unloaded":
    recipe.set_threads(int(mode), mkl=None)
paddle.seed(0)
x, y, z = paddle.randn([1500, 1500]), paddle.randn([333, 2049]), paddle.randn([2049, 517])
im, w = paddle.randn([8, 3, 64, 64]), paddle.randn([16, 3, 5, 5])
outs = {"x @ x": x @ x, "y @ z": y @ z, "sum": x.sum(axis=0), "conv": paddle.nn.functional.conv2d(im, w),
        "softmax": paddle.nn.functional.softmax(x, axis=1)}
print(json.dumps({k: hashlib.sha256(o.numpy().tobytes()).hexdigest() for k, o in outs.items()}))
"""


def _probe(mode):
    # the machine's environment asks for two threads everywhere: only what the harness sets may win
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
           "OPENBLAS_NUM_THREADS": "2", "FLAGS_paddle_num_threads": "2"}
    p = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.splitlines()[-1])


@pytest.mark.slow  # three processes that load Paddle
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: two threads give the same bits as one")
def test_one_thread_said_before_paddle_loads_gives_set_threads_1s_bits():
    one, unloaded, two = _probe("1"), _probe("unloaded"), _probe("2")
    assert two != one, "some kernel should round differently on two threads (else this test shows nothing)"
    assert unloaded == one


def test_a_data_worker_of_a_numpy_paper_never_loads_paddle(tmp_path):
    """MNIST-1D's splits are numpy's: its data task writes them without importing Paddle."""
    code = ("import json, sys\nfrom repro import worker\n"
            "answer = worker.data_task({'paper': 'mnist1d', 'exp': 'logreg', 'threads': 1}, sys.argv[1])\n"
            "print(json.dumps({'splits': answer['splits'], 'paddle': 'paddle' in sys.modules}))")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": REPO})
    assert p.returncode == 0, p.stderr[-2000:]
    said = json.loads(p.stdout.splitlines()[-1])
    assert said == {"splits": ["test"], "paddle": False}, said
    assert os.path.getsize(tmp_path / "data.safetensors") > 0


def test_the_judge_learns_a_cpu_build_of_paddle_without_loading_it():
    """A CPU wheel says so in its generated version file: verify --recompute and review know the replay
    can be bitwise without importing Paddle; the answer is what Paddle itself gives."""
    import paddle
    code = "import sys\nfrom repro import machine\nprint(machine.on_accelerator(), 'paddle' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": REPO})
    assert p.returncode == 0, p.stderr[-2000:]
    cpu_alone = not (paddle.is_compiled_with_cuda() or paddle.is_compiled_with_xpu() or paddle.is_compiled_with_rocm()
                     or paddle.device.get_all_custom_device_type())
    # the answer Paddle gives; Paddle loaded only where the build is not the CPU's alone
    assert p.stdout.split() == [str(paddle.device.get_device() != "cpu"), str(not cpu_alone)], p.stdout


@pytest.mark.parametrize("line, env", [("cuda_version     = '12.6'", {}), ("xpu_xre_version  = '5.0'", {}),
                                       ("hip_version      = '6.0'", {}), ("", {"CUSTOM_DEVICE_ROOT": "/opt/npu"})])
def test_any_build_but_the_cpu_alone_asks_paddle(tmp_path, monkeypatch, line, env):
    import paddle

    from repro import machine
    text = "cuda_version     = 'False'\nxpu_xre_version  = 'False'\nhip_version      = None\n" + line + "\n"
    version = tmp_path / "paddle" / "version"
    version.mkdir(parents=True)
    (version / "__init__.py").write_text(text)
    spec = type("Spec", (), {"origin": str(tmp_path / "paddle" / "__init__.py")})
    monkeypatch.setattr(machine.importlib.util, "find_spec", lambda name: spec)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(paddle.device, "get_device", lambda: "gpu:0")
    assert machine.on_accelerator()
    if not line:  # the same file without the plugin: the CPU alone, Paddle never asked
        monkeypatch.delenv("CUSTOM_DEVICE_ROOT")
        assert not machine.on_accelerator()
