"""One worker task, from the judge's side: the run's environment and read-only folders
(Worker), the submission's time budget (Budget), its inputs staged into a fresh folder,
the worker started in the sandbox (repro.boundary.sandbox) and the outputs it was asked
for read back from its stream (Staged), or one line saying why not.

Where the worker runs is its executor's choice (Worker.executor): LocalExecutor below,
this machine, the default; or repro.boundary.executor's Ray one, a node of a cluster,
which hands back the same stream as bytes. Either way the stream is taken and checked
here, by the same code (Staged._receive, _check), and everything decided stays here.

A worker's failure reaches pages and status files as a fixed category and a digest
(`the worker crashed (digest 3f2a9c1b0e4d)`): its own words are a channel a hostile
worker chooses, so they go only to Worker.last_words (the maintainers' log), and into
the line itself only where the code is trusted (the user's own runs).
"""
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass

from repro.boundary import exchange
from repro.boundary.sandbox import IN, OUT, worker_argv
from repro.datasets.download import ENV as DATA_ENV
from repro.machine import cpu as this_cpu
from repro.errors import ReproError

OUTPUT_BYTES = 1 << 30  # what the judge takes back from one worker unless its caller says otherwise


class Budget:
    """A submission's time over all its workers (seconds, None: no budget), and what failed
    in it: once a worker timed out, no other worker of the submission is started.
    A worker reserves the seconds it may take until it ends, so that the workers in flight
    never hold more than is left; with `parallel` workers at once, each one started takes
    at most an equal part of what no running worker holds, so the next one is not refused."""

    def __init__(self, seconds=None, parallel=1):
        self.seconds, self.used, self.reserved, self.timed_out = seconds, 0.0, 0.0, None
        self.parallel, self.running = max(1, int(parallel)), 0
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
            got = min(want, left / max(1, self.parallel - self.running))
            if got < 1:
                raise ReproError(f"the worker ran out of the submission's time budget ({self.seconds:g} s over "
                                 f"all its workers)")
            self.reserved += got
            self.running += 1
            return got

    def finish(self, granted, seconds, timed_out):
        with self.lock:
            if self.seconds is not None:
                self.reserved -= granted
                self.running -= 1
            self.used += seconds
            if timed_out:
                self.timed_out = "a worker timed out"


@dataclass(frozen=True)
class Needs:
    """What a task asks of the machine that runs it, from its run's own record: a GPU (the run
    was made on one), the run's CPU as (model, instruction sets) where the judge compares its
    results bit for bit (None: any CPU), and memory in bytes (None: none asked for)."""
    gpu: bool = False
    cpu: tuple = None
    memory: int = None


class LocalExecutor:
    """Worker tasks on this machine (the default; nothing to install): the inputs staged into a
    fresh folder, the worker run in this machine's sandbox, its stream handed to receive.
    An executor has this one method (repro.boundary.executor.RayExecutor is the other): it
    lives here, beside Staged, so that a task's own module needs nothing above the sandbox."""

    where = "this machine"

    def unmatched(self, cpu):
        """Why a run made on `cpu` (model, instruction sets) may differ in its last bits here:
        this machine's CPU is another; None where it is the same."""
        here = this_cpu()
        if tuple(cpu) == here:
            return None
        return (f"the run was made on {cpu[0]} ({cpu[1] or 'no ISA recorded'}), this machine is {here[0]} "
                f"({here[1]}): results differ in the last bits across CPUs")

    def execute(self, staged, timeout, receive):
        """Run staged's worker for at most timeout seconds; its standard output goes to
        receive(stream). Returns the sandbox's Ended."""
        worker = staged.worker
        in_dir = tempfile.mkdtemp(prefix="repro-in-")
        scratch = None if worker.sandbox.enabled else tempfile.mkdtemp(prefix="repro-work-")
        try:
            exchange.stage_inputs(in_dir, staged.inputs, staged.req)
            inside_in, inside_out = (IN, OUT) if worker.sandbox.enabled else (in_dir, scratch)
            return worker.sandbox.run(worker_argv(inside_in, inside_out), readonly=worker.readonly + [(in_dir, inside_in)],
                                      env=worker.env, timeout=timeout, host_out=scratch, receive=receive)
        finally:
            shutil.rmtree(in_dir, ignore_errors=True)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    def close(self):
        """Nothing to stop here (a Ray executor leaves its cluster)."""


LOCAL = LocalExecutor()


class Worker:
    """What a run's workers need to import its paper: environment and read-only folders.
    trusted: the paper is the harness's own or the user's (not a submission under review),
    so a generative paper's own scores may be taken and a failing worker's words shown.
    The datasets folder the harness itself resolves (data_dir, else $REPRO_DATA_DIR, else
    ~/.cache/repro where it exists) is mounted read-only at its own path and named to the
    worker, whose HOME is elsewhere.
    executor: where its tasks run (LOCAL, or a cluster: repro.boundary.executor); carry: the
    folders of readonly a remote node gets from this machine (a submission's snapshot, plugin
    copies); every other one (a datasets folder, a --local model) it must hold at the same path."""

    def __init__(self, sandbox, env=None, readonly=(), trusted=True, data_dir=None, budget=None, last_words=None,
                 executor=LOCAL, carry=()):
        self.sandbox, self.env, self.readonly, self.trusted = sandbox, dict(env or {}), list(readonly), trusted
        self.executor, self.carry = executor, [os.path.abspath(c) for c in carry]
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

    def __init__(self, worker, req, inputs, timeout, outputs=(), out_bytes=OUTPUT_BYTES, needs=Needs()):
        self.worker, self.req, self.inputs, self.timeout = worker, req, inputs, timeout
        self.outputs, self.out_bytes = set(outputs) | {"result.json", "error.txt"}, out_bytes
        self.needs = needs  # what a cluster must give the task (a GPU, the run's CPU, memory)

    def run(self):
        budget = self.worker.budget
        granted = budget.start(self.timeout)
        out_dir = tempfile.mkdtemp(prefix="repro-out-")
        t0, ended = time.perf_counter(), None
        try:
            ended = self.worker.executor.execute(self, granted, lambda stream: self._receive(stream, out_dir))
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
