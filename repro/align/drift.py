"""Long-horizon alignment: the Paddle port and the paper's reference trained side by
side for the whole schedule, from the same initial weights, on the same batches.

    python -m repro.align drift --paper P [--exp E] --seeds 0-9 [--steps N] [--every K] [--json FILE]

The ladder (repro.align.ladder) checks a few steps to float32 rounding; over
thousands of steps those roundings grow, and whether the two frameworks still
land on the same accuracy *on average* is a separate question, answered here by
measurement. For each seed the reference model is built under
torch.manual_seed(seed) and its weights converted into the Paddle model (the
ladder's weights rung); then Paddle trains with the harness's own update
(repro.run.recipe.update: its batches, seeds and learning rate) and the reference
with its own optimizer and scheduler on the very same batches. Every K updates
both are evaluated on the paper's first evaluation split: each one's accuracy,
the share of samples on which they predict the same class, and how far apart
their weights are, |paddle − reference| / |reference − initial| (L2).

The summary gives the mean paired difference of the final accuracy (Paddle −
reference, same seed, same initial weights) with its 95% confidence interval
(Student's t over the seeds), and each framework's mean ± sd. Classification
papers with a reference only (Paper.reference, as for the ladder).
"""
import importlib
import json
import math
import time

import numpy as np

from repro.align import convert
from repro.config import set_key
from repro.errors import ReproError
from repro.paper import ClassificationPaper
from repro.registry import get_paper
from repro.run import recipe
from repro.targets import parse_seeds


def _reference(paper):
    if not paper.reference:
        raise ReproError(f"paper {paper.name!r} ships no reference implementation (Paper.reference)")
    try:
        return importlib.import_module(paper.reference)
    except ImportError as e:
        raise ReproError(f"the reference {paper.reference} needs {e.name} (PyTorch: pip install torch==2.13.0)") from None


def _vector(weights):
    return np.concatenate([np.asarray(weights[k], np.float64).ravel() for k in sorted(weights)])


def run_seed(paper, cfg, seed, steps, every, echo=None):
    """One seed: both frameworks from the reference's initial weights; returns a JSON-able record."""
    import paddle
    import torch


    ref = _reference(paper)
    set_key(cfg, "train.seed", seed)
    tc = cfg.train
    recipe.set_threads(1)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    tmodel = ref.build_model(cfg).float()
    state = recipe.build(paper, cfg)
    convert.load_into(state.net, {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()})
    topt = ref.optimizer(cfg, tmodel.parameters())
    sched = ref.scheduler(cfg, topt)
    init = _vector(convert.paddle_weights(state.net))

    split, (xe, ye) = next(iter(state.data.eval.items()))
    xe_model = state.data.prepare(xe)
    bs = tc.eval_batch_size

    def evaluate():
        state.net.eval()
        tmodel.eval()
        with paddle.no_grad(), torch.no_grad():
            p = np.concatenate([state.net(paddle.to_tensor(xe_model[i:i + bs])).numpy() for i in range(0, len(xe), bs)])
            r = np.concatenate([tmodel(torch.from_numpy(np.ascontiguousarray(xe_model[i:i + bs]))).numpy()
                                for i in range(0, len(xe), bs)])
        state.net.train()
        tmodel.train()
        pw = _vector(convert.paddle_weights(state.net))
        rw = _vector(convert.torch_as_paddle({k: v.detach().numpy() for k, v in tmodel.named_parameters()}, state.net))
        moved = np.linalg.norm(rw - init)
        pc, rc = p.argmax(-1), r.argmax(-1)
        return {"paddle_acc": 100.0 * float((pc == ye).mean()), "reference_acc": 100.0 * float((rc == ye).mean()),
                "agree": 100.0 * float((pc == rc).mean()),
                "weight_distance": float(np.linalg.norm(pw - rw) / moved) if moved > 0 else 0.0}

    curve = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        recipe.update(paper, state, cfg, step)  # the harness's update, its batch...
        x, y = state.batches(step - 1)          # ...and the same batch for the reference
        loss = ref.loss(tmodel(torch.from_numpy(x.numpy())), torch.from_numpy(y.numpy()))
        loss.backward()
        topt.step()
        topt.zero_grad()
        if sched is not None:
            sched.step()
        if step % every == 0 or step == steps:
            curve.append({"step": step, **evaluate()})
            if echo:
                c = curve[-1]
                echo(f"  seed {seed} step {step}: paddle {c['paddle_acc']:.1f}  reference {c['reference_acc']:.1f}  "
                     f"agree {c['agree']:.1f}%  weight distance {c['weight_distance']:.2e}")
    final = curve[-1]
    return {"paper": paper.name, "seed": seed, "steps": steps, "split": split, "curve": curve,
            "paddle_acc": final["paddle_acc"], "reference_acc": final["reference_acc"],
            "seconds": round(time.perf_counter() - t0, 1), "paddle": paddle.__version__, "torch": torch.__version__}


def t_quantile(df):
    """The 97.5% quantile of Student's t with df degrees of freedom."""
    try:
        from scipy import stats
        return float(stats.t.ppf(0.975, df))
    except ImportError:  # a short table; the normal quantile beyond it
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
                 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064, 29: 2.045}
        return table.get(df, 1.96)


def summarize(records):
    """Paired difference Paddle − reference of the final accuracy, with its 95% interval."""
    p = np.array([r["paddle_acc"] for r in records])
    r = np.array([r["reference_acc"] for r in records])
    d = p - r
    n = len(d)
    out = {"seeds": [rec["seed"] for rec in records], "n": n,
           "paddle_mean": float(p.mean()), "paddle_sd": float(p.std(ddof=1)) if n > 1 else 0.0,
           "reference_mean": float(r.mean()), "reference_sd": float(r.std(ddof=1)) if n > 1 else 0.0,
           "difference_mean": float(d.mean())}
    if n > 1:
        half = t_quantile(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
        out.update(difference_sd=float(d.std(ddof=1)), ci95=[out["difference_mean"] - half, out["difference_mean"] + half])
    return out


def report(summary):
    s = summary
    lines = [f"paddle    {s['paddle_mean']:.2f} ± {s['paddle_sd']:.2f}",
             f"reference {s['reference_mean']:.2f} ± {s['reference_sd']:.2f}",
             f"paddle − reference (paired, n={s['n']}): {s['difference_mean']:+.2f}"]
    if "ci95" in s:
        lo, hi = s["ci95"]
        lines[-1] += f", 95% CI [{lo:+.2f}, {hi:+.2f}]" + (
            " (contains 0: no systematic difference shown)" if lo <= 0 <= hi else " (excludes 0)")
    return "\n".join(lines)


def main(args):
    """The `python -m repro.align drift` command."""

    paper = get_paper(args.paper)
    if not isinstance(paper, ClassificationPaper):
        raise ReproError(f"drift compares class predictions; {paper.name} is not a classification paper")
    exp = paper.experiment(args.exp)
    seeds = parse_seeds(args.seeds, paper, exp)
    records = []
    for seed in seeds:
        cfg = paper.config(exp, overrides=args.override)
        steps = args.steps or cfg.train.steps
        every = args.every or cfg.train.eval_every
        rec = run_seed(paper, cfg, seed, steps, every, echo=print if args.verbose else None)
        rec["exp"], rec["overrides"] = exp.name, list(args.override)
        records.append(rec)
        print(f"{paper.name}/{exp.name} seed {seed}: paddle {rec['paddle_acc']:.1f}  reference "
              f"{rec['reference_acc']:.1f}  ({rec['steps']} updates, {rec['seconds']:.0f} s)", flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
    summary = summarize(records)
    print(report(summary))
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps({"summary": summary, "paper": paper.name, "exp": exp.name,
                                "overrides": list(args.override)}) + "\n")
    return 0
