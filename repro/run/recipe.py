"""The training recipe as functions of (config, step): the initial state, the
optimizer, the learning rate, the random numbers and one update.

Everything an update depends on is a function of the config and the step
number (the batch, the learning rate, every RNG seed) or is in the checkpoint
(weights, optimizer and loss-scaler state). So any stretch of a run can be
re-computed alone: the training loop (repro.train), resume, the replay audit
(repro.judge.audit) and the alignment ladder (repro.align) all build and step
through this module, never a copy of it.
"""
import math
import os
import random
import sys
from dataclasses import dataclass

import numpy as np

from repro import machine
from repro.data import Batches
from repro.errors import ReproError
from repro.run.amp import Amp
from repro.run.dist import SINGLE
from repro.run.verifiable import Exact


def lr_at(tc, step):
    """Learning rate for update number `step` (0-based): a pure function of step,
    so there is no scheduler state to checkpoint."""
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    if tc.lr_schedule == "cosine":
        progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
        return tc.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if tc.lr_schedule == "step":
        return tc.lr * tc.lr_gamma ** sum(step >= m for m in tc.lr_milestones)
    return tc.lr


def build_optimizer(tc, model):
    """Paddle's optimizer named by train.optimizer, with its arguments from the config."""
    import paddle
    opt = paddle.optimizer
    params = [p for p in model.parameters() if not p.stop_gradient]  # frozen weights get no optimizer state
    wd = tc.weight_decay or None
    eps = lambda default: tc.epsilon or default
    common = {"learning_rate": tc.lr, "parameters": params}
    name = tc.optimizer
    if name == "adam":
        return opt.Adam(**common, beta1=tc.beta1, beta2=tc.beta2, epsilon=eps(1e-8), weight_decay=wd)
    if name == "adamw":
        return opt.AdamW(**common, beta1=tc.beta1, beta2=tc.beta2, epsilon=eps(1e-8), weight_decay=tc.weight_decay)
    if name == "lamb":
        return opt.Lamb(**common, lamb_weight_decay=tc.weight_decay, beta1=tc.beta1, beta2=tc.beta2,
                        epsilon=eps(1e-6))
    if name == "momentum":
        return opt.Momentum(**common, momentum=tc.momentum, weight_decay=wd)
    if name == "adadelta":
        return opt.Adadelta(**common, epsilon=eps(1e-6), rho=tc.rho, weight_decay=wd)
    if name == "adagrad":
        return opt.Adagrad(**common, epsilon=eps(1e-6), weight_decay=wd)
    if name == "rmsprop":
        return opt.RMSProp(**common, rho=tc.rho, epsilon=eps(1e-6), momentum=tc.momentum, weight_decay=wd)
    return opt.SGD(**common, weight_decay=wd)


def reseed(seed, step, rank=0):
    """Seed every RNG from (seed, step, rank): step 0 for the initial weights,
    step s before update s. Each update's random numbers (dropout, diffusion
    noise) are then the same whether the run went straight through, was
    resumed, or is being replayed; each rank gets its own stream."""
    import paddle
    s = (seed * 1_000_003 + step + rank * 7_919) % (2 ** 31)
    random.seed(s)
    np.random.seed(s)
    paddle.seed(s)


def add_threads_option(ap, recorded):
    """The --threads option of a command that runs Paddle's kernels; recorded: what depends on it."""
    ap.add_argument("--threads", type=int, default=1,
                    help=f"CPU threads for Paddle's kernels (default 1; recorded: {recorded})")


def check_threads(n):
    """n, refused with one line unless it is a thread count a command may ask for (1 to 1024)."""
    if not 1 <= n <= 1024:
        raise ReproError(f"--threads must be between 1 and 1024, got {n}")
    return n


# what Paddle's CPU math libraries (OpenMP, MKL, OpenBLAS) and Paddle itself read for their thread count
# when Paddle loads them: set to 1 before it loads, the same bits as set_num_threads(1) (tests/test_threads.py)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FLAGS_paddle_num_threads")


MACHINE = object()  # set_threads' mkl: the path this machine's new runs take (repro.machine.mkl_path)


def set_threads(n, load=True, mkl=MACHINE):
    """CPU threads of Paddle's kernels, and the code path of MKL's matrix products (mkl: a
    repro.machine.MKL_PATHS name, None for MKL's own choice, or MACHINE). Results depend on both
    bit for bit (a sum split over threads rounds differently; MKL's paths sum in other orders),
    so a run records both and resume, recompute and replay use the run's values. load=False, for
    one thread in a process that has not loaded Paddle: the variables its libraries read when
    they load say one thread, and Paddle stays unloaded until some code imports it (a worker
    that builds a paper's data with numpy never pays Paddle's import)."""
    machine.use_mkl_path(machine.mkl_path() if mkl is MACHINE else mkl)
    if not load and int(n) == 1 and "paddle" not in sys.modules:
        os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
        return
    from paddle.base import core
    core.set_num_threads(int(n))


@dataclass
class State:
    """What training holds between updates."""
    data: object
    net: object        # the paper's model
    model: object      # net, wrapped for data parallelism where there are several processes
    optimizer: object
    amp: object
    batches: object
    exact: object = None  # repro.run.verifiable.Exact where train.verifiable: each update in float64, rounded


def build(paper, cfg, dist=SINGLE, init=True, artifact=None, data=None):
    """The state before update 1: data, the initial weights drawn from the seed,
    the optimizer. init=False skips the paper's data-dependent initialisation
    (the state is about to be overwritten from a checkpoint). artifact: the run's
    data-derived artifact (a vocabulary) where it has one; None fits it anew.
    data: what paper.data(cfg, artifact) gave earlier in this process (a replay worker
    builds it once for all its segments), only with init=False: the draws building it
    would take from the RNG are skipped, so the initial weights differ, and only a state
    about to be overwritten from a checkpoint may (every update reseeds)."""

    tc = cfg.train
    if data is not None and init:
        raise ReproError("prebuilt data would change the initial weights: build them with init=False only")
    reseed(tc.seed, 0)  # the same initial weights on every rank
    data = paper.data(cfg, artifact) if data is None else data
    net = paper.model(cfg, data.artifact)
    optimizer = build_optimizer(tc, net)
    amp = Amp(tc.amp)
    net, optimizer = amp.decorate(net, optimizer)
    model = dist.wrap(net)
    batches = Batches(*data.train, tc.batch_size, tc.batch_order, tc.seed, data.preprocess,
                      data.augment or paper.augment, dist.rank, dist.world)
    if init:
        paper.init_model(net, data)
    model.train()
    exact = None
    if tc.verifiable:
        if dist.world > 1:
            raise ReproError("train.verifiable runs on one process (its rounding record is one process's)")
        exact = Exact(net, optimizer)
    return State(data, net, model, optimizer, amp, batches, exact)


def update(paper, state, cfg, step, dist=SINGLE):
    """Update number `step` (1-based): its seeds, its batch, its learning rate,
    then the paper's train_step. Returns (loss tensor, seconds reading the batch)."""
    import time
    tc = cfg.train
    reseed(tc.seed, step, dist.rank)
    t0 = time.perf_counter()
    batch = state.batches(step - 1)
    reader = time.perf_counter() - t0
    if tc.lr_schedule != "constant" or tc.warmup_steps:
        state.optimizer.set_lr(lr_at(tc, step - 1))
    if state.exact is None:
        return paper.train_step(state.model, state.optimizer, batch, state.amp, cfg), reader
    state.exact.up()  # verifiable: the update in float64 from the float32 state, then rounded back
    loss = paper.train_step(state.model, state.optimizer, state.exact.batch(batch), state.amp, cfg)
    state.exact.down(step)
    return loss, reader
