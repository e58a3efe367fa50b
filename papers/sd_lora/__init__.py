"""Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models, applied
to latent diffusion (Rombach et al. 2022, Stable Diffusion) as ppdiffusers'
train_text_to_image_lora example does: rank-r updates on the UNet's attention
projections, everything else frozen. Judged as MLPerf Training judges Stable
Diffusion (FID <= 90, CLIP score >= 0.15). See README.md."""
from dataclasses import dataclass, field

import numpy as np

from repro.metrics import build_metric
from repro.config import TrainConfig
from repro.diffusion import finetune, images as image_io, lora, ppd, pretrained, sampling
from repro.errors import ReproError
from repro.paper import Data, Experiment, GenerativePaper
from repro.targets import Target

MLPERF = "MLPerf Training Stable Diffusion quality thresholds (the documented default for text-to-image runs)"
BUILTIN_DATA = "builtin:landscapes"


@dataclass
class ModelConfig:
    pretrained: str = ""  # a local ppdiffusers Stable Diffusion directory, or builtin:tiny-sd
    lora_rank: int = 4
    gradient_checkpointing: bool = False


@dataclass
class DataConfig:
    path: str = ""  # an image-caption folder (metadata.jsonl or .txt captions), or builtin:landscapes
    resolution: int = 512
    caption_column: str = "text"
    center_crop: bool = True
    random_flip: bool = True
    eval_count: int = 4  # the last N images by file name are held out: FID reference and evaluation prompts
    builtin_count: int = 24


@dataclass
class EvalConfig(sampling.SamplingConfig):
    """How evaluation samples and scores (repro.diffusion.sampling.SamplingConfig), and FID's network."""
    fid_weights: str = ""  # pytorch-fid's pt_inception-2015-12-05 .pth (or its conversion); '' = random, smoke only
    fid_weights_sha256: str = ""  # when set, fid_weights must be this file


@dataclass
class SDLoRAConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_captioned(cfg, tokenizer):
    """(train images, train token ids, eval images, eval captions, description) from cfg.data."""
    dc = cfg.data
    if dc.path == BUILTIN_DATA:
        images, captions = image_io.builtin_landscapes(dc.builtin_count, dc.resolution, seed=0)
        what = f"{BUILTIN_DATA}: {dc.builtin_count} procedural landscapes, captions half in Chinese"
    elif not dc.path:
        raise ReproError("data.path is empty: give an image-caption folder (-o data.path=DIR) "
                         f"or {BUILTIN_DATA}")
    else:
        images, captions, _ = image_io.read_image_folder(dc.path, dc.resolution, dc.caption_column,
                                                          dc.center_crop)
        what = f"{dc.path}: {len(images)} captioned images"
    if not 0 <= dc.eval_count < len(images):
        raise ReproError(f"data.eval_count {dc.eval_count} leaves no training images out of {len(images)}")
    cut = len(images) - dc.eval_count
    return images[:cut], image_io.tokenize(tokenizer, captions[:cut]), images[cut:], captions[cut:], what


def _layer_class():
    import paddle

    class LoRAFineTune(paddle.nn.Layer):
        def __init__(self, cfg):
            super().__init__()
            pipe = finetune.load_base(cfg)
            # not registered as a sublayer: the base stays frozen and out of
            # parameters(), the optimizer and checkpoints; only the LoRA layers are in
            self.__dict__["pipe"] = pipe
            finetune.freeze(pipe)
            layers = lora.attach_lora(pipe.unet, cfg.model.lora_rank)
            self.names = list(layers)
            self.lora = paddle.nn.LayerDict({k.replace(".", "__"): v for k, v in layers.items()})
            if cfg.model.gradient_checkpointing:
                pipe.unet.enable_gradient_checkpointing()
                pipe.unet.train()  # ppdiffusers checkpoints only in training mode
            DDPMScheduler = ppd.ppdiffusers().DDPMScheduler
            with ppd.quiet():
                self.__dict__["noise_scheduler"] = DDPMScheduler.from_config(pipe.scheduler.config)

        def forward(self, pixels, ids):
            pipe = self.pipe
            with paddle.no_grad():
                latents = pipe.vae.encode(pixels).latent_dist.sample() * pipe.vae.config.scaling_factor
                states = pipe.text_encoder(ids)[0]
            return sampling.diffusion_loss(pipe.unet, self.noise_scheduler, latents, states)

        def lora_weights(self):
            """{'unet.<module>.lora.down.weight': numpy}: the layout pipe.load_lora_weights() reads."""
            return lora.lora_to_ppdiffusers(
                {n: {k: v.numpy() for k, v in self.lora[n.replace(".", "__")].state_dict().items()}
                 for n in self.names})

    return LoRAFineTune


class SDLoRAPaper(GenerativePaper):
    name = "sd_lora"
    title = "LoRA fine-tuning of Stable Diffusion (text-to-image)"
    citation = ("Hu, E. et al. LoRA: Low-Rank Adaptation of Large Language Models. ICLR 2022; "
                "Rombach, R. et al. High-Resolution Image Synthesis with Latent Diffusion Models. CVPR 2022")
    url = "https://arxiv.org/abs/2106.09685"
    config_class = SDLoRAConfig
    experiments = (
        Experiment("lora", "LoRA (rank 4) on SD v1.5's UNet attention, an image-caption folder at 512x512",
                   "lora.yaml",
                   (Target("val_fid", 90.0, "lower", 0.0, MLPERF + ": FID <= 90"),
                    Target("val_clip_score", 0.15, "higher", 0.0, MLPERF + ": CLIP score >= 0.15"))),
    )
    config_dir = "../../configs/sd_lora"
    default_experiment = "lora"
    path_keys = ("model.pretrained", "data.path", "eval.fid_weights", "eval.clip_model")
    pins = {"fid_extractor": ("eval.fid_weights", "eval.fid_weights_sha256"),
            "clip_model": ("eval.clip_model", "eval.clip_model_sha256")}

    def build_model(self, cfg):
        return _layer_class()(cfg)

    def build_data(self, cfg):
        path = pretrained.resolve_pretrained(cfg.model.pretrained)
        tokenizer = pretrained.load_component(path, "tokenizer", pretrained.check_pretrained(path))
        train_x, train_ids, eval_x, eval_captions, what = read_captioned(cfg, tokenizer)
        eval_ids = image_io.tokenize(tokenizer, eval_captions) if eval_captions else np.zeros((0, 1), np.int64)
        return Data(train=(train_x, train_ids), eval={"val": (eval_x, eval_ids)},
                    info={"captions": {"val": eval_captions}, "description": what},
                    preprocess=image_io.to_model_input,
                    augment=image_io.random_flip if cfg.data.random_flip else None)

    def metrics(self, cfg):
        return {"fid": build_metric("fid"), "clip_score": build_metric("clip_score", scale=1.0)}

    def provenance(self, cfg):
        return finetune.text_to_image_provenance(cfg)

    def evaluate(self, model, cfg, data, dist):
        return finetune.evaluate_text_to_image(model.pipe, cfg, data)

    def pipeline(self, model, cfg):
        return model.pipe

    def publish(self, model, cfg, out):
        """Write the LoRA weights where pipe.load_lora_weights(out) finds them; returns their kind."""
        import paddle
        StableDiffusionPipeline = ppd.ppdiffusers().StableDiffusionPipeline
        weights = {k[len("unet."):]: paddle.to_tensor(v) for k, v in model.lora_weights().items()}
        with ppd.quiet():
            StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=weights, safe_serialization=True)
        return "lora"


PAPER = SDLoRAPaper()
