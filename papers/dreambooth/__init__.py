"""Ruiz et al. 2023, DreamBooth: Fine Tuning Text-to-Image Diffusion Models for
Subject-Driven Generation (CVPR). The whole UNet is fine-tuned on a few images
of a subject bound to a rare identifier ("a sks dog"), with the class-specific
prior-preservation loss (eq. 2): class images the frozen base model generated
from the class prompt ("a dog") are trained on alongside, weight lambda = 1.
Scored as the paper's Table 1: CLIP-I (generated vs real subject images) and
CLIP-T (generated images vs their prompts). See README.md."""
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field

import numpy as np

from repro.metrics import build_metric
from repro.config import TrainConfig
from repro.diffusion import finetune, images as image_io, ppd, pretrained, sampling, scoring, tiny
from repro.errors import ReproError
from repro.paper import Data, Experiment, GenerativePaper
from repro.targets import Target

SOURCE = "Ruiz et al. 2023, Table 1 (DreamBooth, Stable Diffusion; mean over 30 subjects x 25 prompts)"
TOLERANCE = 0.03  # a prior: one subject against the paper's 30-subject mean; not measured here
BUILTIN = "builtin:landscapes"


@dataclass
class ModelConfig:
    pretrained: str = ""
    gradient_checkpointing: bool = False


@dataclass
class DataConfig:
    instance_path: str = ""  # a folder of the subject's images (no captions needed), or builtin:landscapes
    instance_prompt: str = "a photo of sks dog"
    class_prompt: str = "a photo of dog"
    class_path: str = ""  # where class images are kept; '' = a cache folder named by base model and prompt
    num_class_images: int = 200
    class_steps: int = 50  # sampling steps for the class images
    prior_loss_weight: float = 1.0
    resolution: int = 512
    center_crop: bool = True
    builtin_count: int = 4


@dataclass
class EvalConfig(sampling.SamplingConfig):
    """How evaluation samples (repro.diffusion.sampling.SamplingConfig): the paper's prompts, four images each."""
    prompts: typing.List[str] = field(default_factory=lambda: ["a sks dog in the snow", "a sks dog on the beach"])
    steps: int = 50
    images_per_prompt: int = 4


@dataclass
class DreamBoothConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_instances(dc):
    if dc.instance_path == BUILTIN:
        return image_io.builtin_landscapes(dc.builtin_count, dc.resolution, seed=3)[0]
    if not dc.instance_path:
        raise ReproError(f"data.instance_path is empty: give a folder of the subject's images or {BUILTIN}")
    if not os.path.isdir(dc.instance_path):
        raise ReproError(f"data.instance_path not found: {dc.instance_path}")
    names = sorted(n for n in os.listdir(dc.instance_path) if n.lower().endswith(image_io.IMAGE_EXTS))
    if not names:
        raise ReproError(f"no images in {dc.instance_path}")
    return np.stack([image_io.read_image(os.path.join(dc.instance_path, n), dc.resolution, dc.center_crop)
                     for n in names])


def class_images(cfg, base_dir):
    """The prior-preservation set: num_class_images from the frozen base model and
    the class prompt, image i from seed i, kept as PNGs so later runs reuse them
    (as the diffusers script does); generated only when some are missing."""
    from PIL import Image
    dc = cfg.data
    key = hashlib.sha256(json.dumps([pretrained.dir_identity(base_dir), dc.class_prompt, dc.resolution,
                                     dc.class_steps]).encode()).hexdigest()[:16]
    path = dc.class_path or tiny.builtin_dir(f"dreambooth-class-{key}", lambda p: None)
    os.makedirs(path, exist_ok=True)
    names = [f"class_{i:05d}.png" for i in range(dc.num_class_images)]
    missing = [i for i, n in enumerate(names) if not os.path.isfile(os.path.join(path, n))]
    if missing:
        print(f"generating {len(missing)} class images for {dc.class_prompt!r} into {path}", flush=True)
        pipe = pretrained.load_pipeline(base_dir)
        for i in missing:
            img, _ = sampling.generate(pipe, [dc.class_prompt], 1, dc.resolution, i, dc.class_steps, 7.5)
            tmp = os.path.join(path, f".{names[i]}.tmp")
            Image.fromarray(img[0]).save(tmp, format="PNG")
            os.replace(tmp, os.path.join(path, names[i]))
    return np.stack([image_io.read_image(os.path.join(path, n), dc.resolution) for n in names])


def _layer_class():
    import paddle

    class DreamBoothFineTune(paddle.nn.Layer):
        def __init__(self, cfg):
            super().__init__()
            pipe = finetune.load_base(cfg)
            self.__dict__["pipe"] = pipe  # the VAE and text encoder stay frozen and out of checkpoints
            finetune.freeze(pipe)
            self.unet = pipe.unet  # registered: trained and checkpointed whole
            for p in self.unet.parameters():
                p.stop_gradient = False
            self.unet.train()
            if cfg.model.gradient_checkpointing:
                self.unet.enable_gradient_checkpointing()
            self.prior_weight = cfg.data.prior_loss_weight
            DDPMScheduler = ppd.ppdiffusers().DDPMScheduler
            with ppd.quiet():
                self.__dict__["noise_scheduler"] = DDPMScheduler.from_config(pipe.scheduler.config)

        def forward(self, pixels, ids):
            """pixels [B, 2, 3, H, W] and ids [B, 2, L]: (instance, class) pairs."""
            pipe = self.pipe
            pixels = paddle.concat([pixels[:, 0], pixels[:, 1]])  # instances first, then the prior half
            ids = paddle.concat([ids[:, 0], ids[:, 1]])
            with paddle.no_grad():
                latents = pipe.vae.encode(pixels).latent_dist.sample() * pipe.vae.config.scaling_factor
                states = pipe.text_encoder(ids)[0]
            return sampling.diffusion_loss(self.unet, self.noise_scheduler, latents, states, self.prior_weight)

    return DreamBoothFineTune


def to_pairs_input(x):
    """uint8 [B, 2, H, W, 3] -> float32 [B, 2, 3, H, W] in [-1, 1]."""
    b = x.shape[0]
    return image_io.to_model_input(x.reshape(-1, *x.shape[2:])).reshape(b, 2, 3, *x.shape[2:4])


class DreamBoothPaper(GenerativePaper):
    name = "dreambooth"
    title = "DreamBooth: Fine Tuning Text-to-Image Diffusion Models for Subject-Driven Generation"
    citation = ("Ruiz, N., Li, Y., Jampani, V., Pritch, Y., Rubinstein, M. and Aberman, K. DreamBooth. CVPR 2023")
    url = "https://arxiv.org/abs/2208.12242"
    config_class = DreamBoothConfig
    experiments = (
        Experiment("subject", "DreamBooth with prior preservation on SD v1.5, one subject, 512x512",
                   "subject.yaml",
                   (Target("subject_clip_i", 0.803, "higher", TOLERANCE, SOURCE + ": CLIP-I 0.803"),
                    Target("subject_clip_t", 0.305, "higher", TOLERANCE, SOURCE + ": CLIP-T 0.305"))),
    )
    config_dir = "../../configs/dreambooth"
    default_experiment = "subject"
    path_keys = ("model.pretrained", "data.instance_path", "data.class_path", "eval.clip_model")
    pins = {"clip_model": ("eval.clip_model", "eval.clip_model_sha256")}

    def build_model(self, cfg):
        return _layer_class()(cfg)

    def build_data(self, cfg):
        base_dir = pretrained.resolve_pretrained(cfg.model.pretrained)
        tokenizer = pretrained.load_component(base_dir, "tokenizer", pretrained.check_pretrained(base_dir))
        instances = read_instances(cfg.data)
        prior = class_images(cfg, base_dir)
        n = max(len(instances), len(prior))  # as the diffusers script: each instance cycles against the prior set
        x = np.stack([instances[np.arange(n) % len(instances)], prior[np.arange(n) % len(prior)]], axis=1)
        ids = image_io.tokenize(tokenizer, [cfg.data.instance_prompt, cfg.data.class_prompt])
        y = np.broadcast_to(ids, (n, *ids.shape)).copy()
        return Data(train=(x, y), eval={"subject": (instances, np.zeros((len(instances), 1), np.int64))},
                    info={"prompts": list(cfg.eval.prompts)}, preprocess=to_pairs_input)

    def metrics(self, cfg):
        return {"clip_i": build_metric("clip_image_similarity"), "clip_t": build_metric("clip_score", scale=1.0)}

    def provenance(self, cfg):
        return {"pretrained": pretrained.pretrained_identity(cfg.model.pretrained),
                "clip_model": scoring.clip_embedder(cfg.eval.clip_model, cfg.eval.clip_model_sha256).identity}

    def evaluate(self, model, cfg, data, dist):
        from repro.metrics.generative import CLIPImageSimilarity, CLIPScore
        ec = cfg.eval
        pipe = self.pipeline(model, cfg)
        with sampling.keep_rng():
            images, records = sampling.generate(pipe, ec.prompts, ec.images_per_prompt, ec.size, ec.seed,
                                                 ec.steps, ec.guidance_scale)
        clip = scoring.clip_embedder(ec.clip_model, ec.clip_model_sha256)
        gen = clip.images(images)
        clip_i = CLIPImageSimilarity(clip.images(data.eval["subject"][0]))
        clip_i.update(gen)
        clip_t = CLIPScore(scale=1.0)
        clip_t.update(gen, clip.texts([r["prompt"] for r in records]))
        return {"subject_clip_i": clip_i.compute(), "subject_clip_t": clip_t.compute()}, {"subject": len(images)}

    def pipeline(self, model, cfg):
        return pretrained.with_scheduler(model.pipe, cfg.eval.scheduler)

    def publish(self, model, cfg, out):
        """The whole fine-tuned pipeline, as DreamBooth results are shared."""
        with ppd.quiet():
            model.pipe.save_pretrained(out)
        return "pipeline"


PAPER = DreamBoothPaper()
