"""Run an exported model with Paddle Inference (the TIPC inference step).

    python -m repro.predict EXPORT_DIR INPUT [INPUT ...] [--json] [--batch-size N]
                            [--device cpu|gpu] [--onednn]

EXPORT_DIR is what `python -m repro.export RUN_DIR` wrote: the static model
(model.json or model.pdmodel, and model.pdiparams) and export.json, which holds
everything this needs (paper, experiment, resolved config, input spec), so the
export works on its own even after the run directory has moved.

The export format is repro.inference's. Each INPUT is a .npy array (a batch,
or one sample without the batch dimension; read without unpickling anything)
or, for a paper that defines
``preprocess_image(path, cfg)``, a .png/.jpg image. Per sample it prints the
top-1 class and its softmax probability, ``INPUT[i]: class 3 (p=0.912)``;
--json prints one JSON object with the logits too.

From Python: ``repro.inference.predict_arrays(export_dir, array)`` returns the logits.
"""
import argparse
import json
import os

if __name__ == "__main__":  # one line, not a traceback, where Paddle is missing
    from repro.errors import require_paddle
    require_paddle()

import numpy as np

from repro.config import from_dict
from repro.errors import ReproError, run_cli
from repro.inference import Exported, fit, read_artifact, read_export, softmax
from repro.paper import TextClassificationPaper
from repro.registry import get_paper, parse_with_papers

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_npy(path):
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ReproError(f"{path}: not a readable .npy array ({e})") from None
    if not isinstance(a, np.ndarray):
        a.close()
        raise ReproError(f"{path}: not a .npy array (an .npz archive?)")
    return a


def _read_image(path, info):
    paper, cfg = _paper_and_cfg(info)
    fn = getattr(paper, "preprocess_image", None)
    no_images = (f"{path}: paper {paper.name} does not define preprocess_image, so it cannot take images; "
                 f"give a .npy array")
    if fn is None:
        raise ReproError(no_images)
    try:
        sample = fn(path, cfg)
    except NotImplementedError:
        raise ReproError(no_images) from None
    except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise ReproError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None
    return np.asarray(sample)


def _paper_and_cfg(info):
    paper = get_paper(info["paper"])
    return paper, from_dict(paper.config_class, info["config"])


def read_input(path, info, export_dir):
    """One INPUT of the CLI as an array (not yet fitted to the model): a .npy file, an
    image for a paper that reads images, or for a text paper, the text itself."""
    paper, cfg = _paper_and_cfg(info)
    if isinstance(paper, TextClassificationPaper) and not path.endswith(".npy"):
        return paper.encode_text(path, cfg, read_artifact(export_dir, info))
    if not os.path.isfile(path):
        raise ReproError(f"{path}: no such input file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        return _read_npy(path)
    if suffix in IMAGE_SUFFIXES:
        return _read_image(path, info)
    raise ReproError(f"{path}: unsupported input type {suffix or '(no suffix)'!r}; "
                     f"give a .npy array, or a .png/.jpg image for a paper with preprocess_image")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.predict", description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", metavar="EXPORT_DIR", help="a directory written by python -m repro.export")
    ap.add_argument("inputs", metavar="INPUT", nargs="+",
                    help=".npy array (a batch or one sample), .png/.jpg for a paper that reads images, or the text "
                         "itself for a text paper")
    ap.add_argument("--json", action="store_true", help="print one JSON object with the logits too")
    ap.add_argument("--batch-size", type=int, default=256, help="samples per predictor run (default 256)")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                    help="gpu needs a CUDA build of Paddle and a GPU (default cpu)")
    ap.add_argument("--onednn", action="store_true",
                    help="CPU: use oneDNN kernels (TIPC's enable_mkldnn; faster on large models, logits then "
                         "differ from the dynamic model's by float32 rounding)")
    args = parse_with_papers(ap, argv)

    if args.batch_size <= 0:
        raise ReproError(f"--batch-size must be > 0, got {args.batch_size}")
    info = read_export(args.export_dir)
    if len(info["inputs"]) != 1:
        raise ReproError(f"the model takes {len(info['inputs'])} inputs; this CLI feeds one-input models "
                         f"(call repro.inference.predict_arrays with one array per input)")
    spec = info["inputs"][0]
    # every input is read and checked before the predictor is built
    batches = [(path, fit(read_input(path, info, args.export_dir), spec, path)) for path in args.inputs]
    model = Exported(args.export_dir, args.device, args.onednn)
    results = []
    for path, batch in batches:
        logits = model.run([batch], args.batch_size)[0]
        results.append((path, batch, logits))

    if args.json:
        out = {"export": args.export_dir, "paper": info["paper"], "exp": info["exp"],
               "step": info.get("checkpoint", {}).get("step"), "results": []}
        for path, batch, logits in results:
            item = {"input": path, "shape": list(batch.shape)}
            if logits.ndim == 2:
                probs = softmax(logits)
                top = probs.argmax(axis=1)
                item["classes"] = [int(c) for c in top]
                item["probs"] = [float(probs[i, c]) for i, c in enumerate(top)]
            item["logits"] = logits.tolist()
            out["results"].append(item)
        print(json.dumps(out))
        return 0
    for _, _, logits in results:
        if logits.ndim != 2:
            raise ReproError(f"the model's output has shape {tuple(logits.shape)}, not [batch, classes]; "
                             f"use --json for the raw outputs")
    names = getattr(_paper_and_cfg(info)[0], "class_names", ()) or ()
    for path, _, logits in results:
        probs = softmax(logits)
        for i, c in enumerate(probs.argmax(axis=1)):
            name = f" {names[c]}" if c < len(names) else ""
            print(f"{path}[{i}]: class {int(c)}{name} (p={probs[i, c]:.3f})")
    return 0


if __name__ == "__main__":
    run_cli(main)
