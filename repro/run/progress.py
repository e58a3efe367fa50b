"""A one-line progress bar on a terminal; silent when output is not a terminal
(the train.log lines printed at each log step are the progress there)."""
import sys
import time


def fmt_eta(seconds):
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total, label, stream=sys.stderr):
        self.total, self.label, self.stream = total, label, stream
        self.enabled = stream.isatty()
        self._last = 0.0
        self.shown = False

    def update(self, step, eta, **fields):
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.2 and step != self.total):
            return
        self._last = now
        width = 24
        done = int(width * step / self.total)
        extra = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        self.stream.write(f"\r\033[K{self.label} [{'#' * done}{'.' * (width - done)}] {step}/{self.total}  {extra}  eta {eta}")
        self.stream.flush()
        self.shown = True

    def clear(self):
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
