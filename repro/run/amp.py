"""Mixed precision: train.amp {enabled, level O1|O2, dtype float16|bfloat16}.

float16 gets dynamic loss scaling (paddle.amp.GradScaler) on an accelerator,
whose state is saved in checkpoints so a resumed run scales as an uninterrupted
one (Paddle's scaler does nothing on the CPU, so there float16 runs unscaled);
bfloat16 has float32's range and needs none. Disabled, every call is a plain pass-through.
"""
import contextlib
import json


class Amp:
    def __init__(self, cfg):
        import paddle
        self.cfg = cfg
        # Paddle 3.3.1's auto_cast/decorate act on CUDA, XPU and custom devices only
        self.cpu_noop = cfg.enabled and paddle.get_device() == "cpu"
        self.scaler = None
        if cfg.enabled and cfg.dtype == "float16":
            import paddle
            scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15)
            # Paddle's scaler acts only on GPU/XPU; on the CPU it disables itself
            self.scaler = scaler if scaler.is_enable() else None

    def decorate(self, model, optimizer):
        """O2 keeps the parameters in low precision (with float32 master weights)."""
        if self.cfg.enabled and self.cfg.level == "O2":
            import paddle
            return paddle.amp.decorate(models=model, optimizers=optimizer, level="O2", dtype=self.cfg.dtype)
        return model, optimizer

    def autocast(self):
        if not self.cfg.enabled:
            return contextlib.nullcontext()
        import paddle
        return paddle.amp.auto_cast(enable=True, level=self.cfg.level, dtype=self.cfg.dtype)

    def backward_step(self, loss, optimizer):
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()

    def state(self):
        if self.scaler is None:
            return None
        return json.dumps({k: v.tolist() if hasattr(v, "tolist") else v for k, v in self.scaler.state_dict().items()})

    def load_state(self, text):
        if self.scaler is not None and text:
            self.scaler.load_state_dict(json.loads(text))
