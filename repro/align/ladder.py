"""The alignment ladder of Paddle's reproduction guide, for a paper that ships a
reference implementation (`Paper.reference`, a module; PyTorch on the CPU):

  weights   the reference's initial weights converted into the Paddle model
  data      the harness's batches equal the reference's, step by step
  forward   same weights, same fake input: logits (mean |diff| <= 1e-6)
  metric    the paper's metric and the reference's on the same logits (exact)
  loss      the loss on the same fake batch (<= 1e-5)
  backward  gradients after each of N steps (<= 1e-5)
  optimizer weights after each of N optimizer steps (<= 1e-5)
  lr        the learning rate at every step of the configured schedule (<= 1e-9)

The reference module provides build_model(cfg), loss(out, y), batch(x, y, step,
batch_size), accuracy(logits, y), optimizer(cfg, params), scheduler(cfg, opt).
Each rung writes reprod_log dumps (<rung>_paddle.npy, <rung>_ref.npy) that
`python -m repro.align diff` compares, and the ladder's table goes to
ladder.txt (and ladder.txt.json, which repro.report shows).
"""
import importlib
import os

import numpy as np

from repro.align import convert
from repro.align.diff import ReprodLogger, compare
from repro.align.localize import first_divergence
from repro.data import Batches
from repro.errors import ReproError
from repro.run.recipe import build_optimizer, lr_at, reseed

THRESHOLDS = {  # rung: (method, threshold), after the guide and the issue
    "data": ("max", 0.0), "forward": ("mean", 1e-6), "metric": ("max", 0.0), "loss": ("max", 1e-5),
    "backward": ("max", 1e-5), "optimizer": ("max", 1e-5), "lr": ("max", 1e-9),
}


def _paddle_grads(model):
    canon = convert.canonical(model)
    names = {p.name: k for k, p in model.state_dict().items()}
    return {canon[names[p.name]]: p.grad.numpy() for _, p in model.named_parameters() if p.grad is not None}


class Ladder:
    def __init__(self, paper, cfg, steps=3, out=None, planted=None):
        if not paper.reference:
            raise ReproError(f"paper {paper.name!r} ships no reference implementation (Paper.reference)")
        try:
            self.ref = importlib.import_module(paper.reference)
        except ImportError as e:
            raise ReproError(f"the reference {paper.reference} needs {e.name} (PyTorch: pip install torch==2.13.0)") from None
        self.paper, self.cfg, self.steps, self.out = paper, cfg, steps, out
        self.planted = planted  # test hook: a function(paddle_model) that breaks the port on purpose
        self.results = []

    def _rung(self, name, paddle_rec, ref_rec, note=""):
        method, thr = THRESHOLDS[name]
        res = compare(paddle_rec, ref_rec, method, thr, title=name)
        if self.out:
            for side, rec in (("paddle", paddle_rec), ("ref", ref_rec)):
                log = ReprodLogger()
                for k, v in rec.items():
                    log.add(k, np.asarray(v))
                log.save(os.path.join(self.out, f"{name}_{side}.npy"))
        self.results.append((name, res, note))
        return res

    def run(self):
        import paddle
        import torch


        cfg, tc, ref = self.cfg, self.cfg.train, self.ref
        torch.manual_seed(tc.seed)
        reseed(tc.seed, 0)
        tmodel = ref.build_model(cfg).float()
        pmodel = self.paper.build_model(cfg)
        report = convert.load_into(pmodel, {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()})
        if self.planted:
            self.planted(pmodel)
        self.results.append(("weights", None, report.summary()))

        data = self.paper.build_data(cfg)
        batches = Batches(*data.train, tc.batch_size, tc.batch_order, tc.seed)
        p_rec, r_rec = {}, {}
        for s in range(self.steps):
            px, py = batches(s)
            rx, ry = ref.batch(*data.train, s, tc.batch_size)
            p_rec.update({f"x_{s}": px.numpy(), f"y_{s}": py.numpy()})
            r_rec.update({f"x_{s}": np.asarray(rx), f"y_{s}": np.asarray(ry)})
        self._rung("data", p_rec, r_rec)

        rng = np.random.default_rng(tc.seed)
        x0 = np.asarray(data.train[0][: tc.batch_size])
        y0 = np.asarray(data.train[1][: tc.batch_size])
        n_classes = int(max(data.train[1].max(), max(y.max() for _, y in data.eval.values()))) + 1
        fake = [(rng.standard_normal(x0.shape).astype(x0.dtype), rng.integers(0, n_classes, y0.shape).astype(y0.dtype))
                for _ in range(self.steps)]

        pmodel.eval()
        tmodel.eval()
        x, y = fake[0]
        with paddle.no_grad(), torch.no_grad():
            p_logits = pmodel(paddle.to_tensor(x)).numpy()
            r_logits = tmodel(torch.from_numpy(x)).numpy()
        fwd = self._rung("forward", {"logits": p_logits}, {"logits": r_logits})
        if not fwd.passed:
            method, thr = THRESHOLDS["forward"]
            layer, stats, _ = first_divergence(pmodel, tmodel, [x], thr, method)
            where = f"first diverging layer: {layer} ({', '.join(f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}' for k, v in stats.items())})" if layer else "no single layer diverges beyond the threshold"
            self.results[-1] = ("forward", fwd, where)
            self.diverging_layer = layer

        metrics = self.paper.metrics(cfg)
        p_metric = {}
        for name, m in metrics.items():
            m.update(p_logits, y)
            p_metric[name] = np.array(m.compute())
        self._rung("metric", p_metric, {name: np.array(ref.accuracy(p_logits, y)) for name in metrics})

        self._train_rungs(pmodel, tmodel, fake)
        self._lr_rung()
        return self

    def _train_rungs(self, pmodel, tmodel, fake):
        """The loss, backward and optimizer rungs: both models trained the same steps on the same fake batches."""
        import paddle
        import torch
        cfg, tc, ref = self.cfg, self.cfg.train, self.ref
        pmodel.train()
        tmodel.train()
        popt = build_optimizer(tc, pmodel)
        topt = ref.optimizer(cfg, tmodel.parameters())
        p_loss, r_loss, p_grad, r_grad, p_w, r_w = {}, {}, {}, {}, {}, {}
        for s, (x, y) in enumerate(fake):
            popt.set_lr(lr_at(tc, s))
            pl = self.paper.loss(pmodel(paddle.to_tensor(x)), paddle.to_tensor(y))
            pl.backward()
            tl = ref.loss(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
            tl.backward()
            p_loss[f"loss_{s}"], r_loss[f"loss_{s}"] = np.array(float(pl)), np.array(tl.item())
            for k, v in _paddle_grads(pmodel).items():
                p_grad[f"{k}@{s}"] = v
            # .numpy() of a torch tensor is a view: copy, or later steps rewrite what was recorded
            tgrads = {k: p.grad.numpy().copy() for k, p in tmodel.named_parameters() if p.grad is not None}
            for k, v in convert.torch_as_paddle(tgrads, pmodel).items():
                r_grad[f"{k}@{s}"] = v
            popt.step()
            popt.clear_grad()
            topt.step()
            topt.zero_grad()
            for k, v in convert.paddle_weights(pmodel).items():
                p_w[f"{k}@{s}"] = v
            tw = {k: p.detach().numpy().copy() for k, p in tmodel.named_parameters()}
            for k, v in convert.torch_as_paddle(tw, pmodel).items():
                r_w[f"{k}@{s}"] = v
        self._rung("loss", p_loss, r_loss)
        self._rung("backward", p_grad, r_grad)
        self._rung("optimizer", p_w, r_w)


    def _lr_rung(self):
        """The learning rate of every step of the run, by the port's schedule and the reference's."""
        import torch
        cfg, tc, ref = self.cfg, self.cfg.train, self.ref
        sched_opt = ref.optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
        sched = ref.scheduler(cfg, sched_opt)
        p_lr, r_lr = [], []
        for s in range(tc.steps):
            p_lr.append(lr_at(tc, s))
            r_lr.append(sched_opt.param_groups[0]["lr"])
            if sched is not None:
                sched_opt.step()
                sched.step()
        self._rung("lr", {"lr": np.array(p_lr)}, {"lr": np.array(r_lr)})

    @property
    def passed(self):
        return all(res is None or res.passed for _, res, _ in self.results)

    def table(self):
        rows = [["rung", "checks", "worst", "threshold", "result", "note"]]
        for name, res, note in self.results:
            if res is None:
                rows.append([name, "-", "-", "-", "PASS", note])
                continue
            worst = max(res.rows, key=lambda r: r.value if np.isfinite(r.value) else np.inf)
            rows.append([name, str(len(res.rows)), f"{worst.value:.2e} ({worst.method}, {worst.key})",
                         f"{worst.threshold:.0e}", "PASS" if res.passed else "FAIL", note])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"ladder {'PASSED' if self.passed else 'FAILED'}")
        return "\n".join(lines)

    def write(self):
        if not self.out:
            return
        import json
        os.makedirs(self.out, exist_ok=True)
        with open(os.path.join(self.out, "ladder.txt"), "w", encoding="utf-8") as f:
            f.write(self.table() + "\n")
        with open(os.path.join(self.out, "ladder.txt.json"), "w", encoding="utf-8") as f:
            json.dump({"title": "alignment ladder", "passed": self.passed,
                       "rows": [{"key": name, "passed": res is None or res.passed, "note": note,
                                 "checks": [] if res is None else res.to_dict()["rows"]}
                                for name, res, note in self.results]}, f, indent=1, default=float)
