"""Train one experiment of one paper.

    python -m repro.train --paper mnist1d [--exp cnn_shuffled] [--lite] [--seed N]
                          [--out DIR] [--resume DIR] [-o train.lr=0.005 ...]
    python -m repro.train --list

One plain loop: seed, build data/model/optimizer, then for each step take the
batch for that step, do the paper's train_step, and log / evaluate / checkpoint
on their schedules. A run directory holds config.yaml (the resolved config),
events.jsonl (the machine log), train.log (the same as text), vdl/ (VisualDL)
and checkpoint.safetensors (the latest state; resume starts from it).
"""
import argparse
import math
import os
import random
import sys
import time

if __name__ == "__main__" and not __package__:
    # run as a script (paddle.distributed.launch takes a .py path, not -m):
    # import the package from the repo root, not the modules beside this file
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import paddle

from repro import checkpoint
from repro.amp import Amp
from repro.config import config_hash, dump_yaml, from_dict, load_config, read_yaml, to_dict
from repro.data import Batches, fingerprint
from repro.dist import SINGLE, Dist
from repro.env import code_identity, environment
from repro.errors import ReproError, run_cli
from repro.eval import evaluate
from repro.paper import REPO_ROOT
from repro.progress import Progress, fmt_eta
from repro.registry import get_paper, load_papers
from repro.runlog import EVENTS, FORMAT as LOG_FORMAT, RunLog, read_events

CKPT = "checkpoint.safetensors"
CONFIG = "config.yaml"


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
    """Seed every RNG from (seed, step, rank). Done at the start and after each
    checkpoint, so a resumed run draws the same random numbers as an
    uninterrupted one; each rank gets its own stream (e.g. for dropout)."""
    s = (seed * 1_000_003 + step + rank * 7_919) % (2 ** 31)
    random.seed(s)
    np.random.seed(s)
    paddle.seed(s)


def run_header(paper, exp, cfg, data, lite, overrides):
    """What the run is: the run_start event's payload (docs/log-format.md)."""
    return {
        "format": LOG_FORMAT, "paper": paper.name, "exp": exp.name, "title": paper.title,
        "seed": cfg.train.seed, "lite": lite, "overrides": list(overrides),
        "config": to_dict(cfg), "config_hash": config_hash(cfg),
        "targets": [t.to_dict() for t in exp.targets],
        "metrics": {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in paper.metrics(cfg).items()},
        "data": {split: {"n": len(xy[0]), "sha256": fingerprint(*xy)}
                 for split, xy in {"train": data.train, **data.eval}.items()},
        "env": environment(), "code": code_identity(paper.name),
        "provenance": paper.provenance(cfg),
    }


class _NoLog:
    """What ranks other than 0 log: nothing."""
    seq, prev = 0, ""

    def event(self, kind, **payload):
        pass

    def close(self):
        pass


def train(paper, exp, cfg, run_dir, lite=False, overrides=(), resume=False, echo=True, dist=SINGLE):
    """Train to cfg.train.steps, writing into run_dir. Returns the final metrics.
    echo=False keeps the console quiet (the logs are written all the same)."""
    tc = cfg.train
    if dist.main:
        os.makedirs(run_dir, exist_ok=True)
    reseed(tc.seed, 0)  # the same initial weights on every rank
    data = paper.build_data(cfg)
    net = paper.build_model(cfg)
    optimizer = build_optimizer(tc, net)
    amp = Amp(tc.amp)
    if tc.amp.enabled and echo and dist.main and paddle.get_device() == "cpu":
        print("note: train.amp is on, but Paddle's auto_cast/decorate do nothing on the CPU; "
              "this run computes in float32", flush=True)
    net, optimizer = amp.decorate(net, optimizer)
    model = dist.wrap(net)
    batches = Batches(*data.train, tc.batch_size, tc.batch_order, tc.seed, data.preprocess,
                      data.augment or paper.augment, dist.rank, dist.world)
    meta = {"paper": paper.name, "exp": exp.name, "config_hash": config_hash(cfg), "lite": lite}

    start = 0
    if resume:
        tensors, ckpt_meta = checkpoint.read(os.path.join(run_dir, CKPT))
        if ckpt_meta.get("config_hash") != meta["config_hash"]:
            raise ReproError(f"{run_dir}/{CKPT} was written with another config than {run_dir}/{CONFIG}")
        checkpoint.load_model(net, tensors, os.path.join(run_dir, CKPT))
        checkpoint.load_optimizer(optimizer, net, tensors)
        amp.load_state(ckpt_meta.get("amp_scaler"))
        start = int(ckpt_meta["step"])
    else:
        paper.init_model(net, data)
    echo = echo and dist.main
    echo_progress = Progress(tc.steps, f"{paper.name}/{exp.name}")
    if not echo:
        echo_progress.enabled = False

    def print_line(line):
        echo_progress.clear()
        print(line, flush=True)

    log = RunLog(run_dir, visualdl=tc.visualdl, echo=print_line if echo else None) if dist.main else _NoLog()
    if resume:
        log.event("resume", step=start, env=environment(), code=code_identity(paper.name))
    elif dist.main:
        with open(os.path.join(run_dir, CONFIG), "w", encoding="utf-8") as f:
            f.write(dump_yaml(cfg))
        log.event("run_start", **run_header(paper, exp, cfg, data, lite, overrides))
    reseed(tc.seed, start, dist.rank)
    model.train()

    step, metrics = start, {}
    window = {"reader": 0.0, "batch": 0.0, "n": 0}
    t_start, constant_lr = time.perf_counter(), tc.lr_schedule == "constant" and tc.warmup_steps == 0
    try:
        for step in range(start + 1, tc.steps + 1):
            t0 = time.perf_counter()
            batch = batches(step - 1)
            t1 = time.perf_counter()
            if not constant_lr:
                optimizer.set_lr(lr_at(tc, step - 1))
            loss = paper.train_step(model, optimizer, batch, amp)
            t2 = time.perf_counter()
            window["reader"] += t1 - t0
            window["batch"] += t2 - t0
            window["n"] += 1

            if step % tc.log_every == 0 or step == tc.steps:
                loss_value = float(loss)
                n, window_batch = window["n"], window["batch"]
                eta = fmt_eta((time.perf_counter() - t_start) / (step - start) * (tc.steps - step))
                log.event("train", step=step, steps=tc.steps, epoch=batches.epoch(step - 1) + 1,
                          loss=loss_value, lr=float(optimizer.get_lr()),
                          reader_cost=window["reader"] / n, batch_cost=window_batch / n,
                          ips=tc.batch_size * n / window_batch, eta=eta)
                window = {"reader": 0.0, "batch": 0.0, "n": 0}
                if not math.isfinite(loss_value):
                    log.event("run_end", status="diverged", step=step, reason=f"loss is {loss_value}")
                    log.close()
                    raise ReproError(f"training diverged at step {step}: loss is {loss_value}")
                echo_progress.update(step, eta, loss=loss_value, **{k: v for k, v in metrics.items() if "acc" in k},
                                     ips=f"{tc.batch_size * n / window_batch:.0f}/s")
            if step % tc.eval_every == 0 or step == tc.steps:
                metrics, samples = evaluate(paper, model, cfg, data, dist)
                log.event("eval", step=step, metrics=metrics, samples=samples)
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                if dist.main:
                    # the chain head ties this checkpoint to the log lines before it
                    extra = {"amp_scaler": amp.state()} if amp.state() else {}
                    sha = checkpoint.save(os.path.join(run_dir, CKPT), net, optimizer,
                                          {**meta, **extra, "step": str(step), "log_seq": str(log.seq),
                                           "log_head": log.prev})
                    log.event("checkpoint", step=step, path=CKPT, sha256=sha)
                reseed(tc.seed, step, dist.rank)
    except KeyboardInterrupt:
        echo_progress.clear()
        log.event("run_end", status="interrupted", step=step,
                  reason=f"interrupted; `--resume {run_dir}` continues from the last checkpoint")
        log.close()
        raise
    log.event("run_end", status="success", step=tc.steps, metrics=metrics,
              seconds=round(time.perf_counter() - t_start, 2))
    log.close()
    return metrics


def print_listing():
    papers = load_papers()
    for name in papers.names():
        paper = papers.get(name)
        print(f"{name}: {paper.title}")
        print(f"  {paper.citation}")
        for exp in paper.experiments:
            default = " (default)" if exp.name == paper.default_experiment else ""
            print(f"  - {exp.name}{default}: {exp.description}  [{exp.config}]")
            for t in exp.targets:
                print(f"      target {t.metric} {t.paper_value:g} ({t.direction}, tolerance {t.tolerance:g}, "
                      f"policy {t.policy}) from {t.source}")


def _prepare_out(out):
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ReproError(f"--out {out} exists and is not a directory")
        if os.path.exists(os.path.join(out, EVENTS)) or os.path.exists(os.path.join(out, CKPT)):
            raise ReproError(f"--out {out} already holds a run; choose another directory or use --resume {out}")
        if os.listdir(out):
            raise ReproError(f"--out {out} is not empty; give a new or empty directory")
    os.makedirs(out, exist_ok=True)
    return out


def _open_resume(args, paper_name):
    run_dir = args.resume
    if not os.path.isdir(run_dir):
        raise ReproError(f"--resume {run_dir}: no such run directory")
    if args.override or args.seed is not None or args.lite:
        raise ReproError("--resume continues a run with its own config; drop -o/--seed/--lite")
    events = read_events(run_dir)
    head = events[0]
    if head.get("kind") != "run_start":
        raise ReproError(f"{run_dir}/{EVENTS} does not start with a run_start event")
    ends = [e for e in events if e["kind"] in ("run_end", "resume")]
    if ends and ends[-1]["kind"] == "run_end" and ends[-1].get("status") == "success":
        raise ReproError(f"{run_dir} already finished; nothing to resume")
    if paper_name and paper_name != head["paper"]:
        raise ReproError(f"{run_dir} is a run of paper {head['paper']!r}, not {paper_name!r}")
    if args.exp and args.exp != head["exp"]:
        raise ReproError(f"{run_dir} is a run of experiment {head['exp']!r}, not {args.exp!r}")
    if not os.path.isfile(os.path.join(run_dir, CKPT)):
        raise ReproError(f"{run_dir} has no {CKPT} to resume from (interrupted before the first checkpoint?)")
    paper = get_paper(head["paper"])
    exp = paper.experiment(head["exp"])
    cfg = from_dict(paper.config_class, read_yaml(os.path.join(run_dir, CONFIG)))
    return paper, exp, cfg, run_dir, head.get("lite", False), head.get("overrides", [])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.train", description="Train one experiment of one paper.")
    ap.add_argument("--paper", help="registered paper name (see --list)")
    ap.add_argument("--exp", help="experiment (default: the paper's default)")
    ap.add_argument("--lite", action="store_true", help="the experiment's few-step smoke variant")
    ap.add_argument("--seed", type=int, help="training seed (train.seed)")
    ap.add_argument("--out", help="run directory to create (default: logs/runs/<paper>/<exp>-seed<N>-<time>)")
    ap.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    ap.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. -o train.lr=0.005 (repeatable)")
    ap.add_argument("--list", action="store_true", help="list papers, experiments and targets")
    ap.add_argument("--data-dir", metavar="DIR",
                    help="where downloaded datasets live (sets REPRO_DATA_DIR: DIR/mnist, DIR/cifar, ...)")
    ap.add_argument("--pretrained", metavar="DIR",
                    help="a local pretrained model directory (model.pretrained), for papers that fine-tune one")
    args = ap.parse_args(argv)
    if args.data_dir:
        os.environ["REPRO_DATA_DIR"] = os.path.abspath(args.data_dir)
    if args.pretrained:
        args.override.append(f"model.pretrained={os.path.abspath(args.pretrained)}")

    if args.list:
        print_listing()
        return 0
    dist = Dist()
    say = print if dist.main else (lambda *a, **k: None)
    if args.resume:
        if args.out:
            raise ReproError("--resume writes into the run it continues; drop --out")
        paper, exp, cfg, run_dir, lite, overrides = _open_resume(args, args.paper)
        dist.init()
        say(f"resuming {paper.name}/{exp.name} in {run_dir}")
        train(paper, exp, cfg, run_dir, lite, overrides, resume=True, dist=dist)
        return 0
    if not args.paper:
        raise ReproError(f"--paper is required; registered: {', '.join(load_papers().names())}")
    paper = get_paper(args.paper)
    exp = paper.experiment(args.exp)
    cfg = load_config(paper.config_class, exp.config_path, lite=args.lite, overrides=args.override, seed=args.seed)
    dist.init()
    out = args.out or os.path.join(REPO_ROOT, "logs", "runs", paper.name,
                                   f"{exp.name}-seed{cfg.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = dist.gather(out)[0]  # every rank writes (or not) under rank 0's name
    run_dir = _prepare_out(out) if dist.main else out
    dist.gather(None)  # ranks wait until rank 0 has checked and made the directory
    world = f" on {dist.world} processes" if dist.world > 1 else ""
    say(f"training {paper.name}/{exp.name}{' (lite)' if args.lite else ''} seed {cfg.train.seed}{world} -> {run_dir}")
    train(paper, exp, cfg, run_dir, args.lite, args.override, dist=dist)
    say(f"done: {run_dir}\nverify with: python -m repro.verify {run_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
