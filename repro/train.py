"""Train one experiment of one paper.

    python -m repro.train --paper mnist1d [--exp cnn_shuffled] [--lite] [--seed N]
                          [--out DIR] [--resume DIR] [-o train.lr=0.005 ...]
    python -m repro.train --list

One plain loop: build the initial state, then for each step do the recipe's
update (repro.run.recipe: its seeds, batch and learning rate are functions of the
step) and log / evaluate / checkpoint on their schedules. The run directory's
layout is repro.run.rundir's; the log format is docs/log-format.md.
"""
import argparse
import math
import os
import sys
import time

if __name__ == "__main__" and not __package__:
    # run as a script (paddle.distributed.launch takes a .py path, not -m):
    # import the package from the repo root, not the modules beside this file
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":  # one line, not a traceback, where Paddle is missing
    from repro.errors import require_paddle
    require_paddle()

from repro import hints
from repro.config import config_hash, dump_yaml, to_dict
from repro.data import fingerprint
from repro.datasets.download import add_data_dir_option, use_data_dir
from repro.env import code_identity, environment
from repro.machine import check_mkl_path, mkl_path, peak_memory
from repro.errors import ReproError, run_cli
from repro.run.evaluation import evaluate
from repro.registry import add_papers_option, get_paper, load_papers, use_folders
from repro.run import checkpoint, recipe, rundir, seeds
from repro.run.dist import SINGLE, Dist
from repro.run.progress import Progress, fmt_eta
from repro.run.runlog import FORMAT as LOG_FORMAT, RunLog


def run_header(paper, exp, cfg, state, lite, overrides, threads, artifact_sha):
    """What the run is: the run_start event's payload (docs/log-format.md)."""
    data = state.data
    return {**({"artifact_sha256": artifact_sha} if artifact_sha else {}),
        "format": LOG_FORMAT, "paper": paper.name, "exp": exp.name, "title": paper.title,
        "lite": lite, "overrides": list(overrides),
        "config": to_dict(cfg), "config_hash": config_hash(cfg),
        "targets": [t.to_dict() for t in exp.targets],
        "metrics": {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in paper.metrics(cfg).items()},
        "data": {split: {"n": len(xy[0]), "sha256": fingerprint(*xy)}
                 for split, xy in {"train": data.train, **data.eval}.items()},
        "init_weights_sha256": checkpoint.weights_sha256(checkpoint.state_tensors(state.net)),
        "env": environment(threads), "code": code_identity(paper, exp),
        "provenance": paper.provenance(cfg),
    }


def resume_command(paper, run_dir):
    """The command that continues the run in run_dir, as the user can type it here."""
    return hints.command("repro.train", "--resume", run_dir, paper=paper.name, data=True)


class _NoLog:
    """What ranks other than 0 log: nothing."""
    seq, prev = 0, ""

    def event(self, kind, **payload):
        pass

    def close(self):
        pass


class EvalDataMismatch(ReproError):
    """The evaluation splits the plugin built are not the registered ones."""


def data_overrides(overrides):
    """The -o overrides that change the data section ('data.permutation=notebook', ...)."""
    return [o for o in overrides or () if o.split("=", 1)[0].strip().startswith("data.")]


def check_eval_data(paper, exp, data, lite, overrides=()):
    """Before the first update: the evaluation splits the plugin's build_data gave must be
    the ones the experiment registers (Experiment.eval_data): every registered split by
    name, its sample count, and its repro.data.fingerprint where one is registered. A
    --lite run is exempt (its data are smoke data, and verify never counts it), and so is
    a run whose data section is overridden on purpose (-o data....: other evaluation
    data by design, an exploration verify does not count, since its config departs from
    the registered one). Raises EvalDataMismatch with one line naming each split and
    what differs."""
    if lite or not exp.eval_data or data_overrides(overrides):
        return
    problems = []
    for split, (n, sha) in exp.eval_data.items():
        xy = data.eval.get(split)
        if xy is None:
            built = ", ".join(repr(s) for s in data.eval) or "none"
            problems.append(f"split {split!r} is registered but build_data gives no such split (it gives {built})")
            continue
        got_n = len(xy[0])
        if got_n != n:
            problems.append(f"split {split!r} has {got_n} samples, the registered {n}")
        elif sha is not None:
            got = fingerprint(*xy)
            if got != sha:
                problems.append(f"split {split!r} has fingerprint {got[:12]}…, the registered {str(sha)[:12]}…")
    if problems:
        raise EvalDataMismatch(f"{paper.name}/{exp.name}: the evaluation data are not the registered ones "
                               f"(Experiment eval_data): {'; '.join(problems)}; nothing was trained "
                               f"(`--print-eval-data` prints what build_data gives)")


def train(paper, exp, cfg, run_dir, lite=False, overrides=(), resume=None, echo=True, dist=SINGLE, threads=1,
          check_data=False, mkl=recipe.MACHINE):
    """Train to cfg.train.steps, writing into run_dir. Returns the final metrics.
    resume: the opened rundir.Run to continue (from its last logged checkpoint,
    or from step 0 when it logged none). echo=False keeps the console quiet.
    check_data=True (the CLI's): check_eval_data before anything is written. threads and mkl:
    recipe.set_threads' (a resumed run passes its own)."""
    tc = cfg.train
    recipe.set_threads(threads, mkl=mkl)
    state = recipe.build(paper, cfg, dist, init=resume is None,
                         artifact=rundir.read_artifact(resume) if resume is not None else None)
    if check_data:
        check_eval_data(paper, exp, state.data, lite, overrides)
        if exp.eval_data and not lite and data_overrides(overrides) and echo and dist.main:
            print(f"note: {', '.join(data_overrides(overrides))} changes the data, so the evaluation splits are "
                  f"not checked against the registered ones; verify will not count this run (its config departs "
                  f"from the registered one)", flush=True)
    if tc.amp.enabled and echo and dist.main and state.amp.cpu_noop:
        print("note: train.amp is on, but Paddle's auto_cast/decorate do nothing on the CPU; "
              "this run computes in float32", flush=True)
    meta = {"paper": paper.name, "exp": exp.name, "config_hash": config_hash(cfg), "lite": lite}

    start, note, previous = _resume_point(paper, tc, state, resume, run_dir) if resume is not None else (0, "", None)
    echo = echo and dist.main
    progress = Progress(tc.steps, f"{paper.name}/{exp.name}")
    progress.enabled = progress.enabled and echo

    def print_line(line):
        progress.clear()
        print(line, flush=True)

    log = _NoLog()
    pos = {"step": start}  # the loop's current step, for a run_end written on the way out
    t_start = time.perf_counter()
    try:
        if dist.main:
            log = RunLog(os.path.join(run_dir, rundir.EVENTS), os.path.join(run_dir, rundir.TEXT),
                         os.path.join(run_dir, rundir.VDL) if tc.visualdl else None,
                         echo=print_line if echo else None, lines=resume.lines if resume else ())
            if resume is not None:
                log.event("resume", step=start, env=environment(threads), code=code_identity(paper, exp),
                          **({"note": note} if note else {}))
            else:
                artifact_sha = rundir.write_artifact(run_dir, state.data.artifact) if state.data.artifact else None
                log.event("run_start", **run_header(paper, exp, cfg, state, lite, overrides, threads, artifact_sha))
            rundir.write_config(run_dir, cfg)
            os.makedirs(os.path.join(run_dir, rundir.CHECKPOINTS), exist_ok=True)
        metrics = _loop(paper, cfg, state, run_dir, start, previous, log, progress, dist, meta, pos)
        if start == tc.steps:  # killed after its final checkpoint: the final evaluation is logged before it
            final_eval = resume.last("eval")
            metrics = final_eval["metrics"] if final_eval and final_eval["step"] == start else metrics
    except KeyboardInterrupt:
        progress.clear()
        log.event("run_end", status="interrupted", step=pos["step"],
                  reason=f"interrupted; `{resume_command(paper, run_dir)}` continues from the last checkpoint")
        log.close()
        raise
    except OSError as e:  # a full disk, a folder made read-only under us
        progress.clear()
        try:
            log.event("run_end", status="failed", step=pos["step"], reason=f"cannot write: {e.strerror or e}")
        except OSError:
            pass
        log.close()
        where = f": {e.filename}" if e.filename else ""
        raise ReproError(f"{run_dir}: cannot write ({e.strerror or e}{where}); free space or fix permissions, "
                         f"then `{resume_command(paper, run_dir)}`") from None
    log.event("run_end", status="success", step=tc.steps, metrics=metrics,
              seconds=round(time.perf_counter() - t_start, 2))
    if dist.main:  # its own process's peak: each rank of a distributed run holds about as much
        rundir.write_resources(run_dir, peak_memory())
    log.close()
    return metrics


def _resume_point(paper, tc, state, resume, run_dir):
    """(step, note, previous checkpoint to drop) where a resumed run goes on: its last logged
    checkpoint loaded into state, or step 0 afresh when it logged none."""
    done = resume.checkpoints()
    if not done:
        paper.init_model(state.net, state.data)
        return 0, "no checkpoint was logged before the interruption: training starts again from step 0", None
    start = max(done)
    final = start == tc.steps  # the final checkpoint holds the weights alone: nothing trains on from it
    _, _, ckpt_meta, ckpt_ev = rundir.load_trained(resume, start, into=state.net,
                                                   optimizer=None if final else state.optimizer)
    state.amp.load_state(ckpt_meta.get("amp_scaler"))
    if state.exact is not None and not final:  # verifiable: go on with the segment's record
        state.exact.resume(start, rundir.is_kept(tc, start), os.path.join(resume.path, rundir.decisions_name(start)),
                           ckpt_ev.get("decisions_sha256"))
    previous = None if rundir.is_kept(tc, start) else os.path.join(run_dir, rundir.checkpoint_name(start))
    return start, "", previous


def _loop(paper, cfg, state, run_dir, start, previous, log, progress, dist, meta, pos):
    """Updates start+1 .. train.steps with their logging, evaluations and checkpoints; returns the final metrics."""
    tc = cfg.train
    metrics = {}
    window = {"reader": 0.0, "batch": 0.0, "n": 0}
    t_start = time.perf_counter()
    for step in range(start + 1, tc.steps + 1):
        pos["step"] = step
        t0 = time.perf_counter()
        loss, reader = recipe.update(paper, state, cfg, step, dist)
        window["reader"] += reader
        window["batch"] += time.perf_counter() - t0
        window["n"] += 1

        if step % tc.log_every == 0 or step == tc.steps:
            loss_value = float(loss)
            n, window_batch = window["n"], window["batch"]
            eta = fmt_eta((time.perf_counter() - t_start) / (step - start) * (tc.steps - step))
            log.event("train", step=step, steps=tc.steps, epoch=state.batches.epoch(step - 1) + 1,
                      loss=loss_value, lr=float(state.optimizer.get_lr()),
                      reader_cost=window["reader"] / n, batch_cost=window_batch / n,
                      ips=tc.batch_size * n / window_batch, eta=eta)
            window = {"reader": 0.0, "batch": 0.0, "n": 0}
            if not math.isfinite(loss_value):
                log.event("run_end", status="diverged", step=step, reason=f"loss is {loss_value}")
                log.close()
                raise ReproError(f"training diverged at step {step}: loss is {loss_value}")
            progress.update(step, eta, loss=loss_value, **{k: v for k, v in metrics.items() if "acc" in k},
                            ips=f"{tc.batch_size * n / window_batch:.0f}/s")
        if step % tc.eval_every == 0 or step == tc.steps:
            metrics, samples = evaluate(paper, state.model, cfg, state.data, dist)
            log.event("eval", step=step, metrics=metrics, samples=samples)
        if dist.main and (step % tc.checkpoint_every == 0 or rundir.is_kept(tc, step)):
            # the file goes into place before its log line, and the one it supersedes
            # is deleted after: a kill at any instant leaves the last logged one on disk
            name = rundir.checkpoint_name(step)
            extra = {"amp_scaler": state.amp.state()} if state.amp.state() else {}
            # verifiable: the segment's rounding decisions and state hashes, beside the checkpoint
            record = {} if state.exact is None else state.exact.checkpoint(
                os.path.join(run_dir, rundir.decisions_name(step)), step, rundir.is_kept(tc, step))
            # the final checkpoint keeps the weights alone (a third of an Adam state): it is
            # scored and compared, never trained on from (docs/log-format.md, "Checkpoints")
            sha, weights = checkpoint.save(os.path.join(run_dir, name), state.net,
                                           None if step == tc.steps else state.optimizer,
                                           {**meta, **extra, "step": str(step), "log_seq": str(log.seq),
                                            "log_head": log.prev})
            log.event("checkpoint", step=step, path=name, sha256=sha, weights_sha256=weights, **record)
            if previous and os.path.exists(previous):
                os.remove(previous)
            if previous and os.path.exists(rundir.decisions_beside(previous)):
                os.remove(rundir.decisions_beside(previous))
            previous = None if rundir.is_kept(tc, step) else os.path.join(run_dir, name)
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
    """Make out, a new or empty directory; refuse anything that holds files."""
    try:
        if os.path.exists(out):
            if not os.path.isdir(out):
                raise ReproError(f"--out {out} exists and is not a directory")
            if rundir.is_run(out):
                raise ReproError(f"--out {out} already holds a run; choose another directory or use --resume {out}")
            if os.listdir(out):
                raise ReproError(f"--out {out} is not empty; give a new or empty directory")
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ReproError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


def _open_resume(args):
    """The run to continue, checked: its log (strictly), config.yaml, and the last
    logged checkpoint's sha256 and chain head (checked again as it loads)."""
    run = rundir.open_run(get_paper, args.resume, allow_partial_tail=True)
    if args.override or args.seed is not None or args.lite or args.mkl:
        raise ReproError("--resume continues a run with its own config, threads and MKL path; drop -o/--seed/--lite/--mkl")
    end = run.events[-1]
    if end["kind"] == "run_end" and end["status"] == "success":
        raise ReproError(f"{args.resume} already finished; nothing to resume")
    head = run.header
    if args.paper and args.paper != head["paper"]:
        raise ReproError(f"{args.resume} is a run of paper {head['paper']!r}, not {args.paper!r}")
    if args.exp and args.exp != head["exp"]:
        raise ReproError(f"{args.resume} is a run of experiment {head['exp']!r}, not {args.exp!r}")
    if os.path.exists(os.path.join(run.path, rundir.CONFIG)):
        rundir.check_config_file(run)
    done = run.checkpoints()
    if done:  # refuse a replaced checkpoint before anything is written
        rundir.read_checkpoint(run, max(done), tensors=False)
    threads = head["env"].get("threads", 1)
    if type(threads) is not int or not 1 <= threads <= 1024:
        raise ReproError(f"{args.resume}: the header's env.threads {threads!r} is not a thread count")
    # a run made before the header recorded it took MKL's own path
    return run, threads, check_mkl_path(head["env"].get("mkl_path"), f"{args.resume}: the header's env.mkl_path")


def _drop_partial_tail(run):
    """A kill while a line was written leaves it without its newline; it was never
    part of the chain, so it is cut off (and said so)."""
    if run.tail:
        path = os.path.join(run.path, rundir.EVENTS)
        os.truncate(path, os.path.getsize(path) - len(run.tail))
        print(f"note: dropped an incomplete last log line ({len(run.tail)} bytes) left by the interruption")


def _parser():
    ap = argparse.ArgumentParser(prog="python -m repro.train", description="Train one experiment of one paper.")
    ap.add_argument("--paper", help="registered paper name (see --list)")
    ap.add_argument("--exp", help="experiment (default: the paper's default)")
    ap.add_argument("--lite", action="store_true", help="the experiment's few-step smoke variant")
    ap.add_argument("--seed", type=int, help="training seed (train.seed)")
    ap.add_argument("--seeds", nargs="?", const=seeds.PINNED, metavar="SEEDS",
                    help="train several seeds, each in its own process, then verify them: 0-4, 0,1,2, or "
                         "nothing for the target's pinned seeds (see repro/run/seeds.py)")
    ap.add_argument("--jobs", type=int, default=1, help="with --seeds: processes at a time (default 1)")
    ap.add_argument("--out", help="run directory to create (default: ./logs/runs/<paper>/<exp>-seed<N>-<time>; "
                                  "with --seeds the folder of the seed<N> runs)")
    ap.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    ap.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. -o train.lr=0.005 (repeatable)")
    recipe.add_threads_option(ap, "the result depends on it")
    ap.add_argument("--mkl", choices=["avx2", "own"],
                    help="the code path of MKL's matrix products for a new run (default: this machine's, "
                         f"{mkl_path() or 'own'} here: avx2 on an x86 CPU with AVX2 and FMA that is not "
                         "Intel's, else MKL's own choice; recorded: the result depends on it; a resumed run "
                         "keeps its own)")
    ap.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    ap.add_argument("--print-eval-data", action="store_true",
                    help="print the experiment's evaluation data as Experiment(eval_data=...) registers it, and exit")
    ap.add_argument("--list", action="store_true", help="list papers, experiments and targets")
    add_data_dir_option(ap)
    ap.add_argument("--pretrained", metavar="DIR",
                    help="a local pretrained model directory (model.pretrained), for papers that fine-tune one")
    add_papers_option(ap)
    return ap


def main(argv=None):
    args = _parser().parse_args(argv)
    use_folders(args.papers)
    use_data_dir(args)
    if args.pretrained:
        args.override.append(f"model.pretrained={os.path.abspath(args.pretrained)}")
    recipe.check_threads(args.threads)
    if not 1 <= args.jobs <= 256:
        raise ReproError(f"--jobs must be between 1 and 256, got {args.jobs}")
    if args.seeds is not None and (args.seed is not None or args.resume):
        raise ReproError("--seeds trains several seeds; drop --seed/--resume (give the same --out again to resume)")

    if args.list:
        print_listing()
        return 0
    dist = Dist()
    say = print if dist.main else (lambda *a, **k: None)
    if args.resume:
        if args.out:
            raise ReproError("--resume writes into the run it continues; drop --out")
        run, threads, mkl = _open_resume(args)
        dist.init()
        if dist.main:
            _drop_partial_tail(run)
        say(f"resuming {run.paper.name}/{run.exp.name} in {run.path}")
        train(run.paper, run.exp, run.cfg, run.path, run.header["lite"], run.header["overrides"], resume=run,
              dist=dist, threads=threads, check_data=True, mkl=mkl)
        return 0
    if not args.paper:
        raise ReproError(f"--paper is required; registered: {', '.join(load_papers().names())}")
    paper = get_paper(args.paper)
    exp = paper.experiment(args.exp)
    cfg = paper.config(exp, lite=args.lite, overrides=args.override, seed=args.seed)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if args.print_eval_data:
        data = paper.data(cfg)
        print("eval_data={" + ", ".join(f'"{s}": ({len(xy[0])}, "{fingerprint(*xy)}")' for s, xy in data.eval.items())
              + "}")
        return 0
    if args.seeds is not None:
        parent = args.out or os.path.join("logs", "runs", paper.name, f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        return seeds.train_and_verify(args, paper, exp, parent)
    dist.init()
    out = args.out or os.path.join("logs", "runs", paper.name,
                                   f"{exp.name}-seed{cfg.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = dist.gather(out)[0]  # every rank writes (or not) under rank 0's name
    made = dist.main and not os.path.exists(out)
    run_dir = _prepare_out(out) if dist.main else out
    dist.gather(None)  # ranks wait until rank 0 has checked and made the directory
    world = f" on {dist.world} processes" if dist.world > 1 else ""
    say(f"training {paper.name}/{exp.name}{' (lite)' if args.lite else ''} seed {cfg.train.seed}{world} -> {run_dir}")
    try:
        train(paper, exp, cfg, run_dir, args.lite, args.override, dist=dist, threads=args.threads, check_data=True,
              mkl=recipe.MACHINE if args.mkl is None else None if args.mkl == "own" else args.mkl)
    except EvalDataMismatch:
        if made:  # the folder this command made, still empty: no trace of a run that never started
            try:
                os.rmdir(run_dir)
            except OSError:
                pass
        raise
    say(f"done: {run_dir}\nverify with: {hints.command('repro.verify', run_dir, paper=paper.name, data=True)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
