"""LoRA on a UNet's attention projections, through ppdiffusers' LoRALinearLayer
and set_lora_layer (ppdiffusers 0.29's LoRAAttnProcessor path raises), saved in
the layout pipe.load_lora_weights() reads."""
from repro.diffusion.ppd import ppdiffusers
from repro.errors import ReproError

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


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


