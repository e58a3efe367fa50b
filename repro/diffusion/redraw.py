"""Redrawing a submitted text-to-image bundle's works: the worker's task "redraw"
(repro.worker, inside the sandbox).

The task loads the maintainers' base model (a local directory the judge names
and binds read-only, its identity checked by the judge), the bundle's LoRA
tensors (read with safetensors into arrays, never through a loader that can
unpickle), and draws every work from its prompt and seed exactly as
`repro.diffusion.generate` drew it (repro.diffusion.sampling.generate, one image
per seed). It writes OUT_DIR/works.safetensors: `images`, uint8 [N, size, size, 3].
It is never handed the submitted images, and it decides nothing: the judge
(repro.diffusion.judge) compares and scores.

Request: {"task": "redraw", "base": DIR, "weights": "lora", "scheduler": "ddim",
"steps": int, "guidance": float, "negative_prompt": str, "size": int,
"threads": int, "mkl_path": "avx2"|null, "works": [[prompt, seed], ...], "staged": {"lora.safetensors": PATH}}.
"""
import os

from repro.boundary import exchange
from repro.diffusion.bundle_files import LORA_FILE
from repro.diffusion.pretrained import load_pipeline
from repro.diffusion.sampling import generate
from repro.diffusion.platform import platform
from repro.run import recipe


def read_lora(path):
    """{key: paddle tensor} of a LoRA safetensors file, in the layout pipe.load_lora_weights reads."""
    import paddle
    from safetensors.numpy import load_file
    arrays = load_file(path)
    if not arrays or not all("lora" in k for k in arrays):
        raise ValueError("the weights file is not a LoRA state dict (every key names a lora layer)")
    return {k: paddle.to_tensor(v) for k, v in arrays.items()}


def task(req, out):
    import numpy as np

    threads = int(req.get("threads") or 1)
    recipe.set_threads(threads, mkl=req.get("mkl_path"))  # the works' own (repro.diffusion.judge)
    if req.get("weights") != "lora":
        raise ValueError(f"weights {req.get('weights')!r}: only LoRA bundles are redrawn")
    pipe = load_pipeline(req["base"], req["scheduler"])
    pipe.load_lora_weights(read_lora(req["staged"][LORA_FILE]))
    images = []
    for prompt, seed in req["works"]:
        image, _ = generate(pipe, [prompt], 1, int(req["size"]), int(seed), int(req["steps"]),
                            float(req["guidance"]), req.get("negative_prompt") or "")
        images.append(image[0])
    size = int(req["size"])
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    exchange.write_arrays(os.path.join(out, "works.safetensors"), {"images": stacked})
    return {"works": len(images), "platform": platform(threads)}
