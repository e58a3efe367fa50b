"""Drawing works from a trained generative run: its model with its last checkpoint's weights
(load_trained), and run(), which draws each prompt's images alone from its own seed and writes
them with metadata.json (python -m repro.diffusion.generate is its command)."""
import json
import os
import shutil
import time

import numpy as np

from repro.config import to_dict
from repro.diffusion.images import grid, load_png, save_png
from repro.diffusion.pretrained import with_scheduler
from repro.diffusion.platform import platform
from repro.diffusion.sampling import generate, generate_unconditional
from repro.errors import ReproError
from repro.paper import GenerativePaper
from repro.registry import get_paper
from repro.run import recipe, rundir


METADATA = "metadata.json"


def load_trained(run_dir):
    """(paper, cfg, model, checkpoint metadata, checkpoint sha256, header) of a
    generative run, with the weights of its last logged checkpoint."""
    run = rundir.open_run(get_paper, run_dir)
    if not isinstance(run.paper, GenerativePaper):
        raise ReproError(f"{run_dir} is a {run.paper.name} run; only the generative papers' runs generate images")
    model, _, meta, ev = rundir.load_trained(run)
    return run.paper, run.cfg, model, meta, ev["sha256"], run.header


def read_prompts(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ReproError(f"prompts file not found: {path}") from None
    except UnicodeDecodeError:
        raise ReproError(f"prompts file {path} is not UTF-8 text") from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ReproError(f"prompts file {path} holds no prompts")
    return prompts


def scheduler_name(pipe):
    return type(pipe.scheduler).__name__


def run(run_dir, prompts, n=4, size=512, seed=0, steps=None, guidance=None, negative_prompt="",
        scheduler="", out=None, echo=print, threads=1):
    """Generate and write the images; returns the output directory."""
    if n <= 0:
        raise ReproError(f"--n must be > 0, got {n}")
    if size <= 0 or size % 8:
        raise ReproError(f"--size must be a positive multiple of 8, got {size}")
    out = out or os.path.join(run_dir, "generated", time.strftime("%Y%m%d-%H%M%S"))
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ReproError(f"--out {out} already exists and is not empty; give a new directory")
    recipe.set_threads(recipe.check_threads(threads))  # the pixels depend on it: recorded with the platform
    paper, cfg, model, meta, sha, head = load_trained(run_dir)
    pipe = paper.pipeline(model, cfg)
    text = hasattr(pipe, "tokenizer")
    if text and not prompts:
        raise ReproError(f"{paper.name} is a text-to-image model: give --prompts FILE or --prompt TEXT")
    if not text and prompts:
        raise ReproError(f"{paper.name} is an unconditional model: it takes no prompts")
    ec = cfg.eval
    steps = steps or ec.steps
    if text and guidance is None:
        guidance = ec.guidance_scale
    pipe = with_scheduler(pipe, scheduler)
    if not text:
        native = pipe.unet.config.sample_size
        if size != native:
            raise ReproError(f"{paper.name} makes {native}x{native} images; --size {size} is not available")
    tmp = f"{out}.tmp-{os.getpid()}"
    os.makedirs(tmp)
    try:
        records = []
        t0 = time.perf_counter()
        total = n * (len(prompts) if text else 1)
        for i, p in enumerate(prompts if text else [None]):
            for k in range(n):
                s = seed + i * n + k
                t = time.perf_counter()
                if text:
                    image, _ = generate(pipe, [p], 1, size, s, steps, guidance, negative_prompt)
                else:
                    image = generate_unconditional(pipe, 1, s, steps)
                name = f"p{i:02d}_{k}.png" if text else f"{k:04d}.png"
                save_png(image[0], os.path.join(tmp, name))
                records.append({"file": name, "prompt": p, "seed": s})
                echo(f"image {len(records)}/{total}: {name} seed {s} ({time.perf_counter() - t:.1f} s)")
        images = np.stack([load_png(os.path.join(tmp, r["file"])) for r in records])
        save_png(grid(images, n), os.path.join(tmp, "grid.png"))
        metadata = {
            "run": os.path.abspath(run_dir), "paper": paper.name, "exp": head.get("exp"),
            "checkpoint_sha256": sha, "checkpoint_step": int(meta.get("step", 0)),
            "provenance": head.get("provenance", {}), "config": to_dict(cfg),
            "negative_prompt": negative_prompt, "scheduler": scheduler_name(pipe),
            "scheduler_config": dict(pipe.scheduler.config), "steps": steps,
            "guidance_scale": guidance if text else None, "size": size, "n": n, "seed": seed,
            "prompts": prompts if text else [], "images": records, "platform": platform(threads),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        with open(os.path.join(tmp, METADATA), "w", encoding="utf-8") as f:
            json.dump(metadata, f, ensure_ascii=False, indent=1, default=str)
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
