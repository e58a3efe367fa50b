"""Export a run's checkpoint as a static inference model (the TIPC export step).

    python -m repro.export RUN_DIR [--out DIR]      (default DIR: RUN_DIR/export)

Rebuilds the run's model from its logged config, loads its last logged
checkpoint (repro.run.rundir.load_trained: checked against the log), and saves it with paddle.jit.save using the paper's ``input_spec(cfg)``. DIR
then holds the static model (model.json with PIR, the default in Paddle 3, or
model.pdmodel with the old IR, and model.pdiparams) and export.json: paper,
experiment, the resolved config, the checkpoint's sha256 and step, the input
spec, the files and their sha256, and the max |dynamic - inference| difference
measured on random inputs right after the export. `python -m repro.predict DIR
INPUT ...` runs it with Paddle Inference.

The export is written into a temporary folder beside DIR and renamed into
place, so a failed export leaves nothing behind; an existing export is never
overwritten.
"""
import argparse
import json
import os
import shutil

if __name__ == "__main__":  # one line, not a traceback, where Paddle is missing
    from repro.errors import require_paddle
    require_paddle()

import numpy as np

from repro import hints
from repro.config import config_hash, to_dict
from repro.errors import ReproError, run_cli
from repro.inference import EXPORT_JSON, FORMAT, PREFIX, create_predictor, run_predictor
from repro.paper import TextClassificationPaper
from repro.registry import get_paper, parse_with_papers
from repro.run import rundir
from repro.strict import sha256_file

CHECK_BATCH = 2


def _spec_dict(spec, name):
    shape = [None if d is None or d < 0 else int(d) for d in spec.shape]
    return {"name": name, "shape": shape, "dtype": str(spec.dtype).replace("paddle.", "")}


def _input_spec(paper, cfg):
    import paddle

    fn = getattr(paper, "input_spec", None)
    cannot = f"paper {paper.name} does not define input_spec, so it cannot be exported"
    if fn is None:
        raise ReproError(cannot)
    try:
        specs = fn(cfg)
    except NotImplementedError:
        raise ReproError(cannot) from None
    if isinstance(specs, paddle.static.InputSpec):
        specs = [specs]
    if not isinstance(specs, (list, tuple)) or not specs or \
            not all(isinstance(s, paddle.static.InputSpec) for s in specs):
        raise ReproError(f"paper {paper.name}: input_spec must return a list of paddle.static.InputSpec, got {specs!r}")
    for s in specs:
        if not s.shape or s.shape[0] not in (None, -1):
            raise ReproError(f"paper {paper.name}: input_spec {s.name or ''} {list(s.shape)} must have a None "
                             f"batch dimension")
    return list(specs)


def _check_out(out):
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ReproError(f"--out {out} exists and is not a directory")
        if os.path.exists(os.path.join(out, EXPORT_JSON)) or any(
                f.startswith(PREFIX + ".") for f in os.listdir(out)):
            raise ReproError(f"{out} already holds an export; it is not overwritten (remove it or give another --out)")
        if os.listdir(out):
            raise ReproError(f"--out {out} is not empty; give a new or empty directory")


def _random_inputs(specs, seed=0):
    """A small deterministic batch for each input, or None when a spec has a
    free non-batch dimension or a dtype that random numbers do not suit."""
    rng = np.random.RandomState(seed)
    arrays = []
    for s in specs:
        if any(d is None for d in s["shape"][1:]):
            return None
        shape = [CHECK_BATCH] + s["shape"][1:]
        try:
            dtype = np.dtype(s["dtype"])
        except TypeError:
            return None
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind in "iu":
            arrays.append(rng.randint(0, 2, size=shape).astype(dtype))  # ids 0/1 exist in any vocabulary
        else:
            return None
    return arrays


def export(run_dir, out=None, echo=print):
    """Export RUN_DIR's checkpoint into out (default RUN_DIR/export); returns export.json's content."""
    run = rundir.open_run(get_paper, run_dir)
    out = out or os.path.join(run_dir, "export")
    _check_out(out)
    paper, exp, cfg = run.paper, run.exp, run.cfg
    specs = _input_spec(paper, cfg)
    model, _, meta, ev = rundir.load_trained(run)
    artifact = rundir.read_artifact(run)

    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        info = _write(paper, exp, cfg, model, specs, meta, run, ev, tmp, artifact)
        if os.path.isdir(out):
            os.rmdir(out)  # empty (checked above); the rename puts the export in its place
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if echo:
        check = info["check"]
        diff = (f"; max |dynamic - inference| {check['max_abs_diff']:.2e} on {check['batch']} random samples"
                if check else "")
        echo(f"exported {paper.name}/{exp.name} step {info['checkpoint']['step']} -> {out}: "
             f"{', '.join(info['files']['written'])}{diff}")
        example = '"a sentence"' if isinstance(paper, TextClassificationPaper) else "INPUT.npy"
        echo(f"predict with: {hints.command('repro.predict', out, paper=paper.name, placeholder=example)}")
    return info


def _write(paper, exp, cfg, model, specs, meta, run, ev, tmp, artifact):
    import paddle

    # the dynamic model's outputs on random inputs, taken before jit.save traces it
    probe = _random_inputs([_spec_dict(s, s.name) for s in specs])
    dynamic = None
    if probe is not None:
        with paddle.no_grad():
            y = model(*[paddle.to_tensor(a) for a in probe])
        dynamic = y.numpy() if isinstance(y, paddle.Tensor) else None

    paddle.jit.save(model, os.path.join(tmp, PREFIX), input_spec=specs)
    if artifact is not None:  # what turns raw input (text) into the model's input goes with the model
        rundir.write_artifact(tmp, artifact)
    written = sorted(os.listdir(tmp))
    model_file = next((f for f in (f"{PREFIX}.json", f"{PREFIX}.pdmodel") if f in written), None)
    params_file = f"{PREFIX}.pdiparams"
    if model_file is None or params_file not in written:
        raise ReproError(f"paddle.jit.save wrote {written}, not a model file and {params_file}")

    # the inputs as Paddle Inference names them (a spec without a name gets the forward argument's)
    predictor = create_predictor(os.path.join(tmp, model_file), os.path.join(tmp, params_file))
    names = list(predictor.get_input_names())
    if len(names) != len(specs):
        raise ReproError(f"the exported model has inputs {names}, but input_spec gave {len(specs)}")
    check = None
    if dynamic is not None:
        static = run_predictor(predictor, names, probe)[0]
        if static.shape != dynamic.shape:
            raise ReproError(f"the exported model's output has shape {static.shape}, "
                             f"the dynamic model's {dynamic.shape}")
        check = {"batch": CHECK_BATCH, "seed": 0,
                 "max_abs_diff": float(np.max(np.abs(static.astype(np.float64) - dynamic)))}
    info = {
        "format": FORMAT,
        "paper": paper.name,
        "exp": exp.name,
        "checkpoint": {"path": ev["path"], "sha256": ev["sha256"], "weights_sha256": ev["weights_sha256"],
                       "step": ev["step"], "lite": run.header["lite"]},
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "inputs": [_spec_dict(s, n) for s, n in zip(specs, names)],
        "outputs": list(predictor.get_output_names()),
        "artifact": rundir.ARTIFACT if artifact is not None else None,
        "files": {"model": model_file, "params": params_file, "written": written,
                  "sha256": {f: sha256_file(os.path.join(tmp, f)) for f in written}},
        "paddle": paddle.__version__,
        "ir": "pir" if model_file.endswith(".json") else "program",
        "check": check,  # max |dynamic - inference| on random inputs, or None when not measurable
    }
    with open(os.path.join(tmp, EXPORT_JSON), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.export", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (config.yaml, events.jsonl, checkpoint)")
    ap.add_argument("--out", metavar="DIR", help="where to write the export (default: RUN_DIR/export); "
                                                 "must not exist or be empty")
    args = parse_with_papers(ap, argv)
    export(args.run_dir, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
