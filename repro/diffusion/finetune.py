"""What the Stable Diffusion fine-tunes (LoRA, DreamBooth) share: the frozen
base pipeline, the identities a run logs, and evaluation by generating images
for held-out captions and scoring them."""
from repro.diffusion.pretrained import load_pipeline, pretrained_identity, resolve_pretrained, with_scheduler
from repro.diffusion.sampling import generate, keep_rng
from repro.diffusion.scoring import clip_embedder, fid_extractor, score_images


def load_base(cfg):
    """The pretrained pipeline named by model.pretrained, checked before loading."""
    return load_pipeline(resolve_pretrained(cfg.model.pretrained))


def freeze(pipe):
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.eval()
        for p in part.parameters():
            p.stop_gradient = True


def text_to_image_provenance(cfg):
    """The base model's and the metric models' identities (their paths are free keys)."""
    ec = cfg.eval
    return {"pretrained": pretrained_identity(cfg.model.pretrained),
            "fid_extractor": fid_extractor(ec.fid_weights, ec.fid_weights_sha256).identity,
            "clip_model": clip_embedder(ec.clip_model, ec.clip_model_sha256).identity}


def evaluate_text_to_image(pipe, cfg, data):
    """Generate eval.images_per_prompt images for every held-out caption, then
    FID against the held-out images and the CLIP score against the captions."""
    ec = cfg.eval
    pipe = with_scheduler(pipe, ec.scheduler)
    results, samples = {}, {}
    for split, (reference, _) in data.eval.items():
        prompts = data.info["captions"][split]
        if not prompts:
            continue
        with keep_rng():
            images, _ = generate(pipe, prompts, ec.images_per_prompt, ec.size, ec.seed, ec.steps,
                                 ec.guidance_scale)
        scores = score_images(
            images, prompts=[p for p in prompts for _ in range(ec.images_per_prompt)], reference=reference,
            fid=fid_extractor(ec.fid_weights, ec.fid_weights_sha256),
            clip=clip_embedder(ec.clip_model, ec.clip_model_sha256))
        results.update({f"{split}_{k}": v for k, v in scores.items()})
        samples[split] = len(images)
    return results, samples
