"""Evaluating a model on every eval split of its data: the one evaluation train, python -m
repro.eval and the sandboxed worker's recompute all use (paper code: never imported by the judge)."""
import numpy as np
import paddle

from repro.paper import GenerativePaper
from repro.run.dist import SINGLE


@paddle.no_grad()
def evaluate(paper, model, cfg, data, dist=SINGLE):
    """(metrics, samples): {'<split>_loss': ..., '<split>_<metric>': ...} over every
    eval split, and {split: samples counted}. With several processes each rank
    runs the model on its share (rows rank, rank+world, ...); the outputs are
    gathered and the loss and metrics computed over the whole split, in the same
    chunks as one process would, so every sample counts exactly once."""
    if isinstance(paper, GenerativePaper):
        model.eval()
        out = paper.evaluate(model, cfg, data, dist)
        model.train()
        return out
    model.eval()
    results, samples = {}, {}
    bs = cfg.train.eval_batch_size
    for split, (x, y) in data.eval.items():
        mine = np.arange(dist.rank, len(x), dist.world)
        outs = [model(paddle.to_tensor(data.prepare(x[mine[i:i + bs]]))).numpy() for i in range(0, len(mine), bs)]
        logits = np.concatenate(outs) if outs else np.zeros((0,), np.float32)
        if dist.world > 1:
            parts = [(i, o) for i, o in dist.gather((mine, logits)) if len(i)]
            order = np.concatenate([i for i, _ in parts])
            if not np.array_equal(np.sort(order), np.arange(len(x))):
                raise RuntimeError(f"evaluation shards of {split} do not cover it exactly once")
            logits = np.concatenate([o for _, o in parts])[np.argsort(order)]
        metrics = paper.metrics(cfg)
        loss_sum = 0.0
        for i in range(0, len(x), bs):
            out, yb = logits[i:i + bs], y[i:i + bs]
            loss_sum += float(paper.loss(paddle.to_tensor(out), paddle.to_tensor(yb))) * len(yb)
            for m in metrics.values():
                m.update(out, yb)
        results[f"{split}_loss"] = loss_sum / len(x)
        for name, m in metrics.items():
            results[f"{split}_{name}"] = m.compute()
        samples[split] = len(logits)
    model.train()
    return results, samples
