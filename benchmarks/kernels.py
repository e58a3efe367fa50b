"""Where one training update goes, op by op, in Paddle and in PyTorch on the same shapes, and what the
candidate faster paths give: the measurements behind the main job's speed (README, "Speed").

    python benchmarks/kernels.py [--steps 300] [--repeats 3] [--models cnn textcnn bilstm] [--parts ops candidates]

One thread, each measurement in a fresh process (oneDNN is chosen at start; Paddle's profiler starts once
per process), the registered configs' shapes (MNIST-1D CNN: batches of 100 x 40; ChnSentiCorp TextCNN and
Bi-LSTM: batches of 64 x 128 tokens, made-up ids, a 20,000-word vocabulary).

  ops         Paddle's profiler (paddle.profiler) over --steps updates of each model (a text model: a
              fiftieth of them): each forward op and backward node over 1% of the update, microseconds per
              update, and the forward / backward / optimizer split. For the MNIST-1D CNN the registered model
              (its convolutions as one GEMM, adopted for issue 26) and the same model with Paddle's own Conv1D
              (as registered before), beside the same update in PyTorch (torch.profiler, the authors' layers;
              skipped where PyTorch is not installed): the per-op table before and after. TextCNN also with
              its convolutions as one GEMM; the text models' dominant layers alone against PyTorch's on the
              same shapes (median of --repeats, interleaved).
  candidates  milliseconds per update, interleaved, median of --repeats, of each model as registered
              against each other path, and whether that path gives the registered run's bits (weights
              after 20 updates from the same start, compared bit for bit):
                Paddle's Conv1D   (MNIST-1D CNN) the convolutions as Paddle's native Conv1D, the model as it
                                  was registered before: Paddle's CPU convolution works sample by sample (an
                                  im2col and a GEMM per row of the batch,
                                  paddle/phi/kernels/impl/conv_kernel_impl.h) and adds the bias in an op of
                                  its own;
                conv as one GEMM  (TextCNN) every Conv2D's forward as unfold (im2col over the whole batch) and
                                  one matrix product with the bias folded in (F.linear);
                strided windows   (MNIST-1D CNN) the windows as k strided slices of the padded input,
                                  stacked, instead of index_select;
                as_strided windows (MNIST-1D CNN) the windows as one strided view (paddle.as_strided);
                static graph      (MNIST-1D CNN) the model through paddle.jit.to_static (full graph);
                multi-tensor Adam paddle.optimizer.Adam(use_multi_tensor=True);
                oneDNN            FLAGS_use_mkldnn on (Paddle's oneDNN kernels where it has them);
                MKL's own path    MKL choosing its code path itself, as every run did before the harness
                                  named the AVX2 path on CPUs that are not Intel's (repro.machine.mkl_path;
                                  "registered" is this machine's path for new runs; on an Intel CPU the two
                                  are the same).
A path that changes the bits changes every shipped run made with the registered model (their replays are
bitwise), so adopting it means making those runs again (as issue 26 did for the CNN's GEMM convolution).
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from benchmarks._timing import ms_per_call  # noqa: E402

TEXT_BATCH, TEXT_LEN, VOCAB = 64, 128, 20000


# ---------------------------------------------------------------------------------------------- the models
def build(name, candidate=None):
    """(net, optimizer, batch, loss) of a registered model, seeded; MKL on this machine's path for new
    runs (repro.machine.mkl_path), or on its own for the candidate MKL_OWN."""
    import paddle

    from repro.registry import get_paper
    from repro.run import recipe
    recipe.set_threads(1, mkl=None if candidate == MKL_OWN else recipe.MACHINE)
    paddle.seed(0)
    rng = np.random.default_rng(0)
    if name == "cnn":
        paper = get_paper("mnist1d")
        cfg = paper.config("cnn", seed=0)
        net = paper.build_model(cfg)
        x = paddle.to_tensor(rng.standard_normal((cfg.train.batch_size, 40)).astype("float32"))
        y = paddle.to_tensor(rng.integers(0, 10, cfg.train.batch_size))
    else:
        paper = get_paper("chnsenticorp_rnn")
        cfg = paper.config(name, seed=0)
        net = paper.build_model(cfg, VOCAB)
        ids = rng.integers(1, VOCAB, (TEXT_BATCH, TEXT_LEN))
        ids[:, rng.integers(20, TEXT_LEN)] = 0  # some padding, as real batches have
        x = paddle.to_tensor(ids)
        y = paddle.to_tensor(rng.integers(0, 2, TEXT_BATCH))
    return paper, net, cfg, x, y


def optimizer(net, cfg, multi_tensor=False):
    """The registered optimizer (recipe.build_optimizer), or the same Adam with use_multi_tensor."""
    import paddle

    from repro.run import recipe
    opt = recipe.build_optimizer(cfg.train, net)
    if not multi_tensor:
        return opt
    assert cfg.train.optimizer == "adam"
    return paddle.optimizer.Adam(learning_rate=cfg.train.lr, parameters=net.parameters(), beta1=cfg.train.beta1,
                                 beta2=cfg.train.beta2, epsilon=cfg.train.epsilon or 1e-8, use_multi_tensor=True)


def gemm_convs(net):
    """Replace every plain Conv2D's forward (zeros padding, no groups or dilation, NCHW) by unfold + one
    F.linear over the whole batch: the same function, another summation order."""
    import paddle
    import paddle.nn.functional as F
    replaced = 0
    for layer in net.sublayers(include_self=True):
        if not isinstance(layer, paddle.nn.Conv2D):
            continue
        if layer._groups != 1 or any(d != 1 for d in layer._dilation) or layer._padding_mode != "zeros" \
                or layer._data_format != "NCHW" or not isinstance(layer._padding, int):
            continue

        def forward(x, layer=layer):
            w = layer.weight
            co, k = w.shape[0], int(np.prod(w.shape[1:]))
            kernel, p = list(w.shape[2:]), layer._padding
            cols = F.unfold(x, kernel, strides=list(layer._stride), paddings=[p] * 4)  # [B, ci*kh*kw, L]
            b, _, n = cols.shape
            out = F.linear(cols.transpose([0, 2, 1]).reshape([b * n, k]), w.reshape([co, k]).T, layer.bias)
            h = (x.shape[2] + 2 * p - kernel[0]) // layer._stride[0] + 1
            return out.reshape([b, n, co]).transpose([0, 2, 1]).reshape([b, co, h, n // h])
        layer.forward = forward
        replaced += 1
    assert replaced, "no convolution to replace"
    return net


def native_convs(net):
    """The MNIST-1D CNN as registered before issue 26: its convolutions by Paddle's own conv1d, channels
    first (the same weights; the ops nn.Conv1D runs)."""
    import paddle.nn.functional as F

    def forward(x):
        h = x.unsqueeze(1)  # [batch, 1, 40]
        for conv in (net.conv1, net.conv2, net.conv3):
            h = F.relu(F.conv1d(h, conv.weight, conv.bias, stride=conv._stride, padding=conv._padding))
        return net.linear(h.flatten(1))
    net.forward = forward
    return net


def _windowed(net, windows):
    """The registered CNN with its convolutions' windows gathered by windows(padded, n, k, stride)
    ([batch, n * k, channels], window after window) instead of index_select; the rest as registered."""
    import paddle.nn.functional as F

    def forward(x, layer):
        w = layer.weight
        c_out, c_in, k = w.shape
        stride, pad = layer._stride[0], layer._padding
        n = (x.shape[1] + 2 * pad - k) // stride + 1
        cols = windows(F.pad(x, [pad, pad], data_format="NLC"), n, k, stride).reshape([-1, k * c_in])
        out = F.linear(cols, w.clone().transpose([2, 1, 0]).reshape([k * c_in, c_out]), layer.bias)
        return out.reshape([-1, n, c_out])
    for conv in (net.conv1, net.conv2, net.conv3):
        conv.forward = lambda x, conv=conv: forward(x, conv)
    return net


def strided_windows(net):
    """k strided slices of the padded input (position j, j + stride, ...), stacked: no index tensor."""
    import paddle
    return _windowed(net, lambda p, n, k, s: paddle.stack([p[:, j:j + s * (n - 1) + 1:s] for j in range(k)], 2))


def as_strided_windows(net):
    """The windows as one strided view of the padded input (paddle.as_strided), made contiguous by the reshape."""
    import paddle

    def view(p, n, k, s):
        b, length, c = p.shape
        return paddle.as_strided(p, [b, n, k, c], [length * c, s * c, c, 1])
    return _windowed(net, view)


def static_graph(net):
    """The whole model as a static graph (paddle.jit.to_static, full_graph; Paddle 3.3's PIR executor):
    one program per forward and per backward instead of an op call each."""
    import paddle
    return paddle.jit.to_static(net, full_graph=True)


NATIVE = "Paddle's Conv1D"
GEMM = "conv as one GEMM"
REWRITES = {NATIVE: native_convs, GEMM: gemm_convs, "strided windows": strided_windows,
            "as_strided windows": as_strided_windows, "static graph": static_graph}


MKL_OWN = "MKL's own path"
CANDIDATES = {
    "cnn": [NATIVE, "strided windows", "as_strided windows", "static graph", "multi-tensor Adam", "oneDNN", MKL_OWN],
    "textcnn": [GEMM, "multi-tensor Adam", "oneDNN", MKL_OWN],
    "bilstm": ["multi-tensor Adam", "oneDNN", MKL_OWN],
}


def stepper(name, candidate=None):
    import paddle
    paper, net, cfg, x, y = build(name, candidate)
    if candidate in REWRITES:
        net = REWRITES[candidate](net)
    opt = optimizer(net, cfg, multi_tensor=candidate == "multi-tensor Adam")
    assert (candidate == "oneDNN") == paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"]

    def step():
        paper.loss(net(x), y).backward()
        opt.step()
        opt.clear_grad()
    return net, step


def child(name, candidate, steps, out):
    """In its own process (oneDNN is chosen at start; Paddle's profiler starts once per process): ms per
    update over `steps` updates after 3, then the weights after 20 more updates from a fresh start, to `out`."""
    net, step = stepper(name, candidate)
    ms = ms_per_call(step, steps)
    net, step = stepper(name, candidate)
    for _ in range(20):
        step()
    np.savez(out, **{k: v.numpy() for k, v in net.state_dict().items()})
    return {"ms": ms}


def updates(name, steps):
    return steps if name == "cnn" else max(3, steps // 50)


def in_child(task, *args):
    """Run one measurement in a fresh process, FLAGS_use_mkldnn=1 for the oneDNN candidate."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLAGS_use_mkldnn": "1" if "oneDNN" in args else "0"}
    p = subprocess.run([sys.executable, __file__, "--child", json.dumps([task, *args])], env=env,
                       capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        sys.exit(f"kernels.py: the {task} measurement of {args} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- per op
def paddle_ops(name, steps, candidate=None):
    """({op or backward node: us per update}, {forward/backward/optimizer: ms}) of one registered model,
    or of it with its convolutions rewritten (a candidate in REWRITES)."""
    import paddle.profiler as profiler
    from paddle.profiler.profiler_statistic import StatisticData
    paper, net, cfg, x, y = build(name, candidate)
    if candidate in REWRITES:
        net = REWRITES[candidate](net)
    opt = optimizer(net, cfg)

    def step():
        paper.loss(net(x), y).backward()
        opt.step()
        opt.clear_grad()
    for _ in range(3):
        step()
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda p: None)
    prof.start()
    for _ in range(steps):
        step()
        prof.step()
    with contextlib.redirect_stdout(io.StringIO()):  # the profiler's own summary of step times
        prof.stop()
    stats = StatisticData(prof.profiler_result.get_data(), prof.profiler_result.get_extra_info())
    ops = {k.replace(" dygraph", "").replace("Global_", ""): v.cpu_time / 1e3 / steps
           for k, v in stats.event_summary.items.items()}
    return ops, phases(lambda: net(x), lambda out: paper.loss(out, y).backward(), opt.step, opt.clear_grad, steps)


def phases(forward, backward, step, clear, steps):
    """ms per update of each part, timed inside the same updates (forward; loss and backward; the
    optimizer's step and clearing the gradients), after 3 updates."""
    total = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for i in range(steps + 3):
        t0 = time.perf_counter()
        out = forward()
        t1 = time.perf_counter()
        backward(out)
        t2 = time.perf_counter()
        step()
        clear()
        t3 = time.perf_counter()
        if i >= 3:
            for k, a, b in (("forward", t0, t1), ("backward", t1, t2), ("optimizer", t2, t3)):
                total[k] += (b - a) * 1e3 / steps
    return {**total, "whole update": sum(total.values())}


def torch_ops(steps):
    """The same CNN update in PyTorch (the authors' layers), or None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    from torch.profiler import ProfilerActivity, profile
    sys.path.insert(0, os.path.join(REPO, "papers", "mnist1d"))
    import reference  # the authors' PyTorch model and optimizer (papers/mnist1d/reference.py)

    from repro.registry import get_paper
    cfg = get_paper("mnist1d").config("cnn", seed=0)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = reference.build_model(cfg)
    opt = reference.optimizer(cfg, net.parameters())
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((100, 40)).astype("float32"))
    y = torch.tensor(rng.integers(0, 10, 100))
    loss = torch.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        loss(net(x), y).backward()
        opt.step()
    for _ in range(20):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops = {e.key: e.self_cpu_time_total / steps for e in prof.key_averages()}
    return ops, phases(lambda: net(x), lambda out: loss(out, y).backward(), opt.step, opt.zero_grad, steps), \
        torch.__version__


CONV_OPS = {  # the kernels that compute the CNN's convolutions, forward and backward, in each path
    NATIVE: (["conv2d"], ["Conv2dGradNodeFinal"]),
    "registered": (["pad3d", "index_select", "assign", "matmul"],
                   ["Pad3dGradNode", "IndexSelectGradNode", "AssignGradNode", "MatmulGradNode"]),
}


def conv_share(ops, path):
    """Microseconds per update in the convolutions' own kernels (forward, backward) of a Paddle path
    (the registered one's matmul includes the last linear layer's), or of PyTorch's."""
    if path in CONV_OPS:
        fwd, bwd = CONV_OPS[path]
        return sum(ops.get(k, 0.0) for k in fwd), sum(ops.get(k, 0.0) for k in bwd)
    fwd = sum(v for k, v in ops.items() if k in ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward",
                                                  "aten::thnn_conv2d", "aten::_convolution", "aten::convolution",
                                                  "aten::conv1d"))
    bwd = sum(v for k, v in ops.items() if "convolution_backward" in k or "ConvolutionBackward" in k)
    return fwd, bwd


def per_op(models, steps, repeats):
    for name in models:
        ops, split = profiled(name, steps)
        if name == "cnn":
            compare({NATIVE: profiled(name, steps, NATIVE), "registered": (ops, split)}, steps)
        if GEMM in CANDIDATES[name]:
            profiled(name, steps, GEMM)
    if set(models) - {"cnn"}:
        text_kernels(updates("textcnn", steps), repeats)


def profiled(name, steps, candidate=None):
    got = in_child("ops", name, updates(name, steps), candidate)
    ops, split = got["ops"], got["split"]
    print(f"one update of {name}{' with ' + candidate if candidate else ''} in Paddle (paddle.profiler, "
          f"{updates(name, steps)} updates, one thread): us per update, the ops over 1% of it")
    for k, v in sorted(ops.items(), key=lambda kv: -kv[1]):
        if v > 0.01 * split["whole update"] * 1e3:
            print(f"  {k:<40} {v:10.1f}")
    print("  " + ", ".join(f"{k} {v:.2f} ms" for k, v in split.items()) + "\n", flush=True)
    return ops, split


def compare(paths, steps):
    """The CNN's per-op table, before (Paddle's Conv1D) and after (registered), against PyTorch."""
    theirs = torch_ops(steps)
    if theirs is None:
        print("\nPyTorch: skipped, it is not installed (pip install torch==2.13.0)")
        return
    tops, tsplit, version = theirs
    print(f"\nthe same update in PyTorch {version} (torch.profiler, self time): us per update")
    for k, v in sorted(tops.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {k:<40} {v:8.1f}")
    (bops, bsplit), (rops, rsplit) = paths[NATIVE], paths["registered"]
    print(f"\n| part of one update (ms) | before: {NATIVE} | registered: one GEMM | PyTorch | registered / PyTorch |"
          "\n| --- | ---: | ---: | ---: | ---: |")
    for k in ("forward", "backward", "optimizer", "whole update"):
        print(f"| {k} | {bsplit[k]:.2f} | {rsplit[k]:.2f} | {tsplit[k]:.2f} | {rsplit[k] / tsplit[k]:.2f} |")
    shares = [conv_share(bops, NATIVE), conv_share(rops, "registered"), conv_share(tops, "torch")]
    for i, label in enumerate(("the 3 convolutions' forward kernels", "their backward kernels")):
        b, r, t = (x[i] / 1e3 for x in shares)
        print(f"| {label} | {b:.2f} | {r:.2f} | {t:.2f} | {r / max(t, 1e-9):.2f} |")
    add = [o.get("add", 0.0) + o.get("AddGradNode", 0.0) for o in (bops, rops)]
    print(f"| bias adds and their gradients (PyTorch's convolution and linear add their own) | {add[0] / 1e3:.2f} | "
          f"{add[1] / 1e3:.2f} | - | - |")


def text_kernels(steps, repeats):
    """The text models' dominant layers alone, forward and backward, Paddle against PyTorch on the same shapes:
    TextCNN's three convolutions (windows 1-3 over 128-wide embeddings, 128 filters each) and the Bi-LSTM
    (128 -> 198 each way), a batch of 64 x 130 (TextCNN pads 2) or 64 x 128 tokens."""
    try:
        import torch
    except ImportError:
        print("text models against PyTorch: skipped, PyTorch is not installed")
        return
    import paddle

    from repro.run import recipe
    recipe.set_threads(1)  # and MKL on this machine's path for new runs
    paddle.set_device("cpu")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((TEXT_BATCH, TEXT_LEN + 2, 128)).astype("float32")
    paddle_convs = [paddle.nn.Conv2D(1, 128, (k, 128)) for k in (1, 2, 3)]
    torch_convs = [torch.nn.Conv2d(1, 128, (k, 128)) for k in (1, 2, 3)]
    paddle_lstm = paddle.nn.LSTM(128, 198, direction="bidirect")
    torch_lstm = torch.nn.LSTM(128, 198, bidirectional=True, batch_first=True)

    def pconv():
        x = paddle.to_tensor(emb).unsqueeze(1)
        sum(c(x).sum() for c in paddle_convs).backward()

    def tconv():
        x = torch.from_numpy(emb).unsqueeze(1)
        sum(c(x).sum() for c in torch_convs).backward()

    def plstm():
        paddle_lstm(paddle.to_tensor(emb[:, :TEXT_LEN]))[0].sum().backward()

    def tlstm():
        torch_lstm(torch.from_numpy(emb[:, :TEXT_LEN]))[0].sum().backward()
    print(f"\nthe text models' dominant layers alone, forward and backward, one thread (ms; {steps} each, median of "
          f"{repeats}, interleaved)")
    print("| layer | Paddle | PyTorch | Paddle / PyTorch |\n| --- | ---: | ---: | ---: |")
    for label, p, t in (("TextCNN's 3 convolutions", pconv, tconv), ("Bi-LSTM", plstm, tlstm)):
        times = [(ms_per_call(p, steps), ms_per_call(t, steps)) for _ in range(repeats)]
        a, b = statistics.median(x for x, _ in times), statistics.median(y for _, y in times)
        print(f"| {label} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)


# ---------------------------------------------------------------------------------------------- candidates
def candidates(models, steps, repeats, work):
    print(f"\nms per update (one thread, median of {repeats}, interleaved); 'same bits': the weights after 20 "
          f"updates equal the registered model's bit for bit")
    print(f"{'model':<9} {'path':<20} {'ms':>7} {'/ registered':>13}  same bits")
    for name in models:
        paths = ["registered"] + CANDIDATES[name]
        times = {c: [] for c in paths}
        for r in range(repeats):
            for c in paths:
                times[c].append(in_child("time", name, c, updates(name, steps), os.path.join(work, f"{name}-{c}.npz"))["ms"])
        base = statistics.median(times["registered"])
        base_w = np.load(os.path.join(work, f"{name}-registered.npz"))
        print(f"{name:<9} {'registered':<20} {base:7.2f} {1.0:13.2f}  -")
        for c in CANDIDATES[name]:
            w = np.load(os.path.join(work, f"{name}-{c}.npz"))
            same = all(np.array_equal(w[k], base_w[k]) for k in base_w.files)
            worst = max(float(np.abs(w[k].astype(np.float64) - base_w[k]).max()) for k in base_w.files)
            t = statistics.median(times[c])
            print(f"{'':<9} {c:<20} {t:7.2f} {t / base:13.2f}  {'yes' if same else f'no (largest difference {worst:.1e})'}",
                  flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300,
                    help="updates per timing of the CNN (default 300); a text model takes a fiftieth, at least 3")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", choices=sorted(CANDIDATES), default=["cnn", "textcnn", "bilstm"])
    ap.add_argument("--parts", nargs="+", choices=["ops", "candidates"], default=["ops", "candidates"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be at least 1")
    if args.child:
        task, *rest = json.loads(args.child)
        if task == "ops":
            ops, split = paddle_ops(*rest)
            print(json.dumps({"ops": ops, "split": split}))
        else:
            name, candidate, steps, out = rest
            print(json.dumps(child(name, None if candidate == "registered" else candidate, steps, out)))
        return
    if "ops" in args.parts:
        per_op(args.models, args.steps, args.repeats)
    if "candidates" in args.parts:
        with tempfile.TemporaryDirectory() as work:
            candidates(args.models, args.steps, args.repeats, work)


if __name__ == "__main__":
    main()
