"""One worker task, from the judge's side: the run's environment and read-only folders
(Worker), its inputs staged into a fresh folder, the worker started in the sandbox
(repro.boundary.sandbox) and its answer read back (Staged), or one line saying why not."""
import os
import shutil
import tempfile

from repro.boundary.sandbox import worker_argv
from repro.datasets.download import ENV as DATA_ENV
from repro.errors import ReproError
from repro.judge import exchange


class Worker:
    """What a run's workers need to import its paper: environment and read-only folders.
    trusted: the paper is the harness's own or the user's (not a submission under review),
    so a generative paper's own scores may be taken."""

    def __init__(self, sandbox, env=None, readonly=(), trusted=True, data_dir=None):
        self.sandbox, self.env, self.readonly, self.trusted = sandbox, dict(env or {}), list(readonly), trusted
        data_dir = data_dir or os.environ.get(DATA_ENV)
        cache = os.path.expanduser("~/.cache/repro")
        for folder in filter(None, (data_dir, cache if os.path.isdir(cache) else None)):
            folder = os.path.abspath(folder)
            if os.path.isdir(folder):
                self.readonly.append((folder, folder))
        if data_dir:
            self.env[DATA_ENV] = os.path.abspath(data_dir)


def _last_words(out_dir, err, code):
    path = os.path.join(out_dir, "error.txt")
    text = ""
    if os.path.isfile(path) and not os.path.islink(path) and os.lstat(path).st_size < 4096:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    if not text:
        err.seek(0, os.SEEK_END)
        err.seek(max(0, err.tell() - 4096))
        lines = [ln.strip() for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        text = lines[-1] if lines else ""
    text = "".join(c if c.isprintable() else " " for c in text)[:300]
    return f"the worker ended with status {code}" + (f": {text}" if text else "")


class Staged:
    """One worker task: its inputs copied into a fresh input folder (named there in the
    request), a fresh output folder, the sandbox; (answer, output folder) or a ReproError."""

    def __init__(self, worker, req, inputs, timeout):
        self.worker, self.req, self.inputs, self.timeout = worker, req, inputs, timeout

    def run(self):
        in_dir = tempfile.mkdtemp(prefix="repro-in-")
        out_dir = tempfile.mkdtemp(prefix="repro-out-")
        req = dict(self.req)
        try:
            for name, src in self.inputs.items():
                shutil.copyfile(src, os.path.join(in_dir, name))
            req["staged"] = {name: os.path.join(in_dir, name) for name in self.inputs}  # where each input is
            if "artifact.json" in self.inputs:
                req["artifact_file"] = os.path.join(in_dir, "artifact.json")
            if req.get("outputs"):
                req["outputs"] = {k: os.path.join(in_dir, v) if k in ("weights", "inputs") else v
                                  for k, v in req["outputs"].items()}
            req["segments"] = [{**s, "start": os.path.join(in_dir, s["start"]) if s.get("start") else None,
                                "decisions": os.path.join(in_dir, s["decisions"]) if s.get("decisions") else None}
                               for s in req.get("segments") or []]
            exchange.write_request(os.path.join(in_dir, "request.json"), req)
            with tempfile.TemporaryFile() as err:
                code = self.worker.sandbox.run(worker_argv(in_dir, out_dir),
                                               readonly=self.worker.readonly + [(in_dir, in_dir)], out_dir=out_dir,
                                               env=self.worker.env, timeout=self.timeout, stderr=err)
                if code == -9:
                    raise ReproError(f"the worker took longer than {self.timeout} s")
                if code != 0:
                    raise ReproError(_last_words(out_dir, err, code))
            answer = exchange.read_result(os.path.join(out_dir, "result.json"), "the worker's answer")
            if not isinstance(answer, dict):
                raise ReproError("the worker's answer is not a mapping")
            return answer, out_dir
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(in_dir, ignore_errors=True)
