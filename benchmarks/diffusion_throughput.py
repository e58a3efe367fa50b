"""Stable Diffusion LoRA throughput on the tiny offline SD (builtin:tiny-sd,
configs/sd_lora/lora.yaml's lite block): the harness against bare ppdiffusers,
the memory/speed switches against the harness default, and generation.

    python benchmarks/diffusion_throughput.py [--steps 20] [--repeats 3] [--resolution 64] [--batch 2]
        [--size 512] [--sample-steps 2] [--images 1] [--only all|train|gen] [--json]

Every measurement runs in a fresh subprocess (memory is isolated and measured
per configuration), loads its model, runs one untimed warm-up step (or image),
then times --steps training steps (or --images images). Each repeat runs all
measurements, in alternating order (forwards, then backwards), so the machine's
drift cancels; rates are medians over repeats and each ratio is the median of
the per-repeat ratios, the figure to quote.

  harness/bare     LoRA training steps/s of the harness path (repro.data.Batches,
                   PAPER.train_step with Amp off, the cosine LR set each step, as
                   repro.train does) over a bare ppdiffusers loop written here
                   (load the pipeline, lora.attach_lora, AdamW over the LoRA
                   parameters; a step = vae.encode -> noise -> unet -> mse ->
                   backward -> step), on the same batches and RNG draws. Below 1
                   means the harness costs speed. The two must end with the same
                   loss (the same computation), which is checked.
  ckpt/default     steps/s with model.gradient_checkpointing=true over the
                   harness default (below 1: recomputation's cost).
  amp-bf16/default steps/s with train.amp bf16 O1 over the harness default. Paddle's
                   auto_cast acts on CUDA/XPU/custom devices only: on a CPU it is
                   a no-op (float32), which the script detects and says.
  gen harness/pipe images/s of repro.diffusion.generate (one image at a time,
                   image k from seed + k) over direct pipe(prompt,
                   num_images_per_prompt=1, ...) calls with the same seeds; the
                   images must be identical, which is checked.

Peak RSS is the process's high-water mark from the warm-up to the end of the
timed loop (reset via /proc/self/clear_refs after loading; the whole process's
ru_maxrss where that is not possible); "dRSS" is its difference from the harness
default (training) or from the direct pipe call (generation). On a CPU these
say how the switches behave on this machine only: at 64x64 the tiny model's
activations are small beside the loaded process, so the deltas are near zero;
GPU numbers need a GPU run of this script.
"""
import argparse
import hashlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TRAIN = ("bare", "harness", "ckpt", "amp-bf16")
GEN = ("gen-harness", "gen-pipe")
SWITCHES = {"ckpt": ["model.gradient_checkpointing=true"],
            "amp-bf16": ["train.amp.enabled=true", "train.amp.level=O1", "train.amp.dtype=bfloat16"]}


# ---------------------------------------------------------------- memory

def reset_peak():
    """Reset the kernel's RSS high-water mark; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib(reset_ok):
    if reset_ok:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------- workers (one per subprocess)

def load_cfg(args, extra=()):
    # the paper directly, not through repro.registry, which imports every paper
    from repro.papers.sd_lora import PAPER as paper

    exp = paper.experiment("lora")
    cfg = paper.config(exp, lite=True, overrides=[
        f"data.resolution={args.resolution}", f"train.batch_size={args.batch}",
        f"data.builtin_count={max(12, 4 + args.batch)}", f"train.steps={args.steps + 1}", *extra])
    return paper, cfg


def worker_harness(args, extra):
    """repro.train's step: Batches -> set_lr -> PAPER.train_step (no logging, eval or checkpoints)."""
    from repro.data import Batches
    from repro.run.amp import Amp
    from repro.run.recipe import build_optimizer, lr_at, reseed

    paper, cfg = load_cfg(args, extra)
    tc = cfg.train
    reseed(tc.seed, 0)
    data = paper.build_data(cfg)
    net = paper.build_model(cfg)
    optimizer = build_optimizer(tc, net)
    amp = Amp(tc.amp)
    net, optimizer = amp.decorate(net, optimizer)
    batches = Batches(*data.train, tc.batch_size, tc.batch_order, tc.seed, data.preprocess,
                      data.augment or paper.augment)
    reseed(tc.seed, 0)
    net.train()

    def step(i):
        batch = batches(i)
        optimizer.set_lr(lr_at(tc, i))
        return paper.train_step(net, optimizer, batch, amp, cfg)

    return step


def worker_bare(args, extra):
    """What a person writes with ppdiffusers alone, on the same batches (shuffle per
    epoch from (seed, epoch), flips from (seed, step)) and RNG draws as the harness."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from repro.diffusion import images as image_io, lora, ppd, pretrained
    from repro.run.recipe import reseed

    _, cfg = load_cfg(args, extra)
    tc, dc = cfg.train, cfg.data
    reseed(tc.seed, 0)  # the same LoRA initialisation as the harness
    pipe = pretrained.load_pipeline(pretrained.resolve_pretrained(cfg.model.pretrained))
    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    for part in (unet, vae, text_encoder):
        part.eval()
        for p in part.parameters():
            p.stop_gradient = True
    lora = lora.attach_lora(unet, cfg.model.lora_rank)
    params = [p for layer in lora.values() for p in layer.parameters()]
    optimizer = paddle.optimizer.AdamW(learning_rate=tc.lr, parameters=params, weight_decay=tc.weight_decay)
    noise_scheduler = ppd.ppdiffusers().DDPMScheduler.from_config(pipe.scheduler.config)
    images, captions = image_io.builtin_landscapes(dc.builtin_count, dc.resolution, seed=0)
    cut = len(images) - dc.eval_count
    images, ids = images[:cut], image_io.tokenize(pipe.tokenizer, captions[:cut])
    bs, per_epoch = tc.batch_size, max(1, cut // tc.batch_size)
    reseed(tc.seed, 0)

    def step(i):
        epoch, j = divmod(i, per_epoch)
        idx = np.random.default_rng([tc.seed, epoch]).permutation(cut)[j * bs:(j + 1) * bs]
        x = image_io.to_model_input(images[idx])
        flip = np.random.default_rng([tc.seed, i]).random(len(x)) < 0.5
        x[flip] = x[flip][..., ::-1]
        pixels, tokens = paddle.to_tensor(np.ascontiguousarray(x)), paddle.to_tensor(ids[idx])
        optimizer.set_lr(tc.lr * 0.5 * (1 + math.cos(math.pi * i / tc.steps)))  # cosine, no warm-up
        with paddle.no_grad():
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
            states = text_encoder(tokens)[0]
        noise = paddle.randn(latents.shape, dtype=latents.dtype)
        t = paddle.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), dtype="int64")
        pred = unet(noise_scheduler.add_noise(latents, noise, t), t, states).sample
        loss = F.mse_loss(pred, noise)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return loss

    return step


def run_train(args, name):
    setup_t0 = time.perf_counter()
    step = (worker_bare if name == "bare" else worker_harness)(args, SWITCHES.get(name, ()))
    setup = time.perf_counter() - setup_t0
    reset_ok = reset_peak()
    float(step(0))  # warm-up, untimed
    t0 = time.perf_counter()
    for i in range(1, args.steps + 1):
        loss = step(i)
    loss = float(loss)  # CPU ops are synchronous; this only reads the value
    elapsed = time.perf_counter() - t0
    out = {"rate": args.steps / elapsed, "seconds": elapsed, "setup_s": setup, "loss": loss,
           "peak_rss_mib": peak_rss_mib(reset_ok)}
    if name == "amp-bf16":
        out["amp_active"] = amp_active(args)
    return out


def amp_active(args):
    """Whether the harness's autocast really computes in low precision here: Paddle's
    auto_cast does nothing on a CPU place (it warns and runs float32)."""
    import warnings

    import paddle

    from repro.run.amp import Amp

    _, cfg = load_cfg(args, SWITCHES["amp-bf16"])
    layer = paddle.nn.Linear(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Amp(cfg.train.amp).autocast():
            return layer(paddle.ones([1, 4])).dtype != paddle.float32


def run_gen(args, name):
    import numpy as np
    import paddle

    from repro.diffusion import images as image_io, pretrained, sampling

    setup_t0 = time.perf_counter()
    _, cfg = load_cfg(args)
    ec = cfg.eval
    pipe = pretrained.load_pipeline(pretrained.resolve_pretrained(cfg.model.pretrained), scheduler=ec.scheduler)
    _, captions = image_io.builtin_landscapes(args.images + 1, 8, seed=0)
    setup = time.perf_counter() - setup_t0

    def images_of(prompts, seed):
        if name == "gen-harness":
            return sampling.generate(pipe, prompts, 1, args.size, seed, args.sample_steps, ec.guidance_scale)[0]
        return [pipe(p, num_images_per_prompt=1, height=args.size, width=args.size,
                     num_inference_steps=args.sample_steps, guidance_scale=ec.guidance_scale,
                     generator=paddle.Generator().manual_seed(seed + k), output_type="np").images[0]
                for k, p in enumerate(prompts)]

    reset_ok = reset_peak()
    images_of(captions[-1:], 10_000)  # warm-up, untimed
    t0 = time.perf_counter()
    out = images_of(captions[:args.images], ec.seed)
    elapsed = time.perf_counter() - t0
    out = np.stack(out)
    if out.dtype != np.uint8:  # the direct call's floats, rounded as generate rounds them
        out = np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
    return {"rate": args.images / elapsed, "seconds": elapsed, "setup_s": setup,
            "sha256": hashlib.sha256(out.tobytes()).hexdigest(), "peak_rss_mib": peak_rss_mib(reset_ok)}


# ---------------------------------------------------------------- driver

def measure(args, name):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--steps", str(args.steps),
           "--resolution", str(args.resolution), "--batch", str(args.batch), "--size", str(args.size),
           "--sample-steps", str(args.sample_steps), "--images", str(args.images)]
    p = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    results = [line[len("RESULT "):] for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    if p.returncode or not results:
        sys.exit(f"{name} failed (exit {p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    return json.loads(results[-1])


def header():
    import paddle
    gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    return (f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), Paddle {paddle.__version__}"
            f"{'' if gpu else ' (CPU build or no GPU)'}, Python {sys.version.split()[0]}. "
            "CPU figures only: GPU numbers (and bf16/checkpointing as they behave there) need a GPU run.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=64, help="training resolution (multiple of 8)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=512, help="generated image size (multiple of 8)")
    ap.add_argument("--sample-steps", type=int, default=2, help="sampling steps per image")
    ap.add_argument("--images", type=int, default=1, help="timed images per generation measurement")
    ap.add_argument("--only", choices=("all", "train", "gen"), default="all")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        run = run_gen if args.worker in GEN else run_train
        print("RESULT " + json.dumps(run(args, args.worker)), flush=True)
        return

    print(header(), flush=True)
    names = {"all": TRAIN + GEN, "train": TRAIN, "gen": GEN}[args.only]
    runs = {n: [] for n in names}
    t_all = time.perf_counter()
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            res = measure(args, name)
            runs[name].append(res)
            unit = "images/s" if name in GEN else "steps/s"
            print(f"repeat {r + 1} {name:<12} {res['rate']:8.3f} {unit:<8}  peak RSS {res['peak_rss_mib']:7.1f} MiB"
                  f"  (setup {res['setup_s']:.1f} s)", flush=True)

    def med(name, key="rate"):
        return statistics.median(x[key] for x in runs[name])

    def ratio(a, b):
        per = [x["rate"] / y["rate"] for x, y in zip(runs[a], runs[b])]
        return {"median": statistics.median(per), "per_repeat": per}

    ratios, checks = {}, {}
    if "bare" in runs:
        ratios["harness/bare"] = ratio("harness", "bare")
        ratios["ckpt/default"] = ratio("ckpt", "harness")
        ratios["amp-bf16/default"] = ratio("amp-bf16", "harness")
        lb, lh, lc = runs["bare"][0]["loss"], runs["harness"][0]["loss"], runs["ckpt"][0]["loss"]
        checks["train_losses_agree"] = bool(math.isclose(lb, lh, rel_tol=1e-4) and math.isclose(lh, lc, rel_tol=1e-4))
        checks["final_losses"] = {n: runs[n][0]["loss"] for n in TRAIN}
        checks["amp_active"] = runs["amp-bf16"][0]["amp_active"]
    if "gen-pipe" in runs:
        ratios["gen harness/pipe"] = ratio("gen-harness", "gen-pipe")
        checks["images_identical"] = runs["gen-harness"][0]["sha256"] == runs["gen-pipe"][0]["sha256"]

    base = {n: ("harness" if n in TRAIN else "gen-pipe") for n in names}
    print(f"\n{'measurement':<13}{'rate (median)':>22}{'peak RSS MiB':>14}{'dRSS MiB':>10}")
    for n in names:
        unit = "images/s" if n in GEN else "steps/s"
        d = med(n, "peak_rss_mib") - med(base[n], "peak_rss_mib")
        print(f"{n:<13}{med(n):>13.3f} {unit:<8}{med(n, 'peak_rss_mib'):>14.1f}{d:>+10.1f}")
    print(f"\ntraining: {args.steps} timed steps, batch {args.batch} at {args.resolution}x{args.resolution}; "
          f"generation: {args.images} images at {args.size}x{args.size}, {args.sample_steps} sampling steps; "
          f"{args.repeats} repeat(s)")
    for k, v in ratios.items():
        print(f"{k:<18} median {v['median']:.3f}   per repeat {', '.join(f'{x:.3f}' for x in v['per_repeat'])}")
    if "train_losses_agree" in checks:
        losses = ", ".join(f"{n} {v:.6f}" for n, v in checks["final_losses"].items())
        print(f"final losses (repeat 1): {losses}; bare = harness = ckpt: "
              f"{'yes' if checks['train_losses_agree'] else 'NO, the loops differ'}")
    if checks.get("amp_active") is False:
        print("amp-bf16: Paddle's auto_cast is a no-op on this device (it acts on CUDA/XPU/custom places "
              "only), so that run computed in float32: its ratio is the autocast context's overhead, not bf16's")
    if "images_identical" in checks:
        print(f"generated images identical: {'yes' if checks['images_identical'] else 'NO, the paths differ'}")
    print(f"wall time {time.perf_counter() - t_all:.0f} s")
    if args.json:
        print(json.dumps({"machine": header(), "args": {k: v for k, v in vars(args).items() if k != "worker"},
                          "runs": runs, "ratios": ratios, "checks": checks}))


if __name__ == "__main__":
    main()
