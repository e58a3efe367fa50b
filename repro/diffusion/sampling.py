"""Training loss and sampling for diffusion models: the epsilon-prediction loss
of Ho et al. 2020 as ppdiffusers' training scripts compute it, and image
generation where image k of prompt p depends on its own seed alone."""
import contextlib

from dataclasses import dataclass

import numpy as np

from repro.config import choice
from repro.diffusion.ppd import quiet
from repro.diffusion.pretrained import SCHEDULERS
from repro.errors import ReproError


@dataclass
class SamplingConfig:
    """How a text-to-image paper's evaluation samples and scores (its eval: config, which a paper
    extends with its own prompts or scores); generation uses the same knobs as repro.diffusion.generate."""
    size: int = 512
    steps: int = 30
    guidance_scale: float = 7.5
    scheduler: str = choice("", ("",) + tuple(SCHEDULERS), "'' keeps the pretrained model's")
    images_per_prompt: int = 1
    seed: int = 0
    clip_model: str = ""  # a local paddlenlp CLIP / Chinese CLIP directory, or builtin:tiny-clip
    clip_model_sha256: str = ""  # when set, clip_model's weights must be this file (a contest pins its CLIP)

    def validate(self):
        for name in ("size", "steps", "images_per_prompt"):
            if getattr(self, name) <= 0:
                raise ReproError(f"config: eval.{name} must be > 0, got {getattr(self, name)}")
        if self.size % 8:
            raise ReproError(f"config: eval.size must be a multiple of 8 (the VAE's factor), got {self.size}")


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



def diffusion_loss(unet, noise_scheduler, latents, encoder_hidden_states, prior_weight=0.0):
    """The epsilon- (or v-) prediction MSE of Ho et al. 2020 / Rombach et al. 2022,
    as ppdiffusers' train_text_to_image scripts compute it: noise and timesteps
    come from paddle's global RNG, which the harness reseeds from (seed, step)
    before every update, so a resumed or replayed run draws the same ones.
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


