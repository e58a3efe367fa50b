"""Where worker tasks run: this machine (repro.boundary.task.LOCAL, the default) or the nodes
of a Ray cluster (RayExecutor; `--cluster local|auto|ray://HOST:PORT`). Both have one
method, execute(staged, timeout, receive), which runs one sandboxed worker task and hands
its output stream to receive, and returns the sandbox's Ended: the judge (repro.boundary.task
.Staged) then checks that stream and the worker's status with the same code either way.

The Ray one ships a task to a node (repro.boundary.node runs it there): the input files and
the request as bytes with their sha256, the worker's environment, the folders the judge
carries (a submission's snapshot, plugin copies: a tar of regular files with its sha256,
put into Ray's object store once), and the folders the node must hold at the same path (a
datasets folder). The node checks every sha256 before running anything, runs the same
sandboxed worker, and sends the output stream back as bytes. Nothing the judge decides, and
no receipt or ledger, leaves this machine. A task asks for what its run used (task.Needs):
its CPU threads, a GPU where the run was made on one, the peak memory its log records; and
where the judge compares bit for bit, it goes only to the nodes whose CPU (model and
instruction sets, probed on each node once) is the run's. Where no node has it, the task
runs on another and a difference it shows carries that reason (unmatched). A node that dies
mid-task is retried by Ray (max_retries); a task that fails for its own reasons comes back as
that failure, once.

Ray is an optional dependency (the extra [cluster]): imported only when a cluster is asked
for, and its absence is one line.
"""
import contextlib
import importlib.util
import io
import json
import os
import sys
import tarfile
import threading

from repro.boundary import exchange, node
from repro.boundary.sandbox import Ended, harness_roots
from repro.boundary.task import LOCAL
from repro.errors import ReproError

INSTALL = 'pip install "repro-paddle[cluster]"'
RETRIES = 3          # Ray's retries of a task whose node or worker process died
ARRIVAL_SLACK = 600  # seconds beyond the worker's own limit for shipping a task and its answer
TOKEN = "~/.ray/auth_token"  # where `ray start --head` writes the cluster's token (Ray 2.60 authenticates by default)
TOKEN_HINT = (f"a cluster that authenticates needs its head's token here, in {TOKEN} or $RAY_AUTH_TOKEN, "
              "and with RAY_AUTH_MODE=disabled on the head it needs none")
JOIN_TRIES = 3       # joins through Ray Client (RayExecutor._join)
# what Ray Client says when the server the head starts for a join died, or hung, as it started
CLIENT_SERVER_DIED = ("Starting Ray client server failed", "ray client connection timeout")
NODE_LABEL = "ray.io/node-id"  # the label every Ray node carries: a task's label selector names the nodes it may use


def executor_for(cluster, cpus=None, jobs=1):
    """LOCAL for no cluster; else a RayExecutor joined to it ('local': an embedded Ray of `cpus`
    CPUs, default all of this machine's; 'auto' or 'ray://HOST:PORT': a running cluster). Joining
    a running cluster, as many worker processes are made ready as `jobs` tasks will be in flight
    (a review of the example contest: 15.0 s median against 17.9 without, 3 paired repeats); an
    embedded Ray starts its own for its first driver (17.5 against 16.7: not made ready twice)."""
    if cluster is None:
        return LOCAL
    if cluster not in ("local", "auto") and not cluster.startswith("ray://"):
        raise ReproError(f"--cluster {cluster[:80]}: give local, auto or ray://HOST:PORT")
    return RayExecutor(cluster, cpus, warm=0 if cluster == "local" else jobs)


def import_ray():
    """The ray module, or one line saying how to install it."""
    try:
        import ray  # the optional [cluster] extra: only a review through a cluster needs it
    except ImportError:
        raise ReproError(f"--cluster needs Ray, which is not installed here: {INSTALL}") from None
    return ray


class RayExecutor:
    """Worker tasks on a Ray cluster's nodes. runtime_env: Ray's, for every task (a test gives a
    node no bubblewrap with it); node_task: the task's body (a test wraps it to kill its worker)."""

    def __init__(self, cluster, cpus=None, retries=RETRIES, runtime_env=None, node_task=node.run, warm=0):
        if cluster != "local" and "ray" not in sys.modules:
            _send_token()
        ray = self.ray = import_ray()
        self.cluster, self.started, self.joined = cluster, False, False
        if not ray.is_initialized():  # else (a test's) Ray of this process, left to whoever began it
            if cluster == "local":
                with _harness_on_path():  # address "local": a new Ray, even beside a running one
                    ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False,
                             log_to_driver=False)
                self.started = True
            else:
                self._join(cluster)
                self.joined = True
        self.where = f"Ray cluster ({cluster})"
        self.cpus = int(ray.cluster_resources().get("CPU", 0))
        self.remote = ray.remote(max_retries=retries, retry_exceptions=False)(node_task)
        self.runtime_env = runtime_env
        # worker processes started now, while the judge prepares, not by its first tasks (never waited for)
        ready = ray.remote(num_cpus=1, max_retries=0)(node.warm)
        self.warming = [ready.options(**({"runtime_env": runtime_env} if runtime_env else {})).remote()
                        for _ in range(min(int(warm), self.cpus))]
        self.lock, self.shipped, self._platforms = threading.Lock(), {}, None

    def _join(self, cluster):
        """ray.init into a running cluster, or one line saying why not. Through Ray Client a join
        whose server on the head dies or hangs as it starts (a known Ray fault, ray-project/ray#63202:
        about 7% of joins there, 5 of 34 here, and once under the test suite's load a hang until
        Ray's 30-s timeout) is tried again, saying so, up to JOIN_TRIES times. A cluster that wants
        a token this machine lacks times out the same way, so it is told after the last try."""
        ray = self.ray
        if cluster.startswith("ray://") and importlib.util.find_spec("grpc") is None:
            raise ReproError(f"--cluster {cluster}: joining through Ray Client needs Ray's client part, "
                             f"which is not installed here: {INSTALL}")
        for attempt in range(1, JOIN_TRIES + 1):
            try:
                ray.init(address=cluster, log_to_driver=False)
                return
            except (ConnectionError, RuntimeError, ValueError) as e:
                why = [said for said in CLIENT_SERVER_DIED if said in str(e)] if cluster.startswith("ray://") else []
                if attempt < JOIN_TRIES and why:
                    print(f"--cluster {cluster}: the Ray Client server for this review did not start ({why[0]}: a "
                          f"known Ray fault, ray-project/ray#63202, or no token); joining again ({attempt + 1} of "
                          f"{JOIN_TRIES})",
                          file=sys.stderr, flush=True)
                    if ray.is_initialized():
                        ray.shutdown()
                    continue
                raise ReproError(f"--cluster {cluster}: no Ray cluster to join there ({_first_line(e)[:200]}; "
                                 f"{TOKEN_HINT})") from None

    def platforms(self):
        """{node id: ((CPU model, instruction sets), memory in bytes)} of the cluster's nodes with
        CPUs, each CPU as the node itself reads it; probed once, when a task first needs it."""
        with self.lock:
            if self._platforms is None:
                alive = [n for n in self.ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
                probe = self.ray.remote(num_cpus=0)(node.platform)
                refs = [probe.options(label_selector={NODE_LABEL: n["NodeID"]}).remote() for n in alive]
                cpus = self.ray.get(refs, timeout=ARRIVAL_SLACK)
                self._platforms = {n["NodeID"]: (tuple(c), int(n["Resources"].get("memory", 0)))
                                   for n, c in zip(alive, cpus)}
        return self._platforms

    def unmatched(self, cpu):
        """Why a run made on `cpu` (model, instruction sets) may differ in its last bits here: no node
        of the cluster has that CPU; None where one has."""
        found = {c for c, _ in self.platforms().values()}
        if tuple(cpu) in found:
            return None
        have = "; ".join(f"{m} ({isa or 'no ISA'})" for m, isa in sorted(found, key=str)[:3])
        return (f"the run was made on {cpu[0]} ({cpu[1] or 'no ISA recorded'}) and no node of the {self.where} has "
                f"that CPU (they have {have}): results differ in the last bits across CPUs")

    def execute(self, staged, timeout, receive):
        ray = self.ray
        threads = staged.req.get("threads") if type(staged.req.get("threads")) is int else 1
        if threads > self.cpus:
            raise ReproError(f"the task needs {threads} CPU threads (its run's own) and the Ray cluster has "
                             f"{self.cpus} CPUs")
        resources = {"num_cpus": threads, "num_gpus": 1 if staged.needs.gpu else 0, **self.placement(staged.needs)}
        if self.runtime_env is not None:
            resources["runtime_env"] = self.runtime_env
        shipped, tars = self.payload(staged, timeout)
        ref = self.remote.options(**resources).remote(shipped, *tars)
        try:
            back = ray.get(ref, timeout=timeout + ARRIVAL_SLACK)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise ReproError(f"the Ray task did not come back within {timeout + ARRIVAL_SLACK:g} s") from None
        except ray.exceptions.RayError as e:  # lost after its retries, or the harness failed on the node
            raise ReproError(f"the Ray task failed: {type(e).__name__}: {_first_line(e)}") from None
        if "refused" in back:
            raise ReproError(f"the Ray node {str(back.get('node'))[:60]} refused the task: {back['refused']}")
        received = receive(io.BytesIO(back["stream"]))
        if back["truncated"] and not isinstance(received, BaseException):  # cut at the cap the judge takes
            received = exchange.OutputError("too much", "its outputs are over the bytes the judge takes from it")
        return Ended(back["code"], back["flooded"], back["stderr"], received, back["timed_out"])

    def placement(self, needs):
        """Ray's options for what the task needs beyond CPUs and a GPU: its run's memory (refused in
        one line where no node has as much) and, for a bitwise comparison, the nodes of its CPU."""
        out = {}
        if needs.memory is not None or needs.cpu is not None:
            nodes = self.platforms()
        if needs.memory is not None:
            largest = max((m for _, m in nodes.values()), default=0)
            if needs.memory > largest:
                raise ReproError(f"the task asks for {needs.memory / 2**30:.1f} GiB of memory (its run's logged peak) "
                                 f"and no node of the {self.where} has that much (the most: {largest / 2**30:.1f} GiB)")
            out["memory"] = needs.memory
        if needs.cpu is not None:
            same = sorted(i for i, (c, _) in nodes.items() if c == tuple(needs.cpu))
            if same:  # else it runs anywhere, and unmatched() says why its bits may differ
                out["label_selector"] = {NODE_LABEL: f"in({','.join(same)})"}
        return out

    def payload(self, staged, timeout):
        """What a node gets: everything as bytes with its sha256, and the paths it must hold; and the
        carried folders' tars (object references, which Ray resolves as a task's own arguments)."""
        worker = staged.worker
        inputs = {}
        for name, path in staged.inputs.items():
            with open(path, "rb") as f:
                data = f.read()
            inputs[name] = (data, node.sha256(data))
        request = json.dumps(staged.req).encode()
        carried = [(inside, self._folder(host)) for host, inside in worker.readonly if host in worker.carry]
        tars = [ref for _, (ref, _) in carried]
        carried = [(inside, digest) for inside, (_, digest) in carried]
        readonly = [host for host, inside in worker.readonly if host not in worker.carry]
        if any(host != inside for host, inside in worker.readonly if host not in worker.carry):
            raise ReproError("a folder the worker sees at another path is not carried to the Ray node")
        cap = len(exchange.MAGIC) + (len(staged.outputs) + 1) * exchange.HEADER_BYTES + staged.out_bytes
        return {"inputs": inputs, "request": (request, node.sha256(request)), "carried": carried,
                "readonly": readonly, "env": dict(worker.env), "timeout": timeout,
                "sandboxed": worker.sandbox.enabled, "cap": cap}, tars

    def _folder(self, host):
        """(the folder as a tar of regular files, its sha256), made and put once."""
        with self.lock:
            if host not in self.shipped:
                data = pack(host)
                self.shipped[host] = (self.ray.put(data), node.sha256(data))
        ref, digest = self.shipped[host]
        return ref, digest

    def close(self):
        """Stop the Ray this executor started, or leave the cluster it joined (which runs on). The
        command calls it when its review ends: left to Ray's own hook at the interpreter's exit,
        the same took 0.6 s longer (a process that joins a running Ray, or starts one, and exits)."""
        if (self.started or self.joined) and self.ray.is_initialized():
            self.ray.shutdown()


def pack(folder):
    """The folder as an uncompressed tar of its folders and regular files (names relative to it);
    a link or anything else in it is one line."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(top, name)
                rel = os.path.relpath(path, folder)
                if os.path.islink(path) or not (os.path.isdir(path) or os.path.isfile(path)):
                    raise ReproError(f"{rel[:80]} in a folder carried to the Ray nodes is not a regular file or folder")
                tar.add(path, arcname=rel, recursive=False)
    return buf.getvalue()


@contextlib.contextmanager
def _harness_on_path():
    """A checkout's harness on the path of the embedded Ray's processes while it starts (they
    inherit the environment; an installed harness is found anyway). Not a runtime_env, for
    which Ray starts worker processes of its own instead of those it started with itself
    (the example contest's review with --cluster local, one run each: 44.0 s that way, 38.2 s
    this way)."""
    _, top = harness_roots()
    before = os.environ.get("PYTHONPATH")
    if top:
        os.environ["PYTHONPATH"] = top + (os.pathsep + before if before else "")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def _send_token():
    """RAY_AUTH_MODE=token in this process, where a token is at hand and the mode is not set, before
    Ray is imported (it reads the mode then): Ray 2.60 sends its token only in that mode when it
    joins through Ray Client or an address in $RAY_ADDRESS, and timed out after 30 s against a
    cluster that authenticates; a cluster that does not took the token and joined all the same.
    The workers never see it (their environment is cleared)."""
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN")
                                              or os.path.isfile(os.path.expanduser(TOKEN))):
        os.environ["RAY_AUTH_MODE"] = "token"


def _first_line(e):
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""
