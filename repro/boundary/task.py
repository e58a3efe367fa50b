"""One worker task, from the judge's side: the run's environment and read-only folders
(Worker), the submission's time budget (Budget), its inputs staged into a fresh folder,
the worker started in the sandbox (repro.boundary.sandbox) and the outputs it was asked
for read back from its stream (Staged), or one line saying why not.

A worker's failure reaches pages and status files as a fixed category and a digest
(`the worker crashed (digest 3f2a9c1b0e4d)`): its own words are a channel a hostile
worker chooses, so they go only to Worker.last_words (the maintainers' log), and into
the line itself only where the code is trusted (the user's own runs).
"""
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time

from repro.boundary import exchange
from repro.boundary.sandbox import IN, OUT, worker_argv
from repro.datasets.download import ENV as DATA_ENV
from repro.errors import ReproError

OUTPUT_BYTES = 1 << 30  # what the judge takes back from one worker unless its caller says otherwise
_STAGED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


class Budget:
    """A submission's time over all its workers (seconds, None: no budget), and what failed
    in it: once a worker timed out, no other worker of the submission is started."""

    def __init__(self, seconds=None):
        self.seconds, self.used, self.reserved, self.timed_out = seconds, 0.0, 0.0, None
        self.lock = threading.Lock()

    def start(self, want):
        """The seconds a worker that wants `want` may take; a ReproError if none are left."""
        with self.lock:
            if self.timed_out:
                raise ReproError(f"the worker was not started: {self.timed_out} earlier in this submission")
            if self.seconds is None:
                return want
            left = self.seconds - self.used - self.reserved
            if left < 1:
                raise ReproError(f"the worker ran out of the submission's time budget ({self.seconds:g} s over "
                                 f"all its workers)")
            got = min(want, left)
            self.reserved += got
            return got

    def finish(self, granted, seconds, timed_out):
        with self.lock:
            if self.seconds is not None:
                self.reserved -= granted
            self.used += seconds
            if timed_out:
                self.timed_out = "a worker timed out"


class Worker:
    """What a run's workers need to import its paper: environment and read-only folders.
    trusted: the paper is the harness's own or the user's (not a submission under review),
    so a generative paper's own scores may be taken and a failing worker's words shown.
    The datasets folder the harness itself resolves (data_dir, else $REPRO_DATA_DIR, else
    ~/.cache/repro where it exists) is mounted read-only at its own path and named to the
    worker, whose HOME is elsewhere."""

    def __init__(self, sandbox, env=None, readonly=(), trusted=True, data_dir=None, budget=None, last_words=None):
        self.sandbox, self.env, self.readonly, self.trusted = sandbox, dict(env or {}), list(readonly), trusted
        self.budget = budget or Budget()
        # [(digest, the worker's own last words)]: for the maintainers' log only
        self.last_words = last_words if last_words is not None else []
        data_dir = data_dir or os.environ.get(DATA_ENV) or os.path.expanduser(os.path.join("~", ".cache", "repro"))
        if os.path.isdir(data_dir):
            data_dir = os.path.abspath(data_dir)
            self.readonly.append((data_dir, data_dir))
            self.env[DATA_ENV] = data_dir


class Staged:
    """One worker task: its inputs copied into a fresh input folder (the request names them by
    file name), the sandbox, and its outputs: (answer, output folder) or a ReproError.
    outputs: the file names the judge asked for (besides result.json and error.txt); nothing
    else is taken, and no more than out_bytes in all."""

    def __init__(self, worker, req, inputs, timeout, outputs=(), out_bytes=OUTPUT_BYTES):
        self.worker, self.req, self.inputs, self.timeout = worker, req, inputs, timeout
        self.outputs, self.out_bytes = set(outputs) | {"result.json", "error.txt"}, out_bytes

    def run(self):
        budget = self.worker.budget
        granted = budget.start(self.timeout)
        in_dir = tempfile.mkdtemp(prefix="repro-in-")
        out_dir = tempfile.mkdtemp(prefix="repro-out-")
        scratch = None if self.worker.sandbox.enabled else tempfile.mkdtemp(prefix="repro-work-")
        t0, ended = time.perf_counter(), None
        try:
            self._stage(in_dir)
            inside_in, inside_out = (IN, OUT) if self.worker.sandbox.enabled else (in_dir, scratch)
            ended = self.worker.sandbox.run(
                worker_argv(inside_in, inside_out), readonly=self.worker.readonly + [(in_dir, inside_in)],
                env=self.worker.env, timeout=granted, host_out=scratch,
                receive=lambda stream: self._receive(stream, out_dir))
            self._check(ended, granted, out_dir)
            answer = exchange.read_result(os.path.join(out_dir, "result.json"), "the worker's answer")
            if not isinstance(answer, dict):
                raise ReproError("the worker wrote malformed output (its answer is not a mapping)")
            return answer, out_dir
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        finally:
            budget.finish(granted, time.perf_counter() - t0, ended is not None and ended.timed_out)
            shutil.rmtree(in_dir, ignore_errors=True)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    def _stage(self, in_dir):
        os.chmod(in_dir, 0o755)  # the worker is another user
        for name, src in self.inputs.items():
            if not _STAGED.match(name):
                raise ReproError(f"an input name the worker cannot be given: {name[:60]!r}")
            shutil.copyfile(src, os.path.join(in_dir, name))
            os.chmod(os.path.join(in_dir, name), 0o444)
        req = dict(self.req, staged=sorted(self.inputs))
        if "artifact.json" in self.inputs:
            req["artifact_file"] = "artifact.json"
        exchange.write_request(os.path.join(in_dir, "request.json"), req)
        os.chmod(os.path.join(in_dir, "request.json"), 0o444)

    def _receive(self, stream, out_dir):
        try:
            return exchange.receive_outputs(stream, out_dir, self.outputs, self.out_bytes)
        except exchange.OutputError as e:
            return e

    def _check(self, ended, granted, out_dir):
        if ended.flooded:
            raise ReproError("the worker wrote too much output (over the cap on its standard error)")
        if ended.timed_out:
            raise ReproError(f"the worker timed out (after {granted:g} s)")
        if isinstance(ended.received, exchange.OutputError) and ended.received.kind == "empty":
            raise ReproError(self._crashed(ended, out_dir))  # it ended before writing anything: its words say why
        if isinstance(ended.received, exchange.OutputError):
            kind = ended.received.kind
            raise ReproError(f"the worker wrote {'too much' if kind == 'too much' else 'malformed'} output "
                             f"({ended.received})")
        if ended.code != 0 or not os.path.lexists(os.path.join(out_dir, "result.json")):
            raise ReproError(self._crashed(ended, out_dir))

    def _crashed(self, ended, out_dir):
        said = ""
        try:
            said = exchange.read_text(os.path.join(out_dir, "error.txt"), "error.txt", 4096)
        except ReproError:
            pass
        if not said:
            lines = [ln.strip() for ln in ended.stderr.splitlines() if ln.strip()]
            said = lines[-1] if lines else ""
        said = "".join(c if c.isprintable() else " " for c in said)[:300]
        digest = hashlib.sha256(f"{ended.code}\0{said}\0{ended.stderr}".encode()).hexdigest()[:12]
        self.worker.last_words.append((digest, f"status {ended.code}: {said}\n{ended.stderr}"))
        if self.worker.trusted and said:
            return f"the worker crashed (status {ended.code}): {said}"
        return f"the worker crashed (status {ended.code}; digest {digest})"
