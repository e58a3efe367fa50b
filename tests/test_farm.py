"""The review farm (issue 39): worker tasks on a Ray cluster's nodes, each in the same sandbox,
its inputs checked on arrival and its outputs checked by the judge as a local worker's are.
The tests that start Ray are slow; they need ray (the [cluster] extra) and bubblewrap. The
example contest reviewed through Ray (benchmarks/review_farm.py) is in tests/test_example.py,
beside the local review it is compared with."""
import json
import os
import signal
import socket
import sys

import pytest
from conftest import REPO, cli

from repro import verify as verify_cmd
from repro.boundary import exchange, node, sandbox, task
from repro.boundary.sandbox import Sandbox
from repro.errors import ReproError

try:
    import ray
except ImportError:
    ray = None

# a worker task of the harness's own code, quick and deterministic: 50 fresh MNIST-1D samples
FRESH = {"task": "fresh", "paper": "mnist1d", "exp": "logreg", "lite": False, "set": {}, "threads": 1, "n": 50,
         "seed": 3}


def fresh_through(executor, needs=task.Needs()):
    worker = task.Worker(Sandbox("required"), env={}, trusted=True, executor=executor)
    answer, out = task.Staged(worker, FRESH, {}, 600, outputs=["data.safetensors"], needs=needs).run()
    arrays, _ = exchange.take_arrays(out, "data.safetensors", "the fresh split")
    return arrays["private/x"].tobytes(), arrays["private/y"].tobytes()


# ------------------------------------------------------------------ fast: no Ray started

def shipped(data=b"weights", digest=None):
    request = json.dumps(FRESH).encode()
    return {"inputs": {"start-1.safetensors": (data, digest or node.sha256(data))},
            "request": (request, node.sha256(request)), "carried": [], "readonly": [], "env": {}, "timeout": 60,
            "sandboxed": True, "cap": 1 << 20}


def test_an_input_whose_bytes_do_not_match_its_sha256_is_refused_on_arrival():
    with pytest.raises(node.Refused, match="does not match its sha256"):
        node.arrived(shipped(b"weights", node.sha256(b"other weights")))
    back = node.run(shipped(b"weights", node.sha256(b"other weights")))  # before the sandbox is even looked at
    assert set(back) == {"refused", "node"} and "\n" not in back["refused"], back
    assert "start-1.safetensors does not match its sha256: refused before running anything" in back["refused"]
    inputs, req = node.arrived(shipped())
    assert inputs == {"start-1.safetensors": b"weights"} and req == FRESH


def test_a_carried_folder_whose_tar_does_not_match_is_refused(tmp_path):
    from repro.boundary.executor import pack
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "__init__.py").write_text("x = 1\n")
    data = pack(str(tmp_path / "plugin"))
    sent = shipped()
    sent["carried"] = [("/snap", node.sha256(data))]
    assert "the folder for /snap does not match its sha256" in node.run(sent, data + b"\0")["refused"]
    assert "did not all arrive" in node.run(sent)["refused"]
    os.symlink("/etc/passwd", tmp_path / "plugin" / "link")
    with pytest.raises(ReproError, match="link in a folder carried to the Ray nodes is not a regular file"):
        pack(str(tmp_path / "plugin"))


def test_cluster_without_ray_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    code, out, err = cli(verify_cmd.main, ["logs/mnist1d/logreg/seed0", "--recompute", "--cluster", "local"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert 'needs Ray, which is not installed here: pip install "repro-paddle[cluster]"' in err


def test_cluster_without_code_to_run_or_with_a_bad_address_is_one_line(capsys):
    code, _, err = cli(verify_cmd.main, ["logs/mnist1d/logreg/seed0", "--cluster", "local"], capsys)
    assert code == 2 and "--cluster only matters with --recompute or --replay" in err and err.count("\n") == 1
    code, _, err = cli(verify_cmd.main, ["logs/mnist1d/logreg/seed0", "--recompute", "--cluster", "x:1"], capsys)
    assert code == 2 and "give local, auto or ray://HOST:PORT" in err and err.count("\n") == 1


class FakeRay:
    """What RayExecutor asks of the ray module, recorded: whether this process's Ray was begun
    before, and each init and shutdown."""

    def __init__(self, initialized):
        self.initialized, self.said = initialized, []

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.said.append("init")
        self.initialized = True

    def shutdown(self):
        self.said.append("shutdown")
        self.initialized = False

    def cluster_resources(self):
        return {"CPU": 2}

    def remote(self, **options):
        return lambda f: f


@pytest.mark.parametrize("cluster,begun,said", [("auto", False, ["init", "shutdown"]),
                                                ("local", False, ["init", "shutdown"]),
                                                ("auto", True, [])])  # a Ray this process had already (a test's)
def test_close_leaves_the_ray_the_executor_began_and_only_that(monkeypatch, cluster, begun, said):
    from repro.boundary import executor as ex
    fake = FakeRay(begun)
    monkeypatch.setattr(ex, "import_ray", lambda: fake)
    ex.RayExecutor(cluster).close()
    assert fake.said == said


def test_joining_says_in_one_line_what_is_missing(monkeypatch):
    import importlib.util
    from repro.boundary import executor as ex
    fake = FakeRay(False)
    monkeypatch.setattr(ex, "import_ray", lambda: fake)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(ReproError, match=r"ray://h:1: joining through Ray Client needs Ray's client part, which is "
                                         r"not installed here: pip install \"repro-paddle\[cluster\]\"$"):
        ex.RayExecutor("ray://h:1")
    monkeypatch.setattr(importlib.util, "find_spec", real)

    def timed_out(**kwargs):
        raise ConnectionError("ray client connection timeout")
    fake.init = timed_out
    with pytest.raises(ReproError) as e:
        ex.RayExecutor("ray://h:1")
    assert "\n" not in str(e.value) and str(e.value).startswith(
        "--cluster ray://h:1: no Ray cluster to join there (ray client connection timeout; a cluster that "
        "authenticates needs its head's token here, in ~/.ray/auth_token or $RAY_AUTH_TOKEN")


def test_a_join_whose_ray_client_server_died_at_its_start_is_tried_again(monkeypatch, capsys):
    from repro.boundary import executor as ex
    fake, tries = FakeRay(False), []

    def dies_twice(**kwargs):  # ray-project/ray#63202: the head's server for this client died as it started
        tries.append(kwargs["address"])
        if len(tries) <= 2:
            raise ConnectionError("Initialization failure from server:\nRuntimeError: Starting Ray client server "
                                  "failed. See ray_client_server_23000.err for detailed logs.")
        fake.initialized = True
    fake.init = dies_twice
    monkeypatch.setattr(ex, "import_ray", lambda: fake)
    assert ex.RayExecutor("ray://h:1").joined and len(tries) == 3
    said = capsys.readouterr().err.splitlines()
    assert said == [f"--cluster ray://h:1: the Ray Client server for this review did not start (Starting Ray client "
                    f"server failed: a known Ray fault, ray-project/ray#63202, or no token); joining again ({n} of 3)" for n in (2, 3)]
    tries.clear()
    fake.initialized = False
    with pytest.raises(ReproError, match="no Ray cluster to join there"):  # only Ray Client's server is tried again
        ex.RayExecutor("auto")
    assert len(tries) == 1
    tries[:] = ["a", "b", "c"]  # and no more than JOIN_TRIES times in all
    fake.init = lambda **kw: (_ for _ in ()).throw(ConnectionError("ray client connection timeout"))  # or it hung
    with pytest.raises(ReproError, match="ray client connection timeout"):
        ex.RayExecutor("ray://h:1")
    assert capsys.readouterr().err.count("joining again") == 2


@pytest.mark.parametrize("token,mode,then", [("file", None, "token"), ("env", None, "token"), (None, None, None),
                                             ("file", "disabled", "disabled")])
def test_a_join_sends_the_token_at_hand_unless_told_otherwise(monkeypatch, tmp_path, token, mode, then):
    from repro.boundary import executor as ex
    env = {"HOME": str(tmp_path)}  # the process's environment, as _send_token sees it (this one's is left alone)
    if token == "file":
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("x" * 64)
    elif token == "env":
        env["RAY_AUTH_TOKEN"] = "x" * 64
    if mode is not None:
        env["RAY_AUTH_MODE"] = mode
    monkeypatch.setattr(os, "environ", env)
    ex._send_token()
    assert env.get("RAY_AUTH_MODE") == then


def test_the_command_leaves_the_cluster_when_its_review_ends_even_failing(monkeypatch, capsys):
    from repro.judge import arguments
    closed = []

    class Failing(task.LocalExecutor):
        def execute(self, staged, timeout, receive):
            raise ReproError("the node went away")

        def close(self):
            closed.append(True)

    monkeypatch.setattr(arguments, "executor_for", lambda cluster, jobs: Failing())
    code, out, err = cli(verify_cmd.main, ["logs/mnist1d/logreg/seed0", "--recompute", "--cluster", "auto"], capsys)
    assert code == 1 and "the node went away" in out + err and closed == [True], (code, err[-500:])


def test_a_tasks_needs_come_from_its_runs_record(tmp_path):
    from repro.judge.audit import Plan
    from repro.run import rundir
    env = {"cpu": "Some CPU", "cpu_isa": "avx,avx2", "device": "gpu:0"}
    run = rundir.Run(str(tmp_path), [], [{"kind": "run_start", "env": env, "paper": "p", "exp": "e", "lite": False}])
    assert Plan(run, True, [], [], {}, None, cross_platform=False, threads=1).needs.memory is None  # an older run
    rundir.write_resources(str(tmp_path), 3 << 30)  # a stretch, then a resumed one that held less
    rundir.write_resources(str(tmp_path), 2 << 30)
    bitwise = Plan(run, True, [], [], {}, None, cross_platform=False, threads=1).needs
    assert bitwise == task.Needs(gpu=True, cpu=("Some CPU", "avx,avx2"), memory=3 << 30)  # the most of its stretches
    assert Plan(run, True, [], [], {}, None, cross_platform=True, threads=1).needs.cpu is None  # any CPU will do
    (tmp_path / rundir.RESOURCES).write_text('{"peak_memory_bytes": "lots"}')
    assert Plan(run, True, [], [], {}, None, cross_platform=False, threads=1).needs.memory is None


def test_this_machine_says_when_a_run_was_made_on_another_cpu():
    from repro.machine import cpu
    assert task.LOCAL.unmatched(cpu()) is None
    said = task.LOCAL.unmatched(("Other CPU", ""))
    assert said.startswith("the run was made on Other CPU (no ISA recorded), this machine is ") and "\n" not in said


# ------------------------------------------------------------------ slow: a local Ray of 2 CPUs

@pytest.fixture(scope="module")
def farm():
    from repro.boundary.executor import RayExecutor
    executor = RayExecutor("local", cpus=2, warm=3)  # as --jobs 3 would: no more processes made ready than CPUs
    yield executor
    executor.close()


@pytest.mark.slow
@pytest.mark.skipif(ray is None, reason='ray is not installed (pip install "repro-paddle[cluster]")')
@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here")
def test_a_task_on_ray_gives_what_the_local_one_gives(farm):
    assert len(farm.warming) == 2 and farm.ray.get(farm.warming, timeout=120) == [socket.gethostname()] * 2
    assert fresh_through(farm) == fresh_through(task.LOCAL)


@pytest.mark.slow
@pytest.mark.skipif(ray is None, reason='ray is not installed (pip install "repro-paddle[cluster]")')
@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here")
def test_a_ray_worker_killed_mid_task_is_retried_with_the_same_result(farm, tmp_path):
    from repro.boundary.executor import RayExecutor
    marker = str(tmp_path / "killed-once")

    def killed_on_first_attempt(shipped_task, *tars):  # pickled by value: Ray's worker process runs it
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # the process dies as on a node that goes away
        return node.run(shipped_task, *tars)

    dying = RayExecutor("local", node_task=killed_on_first_attempt)  # joins the running local Ray
    assert fresh_through(dying) == fresh_through(task.LOCAL)
    assert os.path.exists(marker)


@pytest.mark.slow
@pytest.mark.skipif(ray is None, reason='ray is not installed (pip install "repro-paddle[cluster]")')
@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here")
def test_a_node_without_bubblewrap_refuses_the_task_in_one_line(farm, tmp_path):
    from repro.boundary.executor import RayExecutor
    # the node's processes find a bwrap that cannot make namespaces first on their PATH (as on a kernel
    # that forbids them): the node's own probe (sandbox.why_unusable) finds it unusable and the node refuses
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    broken = RayExecutor("local", runtime_env={"env_vars": {"PATH": f"{fake}:{os.environ['PATH']}",
                                                            "PYTHONPATH": REPO}})
    with pytest.raises(ReproError) as e:
        fresh_through(broken)
    said = str(e.value)
    assert "refused the task: no usable sandbox on this node: bubblewrap could not make the worker's namespaces: " \
           "bwrap: No permissions to create new namespace" in said, said
    assert "\n" not in said


@pytest.mark.slow
@pytest.mark.skipif(ray is None, reason='ray is not installed (pip install "repro-paddle[cluster]")')
@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here")
def test_a_bitwise_task_goes_to_a_node_of_its_runs_cpu_and_asks_for_its_memory(farm):
    from repro.machine import cpu
    here = cpu()
    (node_id, (probed, memory)), = farm.platforms().items()  # one node: this machine, as it read itself
    assert probed == here and memory > 0
    assert farm.unmatched(here) is None
    said = farm.unmatched(("Other CPU", "avx"))
    assert said.startswith("the run was made on Other CPU (avx) and no node of the Ray cluster (local) has that CPU")
    placed = farm.placement(task.Needs(cpu=here, memory=1 << 28))
    assert placed == {"memory": 1 << 28, "label_selector": {"ray.io/node-id": f"in({node_id})"}}
    assert "label_selector" not in farm.placement(task.Needs(cpu=("Other CPU", "avx")))  # it runs anywhere
    assert fresh_through(farm, task.Needs(cpu=here, memory=1 << 28)) == fresh_through(task.LOCAL)
    with pytest.raises(ReproError) as e:  # a log claiming more memory than any node has: one line, nothing run
        fresh_through(farm, task.Needs(memory=1 << 50))
    assert "asks for 1048576.0 GiB of memory (its run's logged peak) and no node of the Ray cluster" in str(e.value)
