import contextlib
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
sys.path.insert(0, REPO)

from repro import machine  # noqa: E402

# the tests' own process computes with Paddle and trains in-process: MKL's code path is set before
# anything loads Paddle, to the one this machine's runs take (repro.machine.use_mkl_path)
machine.use_mkl_path(machine.mkl_path())


def copy_checkout(dest):
    """A copy of this checkout's source at dest: no bytecode, and none of what lies at its top
    beside the source (git, the virtual environment, the shipped runs, build outputs); a
    folder of the same name deeper down (the template's logs/) is source and comes along."""
    top = {".venv", ".git", "logs", "build", "dist", "shared"}

    def ignore(folder, names):
        at_top = os.path.samefile(folder, REPO)
        return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".egg-info")) or (at_top and n in top)]
    shutil.copytree(REPO, dest, ignore=ignore)
    return str(dest)


def cli(main, argv, capsys):
    """Run a CLI main in-process the way `python -m` does; returns (code, out, err)."""
    from repro.errors import run_cli

    with pytest.raises(SystemExit) as e:
        run_cli(main, argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def subprocess_cli(*args, timeout=300, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    p = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def interrupt_train_step(monkeypatch, paper, at):
    """Make the paper's train_step raise KeyboardInterrupt (Ctrl-C) on its `at`-th call;
    returns undo(), which puts the real step back."""
    cls = type(paper)
    real = cls.train_step
    calls = {"n": 0}

    def step(self, *a):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(cls, "train_step", step)
    return lambda: monkeypatch.setattr(cls, "train_step", real)


def events(run_dir):
    """The events of a run's log, read strictly."""
    from repro.run import rundir
    return rundir.read(run_dir).events


def final_checkpoint(run_dir, first=False):
    """(tensors with any optimizer state, metadata) of the run's last logged checkpoint
    (the weights alone), or with first=True of its first (weights and optimizer state)."""
    from repro.run import checkpoint, rundir
    run = rundir.read(run_dir)
    ev = run.checkpoints()[(min if first else max)(run.checkpoints())]
    return checkpoint.read(rundir.checkpoint_file(run, ev), want_optimizer=True)


def recomputes(recomputed, logged):
    """The judge recomputed something, and every metric it computed is the logged one exactly
    (it computes the protocol's metrics from the labels it holds; a loss is the paper's own)."""
    return bool(recomputed) and all(k in logged and logged[k] == v for k, v in recomputed.items())


def audited(path, **options):
    """The run at path as verify judges it (rundir.Run with problems, recomputed, replayed),
    e.g. audited(path, recompute=True, replay=2)."""
    from repro.judge import verdict
    _, runs, _ = verdict.verify([path], verdict.Options(**options))
    return runs[0]


def assert_same_checkpoints(run_a, run_b):
    """The two runs' final checkpoints hold the same tensors, bit for bit."""
    import numpy as np

    a, _ = final_checkpoint(run_a)
    b, _ = final_checkpoint(run_b)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def shared_file(*parts):
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data not available: {path} (../shared/data is absent on this machine)")
    return path


def train_lite(paper, folder):
    """A finished --lite run of paper's default experiment at folder/run (no VisualDL)."""
    from repro.errors import run_cli
    from repro.train import main

    out = str(folder / "run")
    with pytest.raises(SystemExit) as e:
        run_cli(main, ["--paper", paper, "--lite", "--out", out, "-o", "train.visualdl=false"])
    assert e.value.code == 0
    return out


@pytest.fixture(scope="session")
def lite_run(tmp_path_factory):
    """One finished --lite CNN run shared by read-only tests."""
    return train_lite("mnist1d", tmp_path_factory.mktemp("lite"))


def same_platform(run_dir):
    """Whether this machine is the platform a run was made on (CPU model and the
    instruction sets kernels dispatch on): only then is a replay bitwise."""
    from repro.machine import same_cpu
    from repro.run import rundir
    return same_cpu(rundir.read(run_dir).header["env"])


@contextlib.contextmanager
def own_plugin_folders(*folders):
    """Plugin folders registered inside (folders: on entry) stay inside: the registry's variables
    start empty and get back what they held after, and the registry loads again."""
    registry = _registry()
    saved = {k: os.environ.pop(k, None) for k in (registry.ENV, registry.ONLY)}
    registry.use_folders(list(folders))
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
        registry._loaded = False


@pytest.fixture
def plugin_env():
    """Plugin folders registered in a test stay in that test."""
    with own_plugin_folders():
        yield


def _registry():
    from repro import registry
    return registry


@pytest.fixture(autouse=True)
def _keep_repro_environment():
    """The CLIs run in-process set REPRO_* variables for the processes they start (--papers,
    --data-dir); a test's settings end with it, so no later test's subprocess inherits them."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("REPRO_")}
    yield
    changed = {k for k, v in os.environ.items() if k.startswith("REPRO_") and saved.get(k) != v}
    for k in changed | (set(saved) - set(os.environ)):
        os.environ.pop(k, None)
        if k in saved:
            os.environ[k] = saved[k]
    if changed:
        _registry()._loaded = False


@pytest.fixture(scope="module", autouse=True)
def _forget_outside_plugins():
    """Outside plugins a test module imported in this process (tests/plugin_tinycell.py's tinycell,
    the template's my_paper) are forgotten after it, so the next module on this worker can import its own."""
    yield
    import sys
    for name in [m for m in sys.modules if m.split(".")[0] in ("tinycell", "my_paper")]:
        del sys.modules[name]
    _registry()._loaded = False


# ------------------------------------------------------------------ hostile plugins in workers (test_sandbox, test_wall)

IN_WORKER = "import sys as _s\n_w = _s.argv[0].endswith('worker.py')\n"


def _train(plugin, out, seed, *over):
    from repro import train
    from repro.errors import run_cli
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--paper", "tinycell", "--seed", str(seed), "--out", out, *over])
    assert e.value.code == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two honest runs (seeds 0, 1) of the tiny plugin, 6 segments each; the plugin folder."""
    import plugin_tinycell

    root = tmp_path_factory.mktemp("sandbox")
    plugin = plugin_tinycell.write(str(root / "repo" / "tinycell"))
    with own_plugin_folders(plugin):
        out = [str(root / "logs" / f"seed{s}") for s in (0, 1)]
        for s, o in zip((0, 1), out):
            _train(plugin, o, s, "-o", "train.audit_every=50", "-o", "train.checkpoint_every=50")
    return root, plugin, out


@pytest.fixture
def hostile(runs, plugin_env):
    """hostile(payload): the plugin's __init__ runs payload first, inside workers only."""
    from repro import registry
    root, plugin, out = runs
    with open(os.path.join(plugin, "__init__.py")) as f:
        honest = f.read()

    def make(payload):
        with open(os.path.join(plugin, "__init__.py"), "w") as f:
            f.write(IN_WORKER + "if _w:\n" + "".join(f"    {ln}\n" for ln in payload.strip().splitlines()) + honest)
        registry.use_folders([plugin])
        return out

    yield make
    with open(os.path.join(plugin, "__init__.py"), "w") as f:
        f.write(honest)
