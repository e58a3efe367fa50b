"""Ho, Jain and Abbeel 2020, Denoising Diffusion Probabilistic Models (NeurIPS).
Unconditional CIFAR-10 (Section 4, Appendix B): T = 1000 linear betas
1e-4..0.02, epsilon prediction, a 35.7M-parameter UNet, Adam 2e-4, batch 128,
800k steps, EMA 0.9999; Table 1: FID 3.17, Inception Score 9.46 ± 0.11.

Built on ppdiffusers' UNet2DModel, DDPMScheduler and DDPMPipeline, configured
as diffusers' conversion of the authors' checkpoint (google/ddpm-cifar10-32).
See README.md."""
from dataclasses import dataclass, field

import numpy as np

from repro.metrics import build_metric
from repro.config import TrainConfig, choice
from repro.data import synthetic_images
from repro.diffusion import images as image_io, ppd, sampling, scoring
from repro.errors import ReproError
from repro.paper import Data, Experiment, GenerativePaper
from repro.targets import Target

SOURCE = "Ho et al. 2020, Table 1 (CIFAR-10, unconditional)"
# priors, not measured here: the paper's own IS spread (± 0.11); FID has none
# published, 0.3 is about the seed-to-seed spread DDPM re-implementations report
FID_TOLERANCE = 0.3
IS_TOLERANCE = 0.11
REFERENCE = "train_ref"  # the paper's FID is against the 50k training images
REFERENCE_SPLIT = (50000, None)  # sample count; the sha256 gets registered once the official archive is at hand


@dataclass
class ModelConfig:
    """UNet2DModel as google/ddpm-cifar10-32: ch 128, ch_mult (1, 2, 2, 2), 2 res blocks per
    resolution, self-attention at 16x16 (and in the middle block), dropout 0.1."""
    sample_size: int = 32
    block_out_channels: list[int] = field(default_factory=lambda: [128, 256, 256, 256])
    layers_per_block: int = 2
    # image sizes (pixels) whose down and up blocks have self-attention
    attention_resolutions: list[int] = field(default_factory=lambda: [16])
    dropout: float = 0.1
    norm_num_groups: int = 32
    ema_decay: float = 0.9999

    def validate(self):
        ch = self.block_out_channels
        if not ch or any(c <= 0 or c % self.norm_num_groups for c in ch):
            raise ReproError(f"config: model.block_out_channels {ch} must be positive multiples of "
                             f"model.norm_num_groups {self.norm_num_groups}")
        if self.layers_per_block <= 0:
            raise ReproError(f"config: model.layers_per_block must be > 0, got {self.layers_per_block}")
        if self.sample_size % 2 ** (len(ch) - 1):
            raise ReproError(f"config: model.sample_size {self.sample_size} is not divisible by "
                             f"2^{len(ch) - 1} (one halving per level after the first)")
        sizes = resolutions(self)
        bad = [r for r in self.attention_resolutions if r not in sizes]
        if bad:
            raise ReproError(f"config: model.attention_resolutions {bad} are not among this UNet's "
                             f"resolutions {sizes}")
        if not 0 <= self.dropout < 1:
            raise ReproError(f"config: model.dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.ema_decay < 1:
            raise ReproError(f"config: model.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class DiffusionConfig:
    """The forward process and the ancestral sampler (DDPMScheduler)."""
    timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    # sigma_t^2 = beta_t (fixed_large, the authors' CIFAR-10 setting) or the posterior
    # variance (fixed_small); the paper: "both had similar results"
    variance_type: str = choice("fixed_large", ("fixed_large", "fixed_small"))
    clip_sample: bool = True  # clip the predicted x_0 to [-1, 1] while sampling, as the authors' sampler

    def validate(self):
        if self.timesteps <= 0 or not 0 < self.beta_start < self.beta_end < 1:
            raise ReproError("config: diffusion needs timesteps > 0 and 0 < beta_start < beta_end < 1")


@dataclass
class OptimConfig:
    """What TrainConfig has no field for."""
    grad_clip_norm: float = 1.0  # global-norm gradient clipping (0 = off)

    def validate(self):
        if self.grad_clip_norm < 0:
            raise ReproError(f"config: optim.grad_clip_norm must be >= 0, got {self.grad_clip_norm}")


@dataclass
class DataConfig:
    source: str = choice("cifar10", ("cifar10", "synthetic"))
    random_flip: bool = True
    synthetic_count: int = 8  # synthetic images of model.sample_size (smoke runs)


@dataclass
class EvalConfig:
    """Sampling with the EMA UNet, then FID against the training images and the Inception Score."""
    num_samples: int = 50000
    steps: int = 1000  # ancestral sampling steps; 1000 = the paper's sampler
    seed: int = 0  # sample k is drawn from seed + k
    fid_weights: str = ""  # pytorch-fid's pt_inception-2015-12-05 .pth (or its conversion); '' = random, smoke only
    fid_weights_sha256: str = ""  # when set, fid_weights must be this file

    def validate(self):
        if self.num_samples < 2:
            raise ReproError(f"config: eval.num_samples must be >= 2 (FID fits a covariance), got {self.num_samples}")
        if self.steps <= 0:
            raise ReproError(f"config: eval.steps must be > 0, got {self.steps}")


@dataclass
class DDPMConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def resolutions(mc):
    """The image size at each level of the UNet, e.g. [32, 16, 8, 4]."""
    return [mc.sample_size // 2 ** i for i in range(len(mc.block_out_channels))]


def unet_kwargs(mc):
    """UNet2DModel arguments. Besides the config's knobs, the fixed ones are those of
    diffusers' conversion of the authors' TF checkpoint: positional time embedding
    with sin first and shift 1, GroupNorm eps 1e-6, TF-style (0, 1) padding before a
    strided downsampling conv, single-head attention over all channels."""
    sizes = resolutions(mc)
    attn = [s in mc.attention_resolutions for s in sizes]
    return {
        "sample_size": mc.sample_size, "in_channels": 3, "out_channels": 3,
        "block_out_channels": tuple(mc.block_out_channels), "layers_per_block": mc.layers_per_block,
        "down_block_types": tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        "up_block_types": tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        "dropout": mc.dropout, "norm_num_groups": mc.norm_num_groups, "norm_eps": 1e-6, "act_fn": "silu",
        "attention_head_dim": None, "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1,
        "time_embedding_type": "positional", "center_input_sample": False, "mid_block_scale_factor": 1,
        "add_attention": True}


def make_scheduler(dc):
    DDPMScheduler = ppd.ppdiffusers().DDPMScheduler
    with ppd.quiet():
        return DDPMScheduler(num_train_timesteps=dc.timesteps, beta_start=dc.beta_start, beta_end=dc.beta_end,
                             beta_schedule="linear", variance_type=dc.variance_type, clip_sample=dc.clip_sample,
                             prediction_type="epsilon")


def to_model_input(x):
    """uint8 [B, 3, H, W] -> float32 in [-1, 1] (the paper scales pixels linearly to [-1, 1])."""
    return x.astype(np.float32) * (2.0 / 255.0) - 1.0


def _layer_class():
    import paddle

    class DDPMModel(paddle.nn.Layer):
        """unet (trained) and ema (its exponential moving average, never trained);
        both are sublayers, so checkpoints and resume carry the EMA exactly."""

        def __init__(self, cfg):
            super().__init__()
            UNet2DModel = ppd.ppdiffusers().UNet2DModel
            kwargs = unet_kwargs(cfg.model)
            with ppd.quiet():
                self.unet = UNet2DModel(**kwargs)
                self.ema = UNet2DModel(**kwargs)
            self.ema.set_state_dict(self.unet.state_dict())
            for p in self.ema.parameters():
                p.stop_gradient = True  # no gradients, no optimizer state
            self.ema_decay = cfg.model.ema_decay
            self.grad_clip_norm = cfg.optim.grad_clip_norm
            self.__dict__["noise_scheduler"] = make_scheduler(cfg.diffusion)
            params = dict(self.unet.named_parameters())
            self.__dict__["_pairs"] = [(e, params[n]) for n, e in self.ema.named_parameters()]

        def forward(self, x):
            """The paper's L_simple: || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2."""
            return sampling.diffusion_loss(self.unet, self.noise_scheduler, x, None)

        @paddle.no_grad()
        def update_ema(self):
            """ema <- decay * ema + (1 - decay) * unet, after every optimizer step (no warmup of the decay)."""
            d = self.ema_decay
            for e, p in self._pairs:
                paddle.assign(e * d + p.astype(e.dtype) * (1.0 - d), output=e)

    return DDPMModel


class DDPMPaper(GenerativePaper):
    name = "ddpm"
    title = "Denoising Diffusion Probabilistic Models"
    citation = "Ho, J., Jain, A. and Abbeel, P. Denoising Diffusion Probabilistic Models. NeurIPS 2020"
    url = "https://arxiv.org/abs/2006.11239"
    config_class = DDPMConfig
    experiments = (
        Experiment("cifar10", "unconditional CIFAR-10 32x32, 800k steps; FID vs the training set and IS "
                              "from 50k EMA samples (1000-step ancestral sampler)",
                   "cifar10.yaml",
                   (Target(f"{REFERENCE}_fid", 3.17, "lower", FID_TOLERANCE, f"{SOURCE}: FID 3.17"),
                    Target(f"{REFERENCE}_inception_score", 9.46, "higher", IS_TOLERANCE,
                           f"{SOURCE}: IS 9.46 ± 0.11")),
                   eval_data={REFERENCE: REFERENCE_SPLIT}),
    )
    config_dir = "../../configs/ddpm"
    default_experiment = "cifar10"
    path_keys = ("eval.fid_weights",)
    pins = {"fid_extractor": ("eval.fid_weights", "eval.fid_weights_sha256")}

    def build_model(self, cfg):
        amp = cfg.train.amp
        if amp.enabled and amp.level == "O2":
            raise ReproError("ddpm: train.amp.level O2 would keep the EMA weights in low precision "
                             "(a 0.9999 decay is 1.0 in bfloat16); use O1")
        return _layer_class()(cfg)

    def build_data(self, cfg):
        dc, size = cfg.data, cfg.model.sample_size
        if dc.source == "synthetic":
            x, _ = synthetic_images(dc.synthetic_count, (3, size, size), seed=1)
            what = f"synthetic: {dc.synthetic_count} images {size}x{size}"
        else:
            if size != 32:
                raise ReproError(f"ddpm: CIFAR-10 images are 32x32, but model.sample_size is {size}")
            from repro.datasets.cifar10 import load_cifar10
            x, _ = load_cifar10("train")
            what = "CIFAR-10 train (50,000 images)"
        y = np.zeros(len(x), np.int64)  # unconditional: the labels are not used
        return Data(train=(x, y), eval={REFERENCE: (x, y)}, info={"description": what},
                    preprocess=to_model_input, augment=image_io.random_flip if dc.random_flip else None)

    def train_step(self, model, optimizer, batch, amp, cfg):
        import paddle
        net = getattr(model, "_layers", model)  # under paddle.DataParallel
        if net.grad_clip_norm and optimizer._grad_clip is None:
            # applied inside optimizer.step(), i.e. after GradScaler unscales the gradients
            optimizer._grad_clip = paddle.nn.ClipGradByGlobalNorm(net.grad_clip_norm)
        x, _ = batch
        with amp.autocast():
            loss = model(x)
        amp.backward_step(loss, optimizer)
        optimizer.clear_grad()
        net.update_ema()
        return loss

    def metrics(self, cfg):
        return {"fid": build_metric("fid"), "inception_score": build_metric("inception_score")}

    def provenance(self, cfg):
        ec = cfg.eval
        return {"fid_extractor": scoring.fid_extractor(ec.fid_weights, ec.fid_weights_sha256).identity}

    def pipeline(self, model, cfg):
        """DDPMPipeline over the EMA UNet and the run's DDPMScheduler (ancestral sampling)."""
        DDPMPipeline = ppd.ppdiffusers().DDPMPipeline
        net = getattr(model, "_layers", model)
        net.ema.eval()
        with ppd.quiet():
            pipe = DDPMPipeline(unet=net.ema, scheduler=make_scheduler(cfg.diffusion))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def evaluate(self, model, cfg, data, dist):
        """eval.num_samples EMA samples, sample k from seed eval.seed + k (each rank
        draws its share), then FID against each eval split and the Inception Score."""
        ec = cfg.eval
        if ec.steps > cfg.diffusion.timesteps:
            raise ReproError(f"eval.steps {ec.steps} exceeds diffusion.timesteps {cfg.diffusion.timesteps}")
        pipe = self.pipeline(model, cfg)
        with sampling.keep_rng():  # sampling reseeds paddle's RNG; training must not notice
            mine = list(range(dist.rank, ec.num_samples, dist.world))
            if dist.world == 1:
                images = sampling.generate_unconditional(pipe, ec.num_samples, ec.seed, ec.steps)
            else:
                own = [sampling.generate_unconditional(pipe, 1, ec.seed + k, ec.steps)[0] for k in mine]
                parts = [(i, im) for i, im in dist.gather((mine, own)) if i]
                order = np.concatenate([i for i, _ in parts])
                if not np.array_equal(np.sort(order), np.arange(ec.num_samples)):
                    raise RuntimeError("evaluation samples of the ranks do not cover eval.num_samples exactly once")
                images = np.stack([im for _, ims in parts for im in ims])[np.argsort(order)]
        fid = scoring.fid_extractor(ec.fid_weights, ec.fid_weights_sha256)
        results, samples = {}, {}
        for split, (reference, _) in data.eval.items():
            scores = scoring.score_images(images, reference=reference.transpose(0, 2, 3, 1), fid=fid,
                                            inception_score=True)
            results.update({f"{split}_{k}": v for k, v in scores.items()})
            samples[split] = len(images)
        return results, samples


PAPER = DDPMPaper()
