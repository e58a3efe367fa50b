"""A worker task on a node of a Ray cluster (repro.boundary.executor ships it here): the
node's side of the wall, which trusts nothing it is sent beyond what the judge would.

What arrives: the task's input files and its request as bytes, each with its sha256; the
read-only folders the judge carries (a submission's snapshot, plugin copies) as tars of
regular files, each with its sha256; the worker's environment; the folders it expects at
the same path here (a datasets folder: the judge checks every data fingerprint). Every
sha256 is checked before anything runs. Then the SAME sandboxed worker runs here as on the
judge's machine (repro.boundary.sandbox, with every part of the wall): a node whose sandbox
is unusable refuses the task in one line, never running it unconfined. What goes back is
the worker's output stream as bytes (up to the judge's cap), its status and the end of
its standard error: the judge takes and checks the stream with the code that checks a
local worker's (repro.boundary.task), and decides everything. Nothing here writes a
receipt, a ledger or a verdict.

run() returns a refusal ({"refused": one line}) rather than raising: a refusal is the
task's own answer, which Ray must not retry; only a node or worker process that dies is
retried (Ray's max_retries).
"""
import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import tempfile

from repro.boundary import exchange, sandbox
from repro.boundary.sandbox import IN, OUT, Sandbox, readable_by_workers, worker_argv
from repro.machine import cpu
from repro.errors import ReproError


def sha256(data):
    """The hex sha256 of bytes: what every shipped file and folder travels with."""
    return hashlib.sha256(data).hexdigest()


class Refused(ReproError):
    pass


def platform():
    """This node's CPU as the run headers record one: (model, instruction sets)."""
    return list(cpu())


def warm():
    """Nothing but a Ray worker process made ready (Ray, this module and the sandbox's probe
    loaded) while the judge prepares its first tasks: the executor sends one per task it will
    have in flight, so the review's first tasks do not wait for worker processes to start."""
    sandbox.why_unusable()
    return socket.gethostname()


def run(task, *tars):
    """The Ray task's body: {"refused": why} or the worker's {"code", "flooded", "stderr",
    "timed_out", "stream", "truncated", "node"}. tars: the carried folders' bytes, in the order
    of task["carried"] (arguments of their own, so that Ray hands over the bytes it holds)."""
    node = socket.gethostname()
    try:
        inputs, req = arrived(task, tars)
        box = _sandbox(task["sandboxed"])
        missing = [p for p in task["readonly"] if not os.path.isdir(p) and not os.path.isfile(p)]
        if missing:
            raise Refused(f"this node has no {missing[0]} (every node holds the datasets folder and --local "
                          f"files at the judge's paths)")
    except Refused as e:
        return {"refused": str(e), "node": node}
    work = tempfile.mkdtemp(prefix="repro-node-")
    try:
        binds = _unpack(task["carried"], tars, work) + [(p, p) for p in task["readonly"]]
        in_dir, scratch = os.path.join(work, "in"), os.path.join(work, "out")
        os.mkdir(in_dir)
        os.mkdir(scratch)
        exchange.stage_inputs(in_dir, inputs, req)
        inside_in, inside_out = (IN, OUT) if box.enabled else (in_dir, scratch)
        got = {}
        ended = box.run(worker_argv(inside_in, inside_out), readonly=binds + [(in_dir, inside_in)], env=task["env"],
                        timeout=task["timeout"], host_out=None if box.enabled else scratch,
                        receive=lambda stream: _collect(stream, task["cap"], got))
        return {"code": ended.code, "flooded": ended.flooded, "stderr": ended.stderr, "timed_out": ended.timed_out,
                "stream": got.get("stream", b""), "truncated": got.get("truncated", False), "node": node}
    except Refused as e:
        return {"refused": str(e), "node": node}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def arrived(task, tars=()):
    """(inputs {name: bytes}, request) once every shipped file matches its sha256; else Refused."""
    inputs = {}
    for name, (data, digest) in task["inputs"].items():
        if not isinstance(data, bytes) or sha256(data) != digest:
            raise Refused(f"the input {str(name)[:60]} does not match its sha256: refused before running anything")
        inputs[name] = data
    request, digest = task["request"]
    if not isinstance(request, bytes) or sha256(request) != digest:
        raise Refused("the request does not match its sha256: refused before running anything")
    if len(tars) != len(task["carried"]):
        raise Refused("the carried folders did not all arrive: refused before running anything")
    for (inside, digest), data in zip(task["carried"], tars):
        if not isinstance(data, bytes) or sha256(data) != digest:
            raise Refused(f"the folder for {inside[:80]} does not match its sha256: refused before running anything")
    return inputs, json.loads(request.decode("utf-8"))


def _sandbox(sandboxed):
    """The sandbox the judge's own would be: bubblewrap with the whole wall, else (--no-sandbox
    on the judge) none. A node that cannot give the wall refuses."""
    if not sandboxed:
        return Sandbox("off")
    why = sandbox.why_unusable()
    if why:
        raise Refused(f"no usable sandbox on this node: {why}")
    return Sandbox("required")


def _unpack(carried, tars, work):
    """[(folder here, the path the worker sees it at)]: each tar unpacked into a fresh folder
    (regular files and folders only, every name inside it), readable by the worker."""
    binds = []
    for i, ((inside, _), data) in enumerate(zip(carried, tars)):
        dest = os.path.join(work, f"carried-{i}")
        os.mkdir(dest)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            for m in members:
                if not (m.isreg() or m.isdir()) or m.name.startswith("/") or ".." in m.name.split("/"):
                    raise Refused(f"the folder for {inside[:80]} holds {m.name[:60]!r}, not a regular file or folder")
            tar.extractall(dest, members=members, filter="data")
        readable_by_workers(dest)
        binds.append((dest, inside))
    return binds


def _collect(stream, cap, got):
    """The worker's stream, up to cap bytes (more than the judge could take is cut, said so,
    and the worker stopped)."""
    buf = bytearray()
    while len(buf) <= cap:
        chunk = stream.read(min(1 << 20, cap + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    got["truncated"] = len(buf) > cap
    got["stream"] = bytes(buf[:cap])
    if got["truncated"]:
        return exchange.OutputError("too much", f"its outputs are over the {cap:,} bytes the judge takes from it")
    return None
