"""What a forger with the format spec and our code does to a run: renumber and re-chain every
log line, and rewrite every checkpoint (new tensors where given) so that its metadata points at
the forged chain and its log line at its new sha256 (and its decisions file's, where it has one).
The tamper tests forge with it, and benchmarks/verifiable.py measures what verify makes of it."""
import json
import os

import numpy as np

from repro.run import checkpoint, rundir
from repro.run.runlog import GENESIS, line_hash
from repro.strict import sha256_file


def forge(path, events, tensors=None):
    """Write events as the run's log at path, each checkpoint resealed (tensors: {step: new tensors})."""
    from safetensors.numpy import save_file
    tensors, prev, head = tensors or {}, GENESIS, events[0]
    with open(os.path.join(path, "events.jsonl"), "w") as f:
        for i, ev in enumerate(events):
            ev = {**ev, "seq": i, "prev": prev}
            if ev["kind"] == "checkpoint" and os.path.exists(os.path.join(path, ev["path"])):
                file = os.path.join(path, ev["path"])
                old, meta = checkpoint.read(file, want_optimizer=True)
                new = tensors.get(ev["step"], old)
                meta = {**meta, "exp": head["exp"], "config_hash": head["config_hash"], "step": str(ev["step"]),
                        "log_seq": str(i), "log_head": prev}
                save_file({k: np.ascontiguousarray(v) for k, v in new.items()}, file, metadata=meta)
                ev["sha256"] = sha256_file(file)
                ev["weights_sha256"] = checkpoint.weights_sha256(new)
                side = os.path.join(path, rundir.decisions_name(ev["step"]))
                if "decisions_sha256" in ev and os.path.exists(side):
                    ev["decisions_sha256"] = sha256_file(side)
            line = json.dumps(ev)
            f.write(line + "\n")
            prev = line_hash(line)
