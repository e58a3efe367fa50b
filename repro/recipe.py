"""The training recipe as functions of (config, step): the initial state, the
optimizer, the learning rate, the random numbers and one update.

Everything an update depends on is a function of the config and the step
number (the batch, the learning rate, every RNG seed) or is in the checkpoint
(weights, optimizer and loss-scaler state). So any stretch of a run can be
re-computed alone: the training loop (repro.train), resume, the replay audit
(repro.audit) and the alignment ladder (repro.align) all build and step
through this module, never a copy of it.
"""
import math
import random
from dataclasses import dataclass

import numpy as np

from repro.dist import SINGLE


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
    import paddle
    params = [p for p in model.parameters() if not p.stop_gradient]  # frozen weights get no optimizer state
    wd = tc.weight_decay or None
    if tc.optimizer == "adam":
        return paddle.optimizer.Adam(learning_rate=tc.lr, parameters=params, weight_decay=wd)
    if tc.optimizer == "adamw":
        return paddle.optimizer.AdamW(learning_rate=tc.lr, parameters=params, weight_decay=tc.weight_decay)
    if tc.optimizer == "momentum":
        return paddle.optimizer.Momentum(learning_rate=tc.lr, momentum=tc.momentum, parameters=params, weight_decay=wd)
    return paddle.optimizer.SGD(learning_rate=tc.lr, parameters=params, weight_decay=wd)


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


def set_threads(n):
    """CPU threads of Paddle's kernels. Results depend on it bit for bit (a sum
    split over threads rounds differently), so a run records it and resume,
    recompute and replay use the run's value."""
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


def build(paper, cfg, dist=SINGLE, init=True):
    """The state before update 1: data, the initial weights drawn from the seed,
    the optimizer. init=False skips the paper's data-dependent initialisation
    (the state is about to be overwritten from a checkpoint)."""
    from repro.amp import Amp
    from repro.data import Batches

    tc = cfg.train
    reseed(tc.seed, 0)  # the same initial weights on every rank
    data = paper.build_data(cfg)
    net = paper.build_model(cfg)
    optimizer = build_optimizer(tc, net)
    amp = Amp(tc.amp)
    net, optimizer = amp.decorate(net, optimizer)
    model = dist.wrap(net)
    batches = Batches(*data.train, tc.batch_size, tc.batch_order, tc.seed, data.preprocess,
                      data.augment or paper.augment, dist.rank, dist.world)
    if init:
        paper.init_model(net, data)
    model.train()
    return State(data, net, model, optimizer, amp, batches)


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
    return paper.train_step(state.model, state.optimizer, batch, state.amp), reader
