"""The metric models of generated images (the FID Inception, a CLIP) and
scoring with them; the arithmetic itself is metrics/generative.py's."""
import os

import numpy as np

from repro.align.convert import convert
from repro.align.torch_load import load_state_dict
from repro.diffusion.ppd import cached
from repro.diffusion.tiny import BUILTIN_CLIP, builtin_dir
from repro.errors import ReproError
from repro.metrics.clip import CLIPEmbedder, write_tiny_clip
from repro.metrics.generative import FID, CLIPScore, InceptionScore
from repro.strict import sha256_file


def clip_embedder(spec, pinned_sha256=""):
    return cached(("clip", spec, pinned_sha256), lambda: _clip_embedder(spec, pinned_sha256))


def _clip_embedder(spec, pinned_sha256=""):
    """The CLIP model for the CLIP score: a local paddlenlp CLIP / Chinese CLIP
    directory, or builtin:tiny-clip (random, smoke runs only). With
    pinned_sha256 its weights must be exactly those (CLIPEmbedder.weights_sha256)."""
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
    return cached(("fid", weights, pinned_sha256), lambda: _fid_extractor(weights, pinned_sha256))


def _fid_extractor(weights, pinned_sha256=""):
    """The FID Inception; weights '' is a seeded random network (smoke runs only).
    With pinned_sha256 the weights must be exactly that file (pytorch-fid's .pth)."""
    from repro.metrics.inception import InceptionFeatures
    if pinned_sha256 and not weights:
        raise ReproError("eval.fid_weights is empty, but this experiment's FID needs pytorch-fid's Inception "
                         f"weights (sha256 {pinned_sha256[:12]}...); pass -o eval.fid_weights=PATH")
    if weights:
        weights = os.fspath(weights)
        extractor = InceptionFeatures(fid_weights(weights), f"pt_inception-2015-12-05 sha256:{sha256_file(weights)}")
    else:
        extractor = InceptionFeatures()
    if pinned_sha256 and not extractor.identity.endswith(f"sha256:{pinned_sha256}"):
        raise ReproError(f"eval.fid_weights {weights} is not the registered FID Inception "
                         f"(sha256 {pinned_sha256[:12]}...): {extractor.identity}")
    return extractor


def score_images(images, prompts=None, reference=None, fid=None, clip=None, inception_score=False):
    """{metric: value} for generated images: fid (against reference images),
    clip_score (plain cosine, MLPerf's scale) and inception_score."""
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




def fid_weights(path):
    """{paddle key: float32 array} of the FID Inception from pytorch-fid's .pth (read
    without torch and without running code from the file) or from a Paddle-layout
    .safetensors (convert_fid_weights); a ReproError naming the file otherwise."""
    from repro.metrics.inception import FID_WEIGHTS_URL, FIDInceptionV3

    if not os.path.exists(path):
        raise ReproError(f"{path}: Inception weights file not found (download pytorch-fid's {FID_WEIGHTS_URL})")
    raw = load_state_dict(path)  # ReproError with the file name for anything unreadable
    model = FIDInceptionV3()
    target = model.state_dict()
    if any(k.endswith("running_mean") for k in raw):  # PyTorch layout: rename BN buffers, transpose fc
        state, report = convert(raw, model)
        unused, unmatched, bad = report.unused, report.unmatched, [k for k, *_ in report.mismatched]
    else:  # already Paddle layout (convert_fid_weights output)
        state = {k: v for k, v in raw.items() if k in target}
        unused = [k for k in raw if k not in target]
        unmatched = [k for k in target if k not in raw]
        bad = [k for k in state if tuple(state[k].shape) != tuple(target[k].shape)]
    if unused or unmatched or bad:
        parts = [f"{what}: {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                 for what, keys in (("missing", unmatched), ("unexpected", unused), ("wrong shape", bad)) if keys]
        raise ReproError(f"{path}: not the FID Inception-v3 weights ({'; '.join(parts)})")
    return {k: np.asarray(v, dtype="float32") for k, v in state.items()}


def convert_fid_weights(src_pth, dst_safetensors):
    """pytorch-fid's .pth -> a .safetensors of the Paddle state dict, read once more quickly by fid_weights."""
    from safetensors.numpy import save_file

    src_pth = os.fspath(src_pth)
    save_file(fid_weights(src_pth), os.fspath(dst_safetensors),
              metadata={"source": os.path.basename(src_pth), "source_sha256": sha256_file(src_pth)})
    return dst_safetensors
