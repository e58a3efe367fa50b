"""Built-in tiny models for tests and smoke runs: a tiny randomly initialised
Stable Diffusion and CLIP, written on first use into a cache folder (no hub).
No result can rest on them; verify refuses full runs that use them."""
import os
import shutil
import tempfile

from repro.boundary.sandbox import readable_by_workers
from repro.datasets.download import resolve_data_dir
from repro.diffusion.ppd import ppdiffusers, quiet
from repro.metrics.clip import write_byte_bpe_tokenizer_files

TINY_SD = "builtin:tiny-sd"
TINY_SD_VERSION = "2"  # bump when write_tiny_sd changes, so caches are rebuilt (2: attention at 1/4 of the latent)
BUILTIN_CLIP = "builtin:tiny-clip"


class _rng_kept:
    """Python's, NumPy's and Paddle's global generators as they were, after the body (writers
    seed them to make their files deterministic)."""

    def __enter__(self):
        import random

        import numpy as np
        import paddle
        self.state = random.getstate(), np.random.get_state(), paddle.get_rng_state()

    def __exit__(self, *exc):
        import random

        import numpy as np
        import paddle
        random.setstate(self.state[0])
        np.random.set_state(self.state[1])
        paddle.set_rng_state(self.state[2])
        return False


def builtin_dir(name, writer):
    """~/.cache/repro/models/<name> (or under $REPRO_DATA_DIR), written by writer(path) on
    first use into a temporary folder and renamed into place, so a half-written one never counts."""
    path = os.path.join(resolve_data_dir(None, "models"), name)
    if not os.path.isdir(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(path))
        with _rng_kept():  # a cache miss must not move the caller's random streams (a run's initial weights)
            writer(tmp)
        readable_by_workers(tmp)  # the sandboxed worker is another user
        try:
            os.replace(tmp, path)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        readable_by_workers(path)  # written 0700/0600 by an earlier release
    return path



def write_tiny_sd(path, seed=0):
    """A tiny Stable Diffusion (UNet 32/32/64 channels with cross-attention only at its
    lowest resolution, a quarter of the latent's side: 16x16 for 512x512 works, where
    attention over 32x32 took most of a draw; an 8x VAE like SD's; a 5-layer CLIP text
    encoder with a byte-level tokenizer) saved with save_pretrained. Deterministic for a
    seed; its images are noise until trained."""
    import paddle
    ppdiffusers()
    from ppdiffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from ppdiffusers.transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


    tok_dir = os.path.join(path, "_tok")
    vocab = write_byte_bpe_tokenizer_files(tok_dir)
    with quiet():
        tokenizer = CLIPTokenizer(os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt"),
                                  model_max_length=77)
        paddle.seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=64, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8)
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


