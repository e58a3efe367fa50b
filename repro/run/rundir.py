"""A run directory: its layout, opening it, and loading the model it trained.

    RUN_DIR/
      events.jsonl                         the machine log (repro.run.runlog; docs/log-format.md)
      config.yaml                          the resolved config, as the log's header has it
      train.log                            the log as text
      vdl/                                 VisualDL scalars
      checkpoints/step-00001000.safetensors   model + optimizer state after that update
                                           (the last step's: the model's weights alone)
      artifact.json                        what the paper fitted on the training split (a
                                           vocabulary), for papers that have one

A checkpoint is written at every train.checkpoint_every and train.audit_every
step and at the last step. Those at audit steps and the last one are kept (the
replay audit re-trains the stretches between them); any other is deleted once
a newer one is logged, since resume only needs the newest. The last one holds
the weights alone: it is scored and compared with a replay, never trained on from.

This is the only module that names a run's files or builds a model and loads
trained weights into it. Everything read from a run directory is checked
here: files must be regular files inside the directory once links are
resolved, the log is read strictly (repro.run.runlog), config.yaml must be the
config the log's header records, and a checkpoint must be the file the log
names (its sha256), written after the log lines it says it follows.
"""
import json
import os
from dataclasses import dataclass, field

from repro import strict
from repro.config import config_hash, dump_yaml, from_dict
from repro.errors import ReproError
from repro.run import checkpoint
from repro.strict import sha256_file
from repro.run.runlog import line_hash, read_log

EVENTS = "events.jsonl"
CONFIG = "config.yaml"
TEXT = "train.log"
VDL = "vdl"
CHECKPOINTS = "checkpoints"
ARTIFACT = "artifact.json"
# what the run's processes used, outside the hash-chained log (a hint, never evidence): a review
# farm asks a node for this much memory when it audits the run (repro.judge.audit.Plan.needs)
RESOURCES = "resources.json"
# a folder holding this file holds copies of runs (a repro.diffusion.submit bundle), not runs: verify skips it
COPIES = "submission.json"


def checkpoint_name(step):
    return f"{CHECKPOINTS}/step-{step:08d}.safetensors"


def decisions_name(step):
    """A verifiable run's record beside its checkpoint of step: the rounding decisions and
    state hashes of the updates since the last kept checkpoint (repro.run.decisions)."""
    return f"{CHECKPOINTS}/step-{step:08d}.decisions"


def decisions_beside(checkpoint_path):
    """The decisions file that goes with a checkpoint file's path."""
    return checkpoint_path[:-len(".safetensors")] + ".decisions"


def is_run(path):
    return os.path.isfile(os.path.join(path, EVENTS))


def file_in(run_dir, name, what):
    """The path of `name` inside run_dir: a regular file once links are resolved, inside run_dir."""
    path = os.path.join(run_dir, name)
    strict.regular_file(path, what)
    strict.inside(run_dir, path, what)
    return path


@dataclass
class Run:
    """An opened run directory. paper/exp/cfg are set by resolve() (they need the
    paper's code); the rest is read from files alone."""
    path: str
    lines: list
    events: list
    tail: bytes = b""  # an incomplete last line (a kill while it was written), left out of events
    paper: object = None
    exp: object = None
    cfg: object = None
    protocol: object = None  # what verify judges it against (repro.judge.protocol)
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)   # the final metrics the log reports
    final_weights: str = ""                       # weights_sha256 of the final checkpoint, as read
    kept_weights: dict = field(default_factory=dict)  # {step: weights_sha256} of every kept checkpoint, as read
    coverage: dict = None                         # what the replay audit covered (repro.judge.coverage.coverage_of)
    private: dict = None                          # the private evaluation's result (repro.judge.private)
    recomputed: dict = None                       # metrics verify computed itself (--recompute)
    replayed: list = field(default_factory=list)  # replay audit results, one per segment
    copy_of: dict = None                          # the earlier submission's run whose weights it holds

    @property
    def header(self):
        return self.events[0] if self.events else {}

    @property
    def seed(self):
        cfg = self.header.get("config")
        train = cfg.get("train") if isinstance(cfg, dict) else None
        seed = train.get("seed") if isinstance(train, dict) else None
        return seed if type(seed) is int else None

    def last(self, kind):
        return next((e for e in reversed(self.events) if e["kind"] == kind), None)

    def checkpoints(self):
        """{step: checkpoint event} of the stretch that counts: a resume from step s
        supersedes what the interrupted stretch logged after s."""
        out = {}
        for ev in self.events:
            if ev["kind"] == "resume":
                out = {s: e for s, e in out.items() if s <= ev["step"]}
            elif ev["kind"] == "checkpoint":
                out[ev["step"]] = ev
        return out

    def kept_steps(self):
        """Steps whose checkpoints the run keeps (is_kept)."""
        return sorted(s for s in self.checkpoints() if is_kept(self.cfg.train, s))


def is_kept(tc, step):
    """The keep rule: a checkpoint at a multiple of train.audit_every, or at the last step, is kept
    for the audit; any other one only until the next is written."""
    return step == tc.steps or bool(tc.audit_every and step % tc.audit_every == 0)


def read(path, allow_partial_tail=False):
    """A Run from the files alone (no paper code): the log, read strictly. A
    ReproError with one line if the directory is not a readable run."""
    if not os.path.isdir(path):
        raise ReproError(f"{path}: no such run directory")
    if not os.path.exists(os.path.join(path, EVENTS)):
        raise ReproError(f"{path} is not a run: no {EVENTS}")
    events_path = file_in(path, EVENTS, "log")
    got = read_log(events_path, allow_partial_tail)
    lines, events, tail = got if allow_partial_tail else (*got, b"")
    if events[0]["kind"] != "run_start":
        raise ReproError(f"{events_path} line 1 is not a run_start event")
    return Run(path, lines, events, tail)


def resolve(run, paper):
    """Set run.paper, run.exp and run.cfg from the header, with the config checked
    exactly as load_config checks it (paper: the one its header names); a ReproError otherwise."""
    head = run.header
    exp = paper.experiment(head["exp"])
    if config_hash(head["config"]) != head["config_hash"]:
        raise ReproError(f"{run.path}: the header's config_hash does not match its config")
    run.paper, run.exp, run.cfg = paper, exp, from_dict(paper.config_class, head["config"])
    return run


def open_run(paper_of, path, allow_partial_tail=False):
    """read() and resolve(): a run whose paper and config are known here. paper_of(name) gives the
    paper its header names (repro.registry.get_paper): making a run never imports the registry."""
    run = read(path, allow_partial_tail)
    return resolve(run, paper_of(run.header.get("paper")))


def check_config_file(run):
    """config.yaml must be the config the header records (it is derived from it)."""
    path = file_in(run.path, CONFIG, "config")
    data = strict.read_yaml(path)
    if not isinstance(data, dict) or config_hash(data) != run.header["config_hash"]:
        raise ReproError(f"{path} is not the config its log was started with (config_hash differs)")


def _artifact_bytes(artifact):
    import json
    return json.dumps(artifact, ensure_ascii=False, sort_keys=True).encode("utf-8")


def artifact_sha256(artifact):
    """The sha256 artifact.json has when it holds this artifact."""
    import hashlib
    return hashlib.sha256(_artifact_bytes(artifact)).hexdigest()


def write_artifact(folder, artifact):
    """artifact.json, written atomically; returns its sha256."""
    raw = _artifact_bytes(artifact)
    path = os.path.join(folder, ARTIFACT)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(raw)
    os.replace(tmp, path)
    return artifact_sha256(artifact)


def read_artifact(run):
    """The run's artifact (None when its paper has none), checked against the sha256 its header logged."""
    want = run.header.get("artifact_sha256")
    if want is None:
        return None
    path = file_in(run.path, ARTIFACT, "artifact")
    if sha256_file(path) != want:
        raise ReproError(f"{path} is not the artifact the log names (sha256 differs)")
    return strict.read_json(path, "artifact", max_bytes=256 << 20)


def write_config(run_dir, cfg):
    path = os.path.join(run_dir, CONFIG)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dump_yaml(cfg))
    os.replace(tmp, path)


def write_resources(run_dir, peak_memory_bytes):
    """Record the most memory a process of the run held (the most over its stretches)."""
    path = os.path.join(run_dir, RESOURCES)
    peak = max(peak_memory_bytes, read_resources(run_dir) or 0)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"peak_memory_bytes": int(peak)}, f)
    os.replace(tmp, path)


def read_resources(run_dir):
    """The run's recorded peak memory in bytes, or None (no record, or one that is not a count)."""
    try:
        data = strict.read_json(file_in(run_dir, RESOURCES, "resources record"), "resources record")
    except (ReproError, OSError):
        return None
    peak = data.get("peak_memory_bytes") if isinstance(data, dict) else None
    return peak if type(peak) is int and 0 < peak < 1 << 50 else None


# ---------------------------------------------------------------- checkpoints

def decisions_file(run, ev):
    """The decisions file beside a verifiable run's checkpoint (event ev), checked: a regular
    file inside the run with the sha256 its checkpoint line logs (decisions_sha256)."""
    want = ev.get("decisions_sha256")
    if want is None:
        raise ReproError(f"{run.path}: the checkpoint line at step {ev['step']} names no decisions file "
                         f"(decisions_sha256), which a train.verifiable run logs with every checkpoint")
    path = file_in(run.path, decisions_name(ev["step"]), "decisions file")
    if sha256_file(path) != want:
        raise ReproError(f"{path} is not the decisions file the log names (sha256 differs)")
    return path


def checkpoint_file(run, ev):
    """The file a checkpoint event names, checked: the layout's own name for its
    step, a regular file inside the run, with the logged sha256."""
    if ev["path"] != checkpoint_name(ev["step"]):
        raise ReproError(f"{run.path}: the checkpoint at step {ev['step']} is logged as {ev['path']!r}, "
                         f"not {checkpoint_name(ev['step'])!r}")
    path = file_in(run.path, ev["path"], "checkpoint")
    if sha256_file(path) != ev["sha256"]:
        raise ReproError(f"{path} is not the checkpoint the log names (sha256 differs)")
    return path


def check_meta(run, ev, meta, path):
    """The checkpoint's metadata must name this run and the log lines it followed."""
    head = run.header
    if (meta.get("paper"), meta.get("exp"), meta.get("config_hash")) != (head["paper"], head["exp"],
                                                                        head["config_hash"]):
        raise ReproError(f"{path} belongs to another run ({str(meta.get('paper'))[:40]}/"
                         f"{str(meta.get('exp'))[:40]}, config {str(meta.get('config_hash'))[:12]})")
    if meta.get("step") != str(ev["step"]):
        raise ReproError(f"{path} holds step {str(meta.get('step'))[:20]}, the log says {ev['step']}")
    seq = meta.get("log_seq", "")
    if not (seq.isdigit() and len(seq) < 10 and 0 < int(seq) <= len(run.lines)
            and line_hash(run.lines[int(seq) - 1]) == meta.get("log_head")):
        raise ReproError(f"{path} was not written after this log's line {seq[:10]}: the log before it was rewritten")


def load_weights(paper, cfg, path, artifact=None):
    """A model built from cfg with the weights of a checkpoint file that belongs to
    no run directory (e.g. one `repro.align convert` made). Returns (model, tensors, metadata)."""
    import paddle

    paddle.seed(0)
    model = paper.model(cfg, artifact)
    tensors, meta = checkpoint.read(path, model)
    checkpoint.load_model(model, tensors)
    model.eval()
    return model, tensors, meta


def read_checkpoint(run, step, model=None, want_optimizer=False, tensors=True):
    """(tensors, metadata, event) of the run's checkpoint at step, checked against
    the log (file, sha256, metadata) and, with model, against the model's layout;
    tensors=False checks without loading them."""
    ev = run.checkpoints().get(step)
    if ev is None:
        raise ReproError(f"{run.path} logged no checkpoint at step {step}")
    path = checkpoint_file(run, ev)
    tensors, meta = checkpoint.read(path, model, want_optimizer, tensors)
    check_meta(run, ev, meta, path)
    return tensors, meta, ev


def load_trained(run, step=None, into=None, optimizer=None, cfg=None):
    """The model of an opened run with the weights of its checkpoint at `step`
    (default: the last one logged), checked against the log, built from cfg
    (default: the run's). Returns (model, tensors, metadata, checkpoint event)."""
    import paddle

    done = run.checkpoints()
    if not done:
        raise ReproError(f"{run.path} has no logged checkpoint (interrupted before the first one?)")
    model = into
    if model is None:
        paddle.seed(0)
        model = run.paper.model(cfg or run.cfg, read_artifact(run))
    tensors, meta, ev = read_checkpoint(run, max(done) if step is None else step, model, optimizer is not None)
    checkpoint.load_model(model, tensors)
    if optimizer is not None:
        checkpoint.load_optimizer(optimizer, model, tensors)
    if into is None:
        model.eval()
    return model, tensors, meta, ev
