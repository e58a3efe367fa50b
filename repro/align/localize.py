"""Find the first layer whose output diverges between a Paddle model and its
reference (PyTorch) model: forward hooks on every sublayer of both, one forward
pass each on the same input, then compare outputs by layer name in the order
the Paddle layers finished.

Layers are matched by their attribute path (conv1, encoder.layers.0.attn ...),
which a faithful port keeps; `rename` maps reference names to Paddle names where
it does not. A layer called several times in one pass (an RNN cell per time
step) is compared on its first call. A Paddle layer that lays its output out
otherwise than the reference does (a channels-last convolution) says how to
permute it into the reference's layout in its `reference_axes` attribute.
"""
import numpy as np

from repro.align.diff import diff_stats


def _first_array(output, to_numpy):
    while isinstance(output, (tuple, list)):
        if not output:
            return None
        output = output[0]
    try:
        return to_numpy(output)
    except Exception:  # an output that is not a tensor (None, a dict) is skipped
        return None


def _forward_once(model, tensors, no_grad, handles):
    """One forward pass without gradients (the framework's no_grad), then the hooks removed."""
    try:
        with no_grad():
            model(*tensors)
    finally:
        for h in handles:
            h.remove()


def record_paddle(model, inputs):
    import paddle

    outputs, handles = {}, []
    for name, layer in model.named_sublayers():
        def hook(layer, inp, out, name=name):
            if name not in outputs:
                axes = getattr(layer, "reference_axes", None)
                outputs[name] = _first_array(out, lambda t: t.numpy() if axes is None else t.numpy().transpose(axes))
        handles.append(layer.register_forward_post_hook(hook))
    _forward_once(model, [paddle.to_tensor(x) for x in inputs], paddle.no_grad, handles)
    return outputs


def record_torch(model, inputs):
    import torch

    outputs, handles = {}, []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(module, inp, out, name=name):
            if name not in outputs:
                outputs[name] = _first_array(out, lambda t: t.detach().cpu().numpy())
        handles.append(module.register_forward_hook(hook))
    _forward_once(model, [torch.from_numpy(np.asarray(x)) for x in inputs], torch.no_grad, handles)
    return outputs


def first_divergence(paddle_model, torch_model, inputs, threshold=1e-6, method="mean", rename=None):
    """Returns (layer name or None, stats dict, compared layer names in order)."""
    paddle_out = record_paddle(paddle_model, inputs)
    torch_out = {(rename or {}).get(k, k): v for k, v in record_torch(torch_model, inputs).items()}
    compared = []
    for name, p in paddle_out.items():
        t = torch_out.get(name)
        if p is None or t is None:
            continue
        compared.append(name)
        if p.shape != t.shape:
            return name, {"note": f"output shape {p.shape} vs reference {t.shape}"}, compared
        mean, mx, rel = diff_stats(p, t)
        stats = {"mean": mean, "max": mx, "relative": rel}
        if not stats[method] <= threshold:
            return name, stats, compared
    return None, {}, compared
