"""ppdiffusers glue shared by the text-to-image papers, repro.generate and repro.submit.

  pretrained directories  a local ppdiffusers-format pipeline directory
                          (model_index.json + one folder per component) is
                          checked for every file it needs before anything loads,
                          and identified by a sha256 over its files. Nothing
                          downloads. "builtin:tiny-sd" is a tiny randomly
                          initialised Stable Diffusion written on first use, for
                          tests and smoke runs (no hub, ~4 MB).
  image-caption folders   the layouts diffusers users have: metadata.jsonl
                          ({"file_name": ..., "text": ...}) or a caption .txt
                          beside each image; UTF-8, so Chinese captions work.
  LoRA                    LoRALinearLayer on the attention projections via
                          set_lora_layer (ppdiffusers 0.29's LoRAAttnProcessor
                          path raises), saved in the layout
                          pipe.load_lora_weights() reads.
  generation              one image at a time, image i from seed + i, so an image
                          depends on its own seed only, not on the batch.
"""
import contextlib
import hashlib
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile

import numpy as np

from repro.checkpoint import sha256_file
from repro.errors import ReproError

TINY_SD = "builtin:tiny-sd"
TINY_SD_VERSION = "1"  # bump when write_tiny_sd changes, so caches are rebuilt
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
WEIGHT_EXTS = (".safetensors", ".pdparams", ".bin", ".index.json")
# where model_index.json may say a component's class lives; anything else is refused
LIBRARIES = {"ppdiffusers": "ppdiffusers", "diffusers": "ppdiffusers", "transformers": "ppdiffusers.transformers",
             "ppdiffusers.transformers": "ppdiffusers.transformers", "paddlenlp.transformers": "paddlenlp.transformers"}
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
SCHEDULERS = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler",
              "dpm": "DPMSolverMultistepScheduler", "ddpm": "DDPMScheduler"}


def ppdiffusers():
    """The ppdiffusers package; the harness imports it only through here.

    Importing ppdiffusers 0.29 (its utils/load_utils.py) rebinds ``np.bool`` to
    Python's ``bool``, adds ``np.bfloat16 = np.uint16`` and, where torch is
    installed, sets ``torch.uint16 = torch.bfloat16`` (a stand-in for torch
    releases that had no uint16). numpy's own code calls ``np.bool(x).any()``, so
    afterwards ``np.testing``'s comparisons raise on float arrays, and ``torch.save`` writes
    every tensor in a format safe loaders refuse. ppdiffusers reads none of these
    names itself, so they are put back."""
    import ppdiffusers as module
    if np.__dict__.get("bool") is bool:
        if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            np.bool = np.bool_  # numpy 2's own np.bool is np.bool_
        else:
            del np.bool
    if np.__dict__.get("bfloat16") is np.uint16:
        del np.bfloat16
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "uint16", None) is torch.bfloat16:
        try:
            torch.uint16 = torch.from_numpy(np.zeros(0, np.uint16)).dtype
        except TypeError:  # a torch without uint16 (< 2.3): ppdiffusers' stand-in stays
            pass
    return module


@contextlib.contextmanager
def quiet():
    """Silence ppdiffusers/paddlenlp INFO chatter (config dumps on every load)."""
    names = ("ppdiffusers", "paddlenlp", "PaddleNLP")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        ppdiffusers()
        from ppdiffusers.utils import logging as pl
        old = pl.get_verbosity()
        pl.set_verbosity_error()
    except ImportError:
        pl = None
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
        if pl is not None:
            pl.set_verbosity(old)


# ---------------------------------------------------------------- pretrained directories

def dir_identity(path):
    """sha256 over (relative path, sha256) of every file under path, sorted: the
    identity of a model directory, whatever its size. Computed once per process
    for the same files, sizes and modification times (an SD directory is
    gigabytes; DreamBooth and verify --recompute over several runs ask again)."""
    if not os.path.isdir(path):
        raise ReproError(f"model directory not found: {path}")
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files += [os.path.join(root, name) for name in sorted(names)]
    stamp = tuple((f, st.st_size, st.st_mtime_ns) for f in files for st in [os.stat(f)])

    def digest():
        h = hashlib.sha256()
        for full in files:
            h.update(f"{os.path.relpath(full, path)}\0{sha256_file(full)}\n".encode())
        return h.hexdigest()

    return _cached(("dir_identity", path, stamp), digest)


def read_model_index(path):
    index = os.path.join(path, "model_index.json")
    try:
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ReproError(f"pretrained {path}: model_index.json is not readable JSON ({e})") from None
    if not isinstance(data, dict) or "_class_name" not in data:
        raise ReproError(f"pretrained {path}: model_index.json has no _class_name; not a ppdiffusers pipeline")
    return data


def check_pretrained(path, required=("unet", "vae", "text_encoder", "tokenizer", "scheduler")):
    """Refuse a directory that is absent or incomplete, listing every missing file."""
    if not path:
        raise ReproError("model.pretrained is empty: give a local ppdiffusers pipeline directory "
                         f"(--pretrained PATH) or {TINY_SD}")
    if not os.path.isdir(path):
        raise ReproError(f"pretrained model directory not found: {path} (nothing is downloaded; "
                         "convert or download the model into a local directory first)")
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise ReproError(f"pretrained {path} is incomplete: missing model_index.json")
    index = read_model_index(path)
    missing = []
    for comp in required:
        entry = index.get(comp)
        folder = os.path.join(path, comp)
        if not isinstance(entry, list) or entry[0] is None:
            missing.append(f"{comp} (not in model_index.json)")
            continue
        if entry[0] not in LIBRARIES:
            raise ReproError(f"pretrained {path}: {comp} comes from library {entry[0]!r}; "
                             f"only {', '.join(sorted(LIBRARIES))} are loaded")
        if not os.path.isdir(folder):
            missing.append(f"{comp}/")
            continue
        files = os.listdir(folder)
        if comp == "tokenizer":
            if not ({"vocab.json", "merges.txt"} <= set(files) or "vocab.txt" in files):
                missing.append(f"{comp}/vocab.json+merges.txt or vocab.txt")
        elif comp == "scheduler":
            if "scheduler_config.json" not in files:
                missing.append(f"{comp}/scheduler_config.json")
        else:
            if "config.json" not in files:
                missing.append(f"{comp}/config.json")
            if not any(f.endswith(WEIGHT_EXTS) for f in files):
                missing.append(f"{comp}/ weights (*.safetensors or *.pdparams)")
    if missing:
        raise ReproError(f"pretrained {path} is incomplete: missing {', '.join(missing)}")
    return index


def pretrained_identity(spec):
    """'<model.pretrained> sha256:<dir_identity>' of a checked pretrained directory, for provenance."""
    path = resolve_pretrained(spec)
    check_pretrained(path)
    return f"{spec} sha256:{dir_identity(path)}"


def builtin_dir(name, writer):
    """~/.cache/repro/models/<name> (or under $REPRO_DATA_DIR), written by writer(path) on
    first use into a temporary folder and renamed into place, so a half-written one never counts."""
    from repro.download import resolve_data_dir
    path = os.path.join(resolve_data_dir(None, "models"), name)
    if not os.path.isdir(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(path))
        writer(tmp)
        try:
            os.replace(tmp, path)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def resolve_pretrained(spec):
    """A local directory for model.pretrained; builtin:tiny-sd is written to the cache on first use."""
    if spec == TINY_SD:
        return builtin_dir(f"tiny-sd-v{TINY_SD_VERSION}", write_tiny_sd)
    return os.path.abspath(os.path.expanduser(spec)) if spec else spec


def write_tiny_sd(path, seed=0):
    """A tiny Stable Diffusion (UNet 32/64 channels, an 8x VAE like SD's, a
    5-layer CLIP text encoder with a byte-level tokenizer) saved with
    save_pretrained. Deterministic for a seed; its images are noise until trained."""
    import paddle
    ppdiffusers()
    from ppdiffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from ppdiffusers.transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from metrics.clip import write_byte_bpe_tokenizer_files

    tok_dir = os.path.join(path, "_tok")
    vocab = write_byte_bpe_tokenizer_files(tok_dir)
    with quiet():
        tokenizer = CLIPTokenizer(os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt"),
                                  model_max_length=77)
        paddle.seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=64, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=[8, 16, 16, 16], in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
            norm_num_groups=8, layers_per_block=1, sample_size=512)
        eos = vocab["<|endoftext|>"]
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos, vocab_size=len(vocab),
            hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5,
            max_position_embeddings=77, layer_norm_eps=1e-5))
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.save_pretrained(path)
    shutil.rmtree(tok_dir)


def load_component(path, name, index=None):
    """One component (unet, vae, text_encoder, tokenizer, scheduler) of a checked directory."""
    index = index or read_model_index(path)
    library, class_name = index[name]
    ppdiffusers()
    module = importlib.import_module(LIBRARIES[library])
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ReproError(f"pretrained {path}: {name} class {class_name!r} is not in {LIBRARIES[library]}")
    try:
        with quiet():
            return cls.from_pretrained(os.path.join(path, name))
    except ReproError:
        raise
    except Exception as e:  # a damaged file surfaces as many exception types
        raise ReproError(f"pretrained {path}: cannot load {name} ({type(e).__name__}: {str(e).splitlines()[0]})") \
            from None


def load_pipeline(path, scheduler=""):
    """A StableDiffusionPipeline from a checked local directory, no safety checker
    (generation here is for evaluation), progress bars off."""
    index = check_pretrained(path)
    StableDiffusionPipeline = ppdiffusers().StableDiffusionPipeline
    parts = {name: load_component(path, name, index) for name in ("unet", "vae", "text_encoder", "tokenizer",
                                                                   "scheduler")}
    if scheduler:
        parts["scheduler"] = make_scheduler(scheduler, parts["scheduler"].config)
    with quiet():
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def with_scheduler(pipe, name):
    """The same pipeline with another sampler ('' keeps its own)."""
    if not name:
        return pipe
    with quiet():
        pipe = type(pipe)(**{**pipe.components, "scheduler": make_scheduler(name, pipe.scheduler.config)})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_scheduler(name, config):
    if name not in SCHEDULERS:
        raise ReproError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")
    with quiet():
        return getattr(ppdiffusers(), SCHEDULERS[name]).from_config(config)


# ---------------------------------------------------------------- LoRA

def attach_lora(unet, rank, targets=LORA_TARGETS):
    """A LoRALinearLayer on every attention projection named in targets; returns {module name: layer}.
    The up projection starts at zero, so the model starts as the base model."""
    ppdiffusers()
    from ppdiffusers.models.lora import LoRALinearLayer

    layers = {}
    for name, module in unet.named_sublayers():
        if hasattr(module, "set_lora_layer") and any(name.endswith("." + t) for t in targets):
            layer = LoRALinearLayer(module.weight.shape[0], module.weight.shape[1], rank=rank)
            module.set_lora_layer(layer)
            layers[name] = layer
    if not layers:
        raise ReproError(f"no attention projections named {', '.join(targets)} in this UNet to attach LoRA to")
    return layers


def lora_to_ppdiffusers(tensors):
    """{module name: {'down.weight': array, 'up.weight': array}} -> the keys load_lora_weights reads."""
    return {f"unet.{name}.lora.{k}": v for name, parts in tensors.items() for k, v in parts.items()}


# ---------------------------------------------------------------- image-caption data

def _fit(img, size, center_crop):
    """Resize the shorter side to size (bicubic) and crop the centre (or the top-left) to size x size."""
    from PIL import Image
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = ((w - size) // 2, (h - size) // 2) if center_crop else (0, 0)
    return np.asarray(img.crop((left, top, left + size, top + size)), np.uint8)


def read_image_folder(path, size, caption_column="text", center_crop=True):
    """(images uint8 [N, size, size, 3], captions [N], file names [N]) sorted by file name.

    Captions come from metadata.jsonl (one {"file_name": ..., caption_column: ...}
    per line) if present, else from <image stem>.txt beside each image."""
    if not os.path.isdir(path):
        raise ReproError(f"image folder not found: {path}")
    meta = os.path.join(path, "metadata.jsonl")
    pairs = []
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise ReproError(f"{meta} line {i} is not JSON") from None
                if not isinstance(row, dict) or "file_name" not in row or caption_column not in row:
                    raise ReproError(f"{meta} line {i} needs 'file_name' and {caption_column!r}")
                pairs.append((str(row["file_name"]), str(row[caption_column])))
    else:
        for name in sorted(os.listdir(path)):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTS:
                continue
            txt = os.path.join(path, stem + ".txt")
            if not os.path.isfile(txt):
                raise ReproError(f"{os.path.join(path, name)} has no caption: add {stem}.txt or a metadata.jsonl")
            with open(txt, encoding="utf-8") as f:
                pairs.append((name, f.read().strip()))
    if not pairs:
        raise ReproError(f"no captioned images in {path} (want *.png/*.jpg with a .txt each, or a metadata.jsonl)")
    pairs.sort()
    images = []
    for name, _ in pairs:
        full = os.path.join(path, name)
        if os.path.dirname(os.path.normpath(name)).startswith("..") or os.path.isabs(name):
            raise ReproError(f"{meta}: file_name {name!r} points outside the folder")
        images.append(read_image(full, size, center_crop))
    return np.stack(images), [c for _, c in pairs], [n for n, _ in pairs]


def read_image(path, size, center_crop=True):
    """One image file as uint8 [size, size, 3] (see _fit); a missing or damaged file is a ReproError."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            return _fit(img, size, center_crop)
    except FileNotFoundError:
        raise ReproError(f"image listed but not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ReproError(f"{path} is not a readable image ({e})") from None


SKIES = (("蓝色", "blue", (90, 150, 230)), ("橙色", "orange", (240, 150, 70)), ("紫色", "purple", (110, 70, 150)))
HILLS = (("绿色", "green", (50, 130, 60)), ("灰色", "grey", (110, 110, 120)))


def builtin_landscapes(n, size, seed=0):
    """Procedural landscapes (sky, two ridges, a sun) with captions, half in
    Chinese: a built-in theme for smoke runs, no download. Returns (images, captions)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, captions = [], []
    for i in range(n):
        (sky_zh, sky_en, sky), (hill_zh, hill_en, hill) = SKIES[i % 3], HILLS[(i // 3) % 2]
        img = np.empty((size, size, 3), np.float64)
        img[:] = np.array(sky) * (0.75 + 0.25 * yy[..., None])
        sun = (xx - rng.uniform(0.2, 0.8)) ** 2 + (yy - rng.uniform(0.1, 0.3)) ** 2 < 0.006
        img[sun] = (250, 240, 200)
        for depth, shade in ((0.55, 0.8), (0.7, 1.0)):
            phase, freq = rng.uniform(0, 6.3), rng.uniform(4, 9)
            ridge = depth + 0.08 * np.sin(freq * xx + phase) + 0.03 * np.sin(3 * freq * xx)
            img[yy > ridge] = np.array(hill) * shade
        img += rng.normal(0, 6, img.shape)
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        captions.append(f"一幅山水画，{sky_zh}的天空，{hill_zh}的山" if i % 2 == 0
                        else f"a landscape painting, {sky_en} sky over {hill_en} hills")
    return np.stack(images), captions


def tokenize(tokenizer, captions):
    ids = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="np").input_ids
    return np.asarray(ids, np.int64)


# ---------------------------------------------------------------- generation

@contextlib.contextmanager
def keep_rng():
    """Sampling inside training must not move the training RNG: ppdiffusers'
    Generator.manual_seed calls paddle.seed (the CPU generator too, on a GPU), so
    the states are saved and put back."""
    import paddle
    states = [(None, paddle.get_rng_state())]
    if paddle.device.get_device() != "cpu":
        states.append(("cpu", paddle.get_rng_state("cpu")))
    try:
        yield
    finally:
        for device, state in states:
            if device:
                paddle.set_rng_state(state, device=device)
            else:
                paddle.set_rng_state(state)


def generate(pipe, prompts, n=1, size=512, seed=0, steps=30, guidance=7.5, negative_prompt=""):
    """Images uint8 [len(prompts) * n, size, size, 3] and one record per image
    (prompt, seed); image k of prompt p is drawn from seed + p * n + k."""
    import paddle

    images, records = [], []
    for p, prompt in enumerate(prompts):
        for k in range(n):
            s = seed + p * n + k
            with quiet():
                out = pipe(prompt, negative_prompt=negative_prompt or None, height=size, width=size,
                           num_inference_steps=steps, guidance_scale=guidance,
                           generator=paddle.Generator().manual_seed(s), output_type="np").images[0]
            images.append(np.clip(np.round(out * 255), 0, 255).astype(np.uint8))
            records.append({"prompt": prompt, "seed": s})
    return np.stack(images), records


def grid(images, cols):
    """A [rows*h, cols*w, 3] mosaic of equally sized images."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * h, cols * w, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return out


# ---------------------------------------------------------------- training and scoring

def loss_step(model, optimizer, batch, amp):
    """Paper.train_step for a model whose forward(*batch) returns the loss."""
    with amp.autocast():
        loss = model(*batch)
    amp.backward_step(loss, optimizer)
    optimizer.clear_grad()
    return loss


def diffusion_loss(unet, noise_scheduler, latents, encoder_hidden_states, prior_weight=0.0):
    """The epsilon- (or v-) prediction MSE of Ho et al. 2020 / Rombach et al. 2022,
    as ppdiffusers' train_text_to_image scripts compute it: noise and timesteps
    come from paddle's global RNG, which the harness reseeds from (seed, step)
    at every checkpoint, so a resumed run draws the same ones.
    With prior_weight > 0 the batch's second half is DreamBooth's class prior
    (Ruiz et al. 2023, eq. 2): loss = mse(instance) + prior_weight * mse(prior)."""
    import paddle
    import paddle.nn.functional as F

    noise = paddle.randn(latents.shape, dtype=latents.dtype)
    t = paddle.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), dtype="int64")
    noisy = noise_scheduler.add_noise(latents, noise, t)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    pred = unet(noisy, t, encoder_hidden_states).sample if encoder_hidden_states is not None \
        else unet(noisy, t).sample
    if prior_weight:
        pred, pred_prior = pred.chunk(2)
        target, target_prior = target.chunk(2)
        return F.mse_loss(pred.cast("float32"), target.cast("float32")) + \
            prior_weight * F.mse_loss(pred_prior.cast("float32"), target_prior.cast("float32"))
    return F.mse_loss(pred.cast("float32"), target.cast("float32"))


def to_model_input(x):
    """uint8 [B, H, W, 3] -> float32 [B, 3, H, W] in [-1, 1], as the SD training scripts normalise."""
    return x.transpose(0, 3, 1, 2).astype(np.float32) * (2.0 / 255.0) - 1.0


def random_flip(x, rng):
    """Horizontal flip of each image with probability 1/2 ([B, 3, H, W])."""
    flip = rng.random(len(x)) < 0.5
    x = x.copy()
    x[flip] = x[flip][..., ::-1]
    return x


BUILTIN_CLIP = "builtin:tiny-clip"


_CACHE = {}


def _cached(key, make):
    """Metric models load once per process (a real CLIP or Inception takes seconds)."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def clip_embedder(spec, pinned_sha256=""):
    return _cached(("clip", spec, pinned_sha256), lambda: _clip_embedder(spec, pinned_sha256))


def _clip_embedder(spec, pinned_sha256=""):
    """The CLIP model for the CLIP score: a local paddlenlp CLIP / Chinese CLIP
    directory, or builtin:tiny-clip (random, smoke runs only). With
    pinned_sha256 its weights must be exactly those (CLIPEmbedder.weights_sha256)."""
    from metrics.clip import CLIPEmbedder, write_tiny_clip
    if spec == BUILTIN_CLIP:
        spec = builtin_dir("tiny-clip-v1", write_tiny_clip)
    if not spec:
        raise ReproError(f"eval.clip_model is empty: give a local CLIP model directory (or {BUILTIN_CLIP} "
                         "for smoke runs)")
    embedder = CLIPEmbedder(spec)
    if pinned_sha256 and embedder.weights_sha256 != pinned_sha256:
        raise ReproError(f"eval.clip_model {spec} is not the registered CLIP (weights sha256 "
                         f"{pinned_sha256[:12]}...): {embedder.identity}")
    return embedder


def fid_extractor(weights, pinned_sha256=""):
    return _cached(("fid", weights, pinned_sha256), lambda: _fid_extractor(weights, pinned_sha256))


def _fid_extractor(weights, pinned_sha256=""):
    """The FID Inception; weights '' is a seeded random network (smoke runs only).
    With pinned_sha256 the weights must be exactly that file (pytorch-fid's .pth)."""
    from metrics.inception import InceptionFeatures
    if pinned_sha256 and not weights:
        raise ReproError("eval.fid_weights is empty, but this experiment's FID needs pytorch-fid's Inception "
                         f"weights (sha256 {pinned_sha256[:12]}...); pass -o eval.fid_weights=PATH")
    extractor = InceptionFeatures(weights or None)
    if pinned_sha256 and not extractor.identity.endswith(f"sha256:{pinned_sha256}"):
        raise ReproError(f"eval.fid_weights {weights} is not the registered FID Inception "
                         f"(sha256 {pinned_sha256[:12]}...): {extractor.identity}")
    return extractor


def score_images(images, prompts=None, reference=None, fid=None, clip=None, inception_score=False):
    """{metric: value} for generated images: fid (against reference images),
    clip_score (plain cosine, MLPerf's scale) and inception_score."""
    from metrics.generative import FID, CLIPScore, InceptionScore
    out = {}
    if fid is not None:
        gen_pool, gen_probs = fid(images)
        if reference is not None:
            ref_pool, _ = fid(reference)
            m = FID(ref_pool)
            m.update(gen_pool)
            out["fid"] = m.compute()
        if inception_score:
            m = InceptionScore(splits=min(10, len(images)))
            m.update(gen_probs)
            out["inception_score"] = m.compute()[0]
    if clip is not None and prompts is not None:
        m = CLIPScore(scale=1.0)
        m.update(clip.images(images), clip.texts(list(prompts)))
        out["clip_score"] = m.compute()
    return out


def generate_unconditional(pipe, n=1, seed=0, steps=1000):
    """Images uint8 [n, H, W, 3] from an unconditional pipeline (DDPM); image k from seed + k."""
    import paddle

    images = []
    for k in range(n):
        with quiet():
            out = pipe(batch_size=1, generator=paddle.Generator().manual_seed(seed + k),
                       num_inference_steps=steps, output_type="np").images[0]
        images.append(np.clip(np.round(out * 255), 0, 255).astype(np.uint8))
    return np.stack(images)
