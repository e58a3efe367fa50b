"""Harness overhead on a text paper: repro.train's loop against a bare
PaddleNLP-style loop (paddle.io.DataLoader with Pad/Stack collation) doing the
same updates on the same batches, in the same process, interleaved, repeated.

    python benchmarks/nlp_loop.py [--paper kim_cnn] [--exp sst2] [--steps 100] [--repeats 3]
                                  [--data-dir DIR | --synthetic]

Both loops start from the same initial weights, take the same batches (the
harness's shuffled order) and draw dropout from the same per-update seeds, and
end with one evaluation on the paper's evaluation split; the script checks they
end with the same accuracy. The harness also logs, writes checkpoints and
VisualDL scalars as a real run does. The data (tokenising, the vocabulary) are
built once, outside the timing. Prints each timing, harness/bare per repeat
(each pair back to back, in alternating order) and their median, the figure to
quote, and the tokens per second (words that are not padding) of each loop.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from benchmarks._timing import bare_against_harness  # noqa: E402
from repro.registry import get_paper  # noqa: E402
from repro.run import recipe  # noqa: E402
from repro.train import train  # noqa: E402


def bare(paper, cfg, data):
    """What a person would write with PaddleNLP's own pieces: a DataLoader over
    (ids, label) with Tuple(Pad, Stack) collation, then forward, backward, step."""
    from paddlenlp.data import Pad, Stack, Tuple
    tc = cfg.train
    recipe.set_threads(1)
    recipe.reseed(tc.seed, 0)  # the harness's initial weights
    model = paper.model(cfg, data.artifact)
    opt = recipe.build_optimizer(tc, model)
    x, y = data.train
    n_batch = len(x) // tc.batch_size
    order = []  # the harness's batches: a permutation per epoch from (seed, epoch), last partial batch dropped
    for step in range(tc.steps):
        epoch, i = divmod(step, n_batch)
        perm = np.random.default_rng([tc.seed, epoch]).permutation(len(x))
        order.append(perm[i * tc.batch_size:(i + 1) * tc.batch_size].tolist())
    dataset = [(x[i], y[i]) for i in range(len(x))]
    collate = Tuple(Pad(pad_val=0, axis=0, dtype="int64"), Stack(dtype="int64"))
    loader = paddle.io.DataLoader(dataset, batch_sampler=order, collate_fn=lambda rows: collate(rows),
                                  return_list=True)
    constrain = getattr(model, "constrain", None)
    max_norm = getattr(cfg.model, "max_norm", 0)
    model.train()
    for step, (ids, labels) in enumerate(loader, start=1):
        recipe.reseed(tc.seed, step)  # the harness's dropout draws (13 us an update)
        loss = paddle.nn.functional.cross_entropy(model(ids), labels)
        loss.backward()
        opt.step()
        opt.clear_grad()
        if constrain and max_norm:  # Kim's max-norm constraint, as the paper's train_step applies it
            constrain(max_norm)
    split, (xe, ye) = next(iter(data.eval.items()))
    model.eval()
    correct = 0
    with paddle.no_grad():
        for i in range(0, len(xe), tc.eval_batch_size):
            ids = paddle.to_tensor(data.prepare(xe[i:i + tc.eval_batch_size]))
            correct += int((model(ids).numpy().argmax(-1) == ye[i:i + tc.eval_batch_size]).sum())
    return split, 100.0 * correct / len(xe)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper", default="kim_cnn")
    ap.add_argument("--exp", default=None)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", help="sets REPRO_DATA_DIR (the real data)")
    ap.add_argument("--synthetic", action="store_true", help="made-up sentences (the --lite data), no files needed")
    args = ap.parse_args()
    if args.data_dir:
        os.environ["REPRO_DATA_DIR"] = os.path.abspath(args.data_dir)

    paper = get_paper(args.paper)
    exp = paper.experiment(args.exp)
    overrides = [f"train.steps={args.steps}", f"train.eval_every={args.steps}", "train.visualdl=true"]
    if args.synthetic:
        overrides.append("data.source=synthetic")
    cfg = paper.config(exp, overrides=overrides)
    recipe.reseed(cfg.train.seed, 0)
    t0 = time.perf_counter()
    data = paper.data(cfg)
    print(f"{paper.name}/{exp.name}: data built once in {time.perf_counter() - t0:.1f} s "
          f"({len(data.train[0])} training rows, vocabulary {len(data.artifact['tokens'])})", flush=True)
    paper.data = lambda cfg, artifact=None, train=True: data  # both loops reuse it
    x = data.train[0]
    n_batch = len(x) // cfg.train.batch_size
    tokens = 0
    for step in range(args.steps):
        epoch, i = divmod(step, n_batch)
        perm = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(x))
        tokens += sum(len(x[j]) for j in perm[i * cfg.train.batch_size:(i + 1) * cfg.train.batch_size])


    def harness():
        with tempfile.TemporaryDirectory() as tmp:
            metrics = train(paper, exp, cfg, tmp, echo=False)
        split = next(iter(data.eval))
        return f"{split}_acc", metrics[f"{split}_acc"]

    def bare_run():
        split, acc = bare(paper, cfg, data)
        return f"{split}_acc", acc
    mb, mh, ratios = bare_against_harness(bare_run, harness, args.repeats, lambda seconds, name, value:
                                          f"{name} {value:.2f}  {tokens / seconds:,.0f} tokens/s")
    print(f"{paper.name}/{exp.name}, {args.steps} updates ({tokens:,} tokens), {args.repeats} repeats: bare {mb:.2f} s "
          f"({tokens / mb:,.0f} tokens/s), harness {mh:.2f} s ({tokens / mh:,.0f} tokens/s) (medians); "
          f"harness/bare per repeat {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
