"""Run an exported model with Paddle Inference (the TIPC inference step).

    python -m repro.predict EXPORT_DIR INPUT [INPUT ...] [--json] [--batch-size N]
                            [--device cpu|gpu] [--onednn]

EXPORT_DIR is what `python -m repro.export RUN_DIR` wrote: the static model
(model.json or model.pdmodel, and model.pdiparams) and export.json, which holds
everything this needs (paper, experiment, resolved config, input spec), so the
export works on its own even after the run directory has moved.

Each INPUT is a .npy array (a batch, or one sample without the batch dimension;
read without unpickling anything) or, for a paper that defines
``preprocess_image(path, cfg)``, a .png/.jpg image. Per sample it prints the
top-1 class and its softmax probability, ``INPUT[i]: class 3 (p=0.912)``;
--json prints one JSON object with the logits too.

From Python: ``predict_arrays(export_dir, array)`` returns the logits.
"""
import argparse
import json
import os

import numpy as np

from repro.errors import ReproError, run_cli

EXPORT_JSON = "export.json"
FORMAT = "repro-export/1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_export(export_dir):
    """export.json of an export directory, checked; a ReproError if it is not one."""
    if not os.path.isdir(export_dir):
        raise ReproError(f"{export_dir}: no such export directory")
    path = os.path.join(export_dir, EXPORT_JSON)
    if not os.path.isfile(path):
        raise ReproError(f"{export_dir} is not an export: no {EXPORT_JSON} "
                         f"(make one with python -m repro.export RUN_DIR)")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReproError(f"{path} is not JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        got = info.get("format") if isinstance(info, dict) else None
        raise ReproError(f"{path} is not a {FORMAT} file (format={got!r})")
    files = info.get("files") or {}
    for role in ("model", "params"):
        name = files.get(role)
        if not name or not os.path.isfile(os.path.join(export_dir, name)):
            raise ReproError(f"{export_dir} is missing the {role} file {name!r} that {EXPORT_JSON} names")
    if not info.get("inputs"):
        raise ReproError(f"{path} lists no model inputs")
    return info


def fmt_shape(shape):
    """[None, 40] as the spec is written (None: any size)."""
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def fit(array, spec, label):
    """array as a batch for one model input: the batch dimension added to a
    single sample, the dtype cast within its kind (float64 -> float32, int32 -> int64);
    a ReproError naming `label` when it does not fit."""
    a = np.asarray(array)
    shape = spec["shape"]
    batch = a[None] if a.ndim == len(shape) - 1 else a
    if batch.ndim != len(shape) or any(d is not None and d != n for d, n in zip(shape[1:], batch.shape[1:])):
        raise ReproError(f"{label}: shape {tuple(a.shape)} does not fit the model input {fmt_shape(shape)}")
    if batch.shape[0] == 0:
        raise ReproError(f"{label}: holds no samples (shape {tuple(a.shape)})")
    try:
        want = np.dtype(spec["dtype"])
    except TypeError:  # a dtype numpy does not name (bfloat16): leave it to Paddle
        return np.ascontiguousarray(batch)
    if batch.dtype != want:
        # a float for a float, an integer for an integer: uint8 pixels given to a
        # float model are most likely not yet preprocessed, so they are refused
        kind = {"u": "i"}.get(batch.dtype.kind, batch.dtype.kind)
        if kind != {"u": "i"}.get(want.kind, want.kind):
            raise ReproError(f"{label}: dtype {batch.dtype} does not fit the model input dtype {want} "
                             f"(give the model's input as the paper's preprocess makes it)")
        batch = batch.astype(want)
    return np.ascontiguousarray(batch)


def create_predictor(model_path, params_path, device="cpu", where="", onednn=False):
    """A Paddle Inference predictor (quiet: no glog lines) on CPU or GPU.

    On CPU, Paddle Inference uses oneDNN kernels unless told otherwise; their
    logits differ from the dynamic model's by float32 rounding (measured on the
    MNIST-1D models: up to 5e-5 on logits of magnitude 200). Without oneDNN the
    CPU kernels are the dynamic graph's and the logits agree exactly, so that is
    the default here; onednn=True is TIPC's enable_mkldnn."""
    import paddle
    from paddle import inference

    config = inference.Config(model_path, params_path)
    config.disable_glog_info()
    if device == "gpu":
        if not paddle.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0:
            raise ReproError("--device gpu: this Paddle build has no CUDA GPU available; use --device cpu")
        config.enable_use_gpu(256, 0)
    elif device == "cpu":
        config.disable_gpu()
        if onednn:
            config.enable_mkldnn()
        else:
            config.disable_mkldnn()
    else:
        raise ReproError(f"unknown device {device!r}; use cpu or gpu")
    try:
        return inference.create_predictor(config)
    except Exception as e:  # Paddle raises several types for a damaged model file
        first = (str(e).strip().splitlines() or [""])[0]
        raise ReproError(f"{where or model_path}: Paddle Inference cannot load the model "
                         f"({type(e).__name__}: {first})") from None


def run_predictor(predictor, input_names, batches, batch_size=None):
    """Outputs (one array per model output) for fitted input batches, fed
    batch_size samples at a time (all at once when None)."""
    n = batches[0].shape[0]
    if any(b.shape[0] != n for b in batches):
        raise ReproError(f"the inputs hold different numbers of samples: {[b.shape[0] for b in batches]}")
    step = batch_size or n
    output_names = list(predictor.get_output_names())
    parts = [[] for _ in output_names]
    for i in range(0, n, step):
        for name, b in zip(input_names, batches):
            chunk = np.ascontiguousarray(b[i:i + step])
            handle = predictor.get_input_handle(name)
            handle.reshape(list(chunk.shape))
            handle.copy_from_cpu(chunk)
        predictor.run()
        for k, name in enumerate(output_names):
            parts[k].append(predictor.get_output_handle(name).copy_to_cpu())
    return [np.concatenate(p) for p in parts]


class Exported:
    """A Paddle Inference predictor on an export directory."""

    def __init__(self, export_dir, device="cpu", onednn=False):
        self.dir = export_dir
        self.info = read_export(export_dir)
        self.inputs = self.info["inputs"]
        files = self.info["files"]
        self.predictor = create_predictor(os.path.join(export_dir, files["model"]),
                                          os.path.join(export_dir, files["params"]), device, export_dir, onednn)
        names = list(self.predictor.get_input_names())
        if names != [s["name"] for s in self.inputs]:
            raise ReproError(f"{export_dir}: the model's inputs {names} are not the ones "
                             f"{EXPORT_JSON} lists {[s['name'] for s in self.inputs]}")

    def run(self, batches, batch_size=None):
        return run_predictor(self.predictor, [s["name"] for s in self.inputs], batches, batch_size)

    def predict(self, array, batch_size=None, label="input"):
        """Logits (the first output) for one array, or one array per input
        (list/tuple) for a model with several inputs."""
        if len(self.inputs) == 1:
            arrays = [array]
        else:
            if not isinstance(array, (list, tuple)) or len(array) != len(self.inputs):
                raise ReproError(f"the model takes {len(self.inputs)} inputs "
                                 f"({', '.join(s['name'] for s in self.inputs)}); give one array for each")
            arrays = list(array)
        batches = [fit(a, spec, label if len(arrays) == 1 else f"{label} {spec['name']}")
                   for a, spec in zip(arrays, self.inputs)]
        return self.run(batches, batch_size)[0]


def predict_arrays(export_dir, array, batch_size=None, device="cpu", onednn=False):
    """The exported model's logits for `array` (a batch, or one sample without
    the batch dimension; a list of arrays for a model with several inputs),
    through Paddle Inference. Returns a numpy array [batch, ...]. onednn: see
    create_predictor."""
    if batch_size is not None and batch_size <= 0:
        raise ReproError(f"batch size must be > 0, got {batch_size}")
    return Exported(export_dir, device, onednn).predict(array, batch_size)


def softmax(logits):
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


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
    from repro.config import from_dict
    from repro.registry import get_paper

    paper = get_paper(info["paper"])
    fn = getattr(paper, "preprocess_image", None)
    no_images = (f"{path}: paper {paper.name} does not define preprocess_image, so it cannot take images; "
                 f"give a .npy array")
    if fn is None:
        raise ReproError(no_images)
    cfg = from_dict(paper.config_class, info["config"])
    try:
        sample = fn(path, cfg)
    except NotImplementedError:
        raise ReproError(no_images) from None
    except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise ReproError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None
    return np.asarray(sample)


def read_input(path, info):
    """One INPUT of the CLI as an array (not yet fitted to the model)."""
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
                    help=".npy array (a batch or one sample), or .png/.jpg for a paper with preprocess_image")
    ap.add_argument("--json", action="store_true", help="print one JSON object with the logits too")
    ap.add_argument("--batch-size", type=int, default=256, help="samples per predictor run (default 256)")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                    help="gpu needs a CUDA build of Paddle and a GPU (default cpu)")
    ap.add_argument("--onednn", action="store_true",
                    help="CPU: use oneDNN kernels (TIPC's enable_mkldnn; faster on large models, logits then "
                         "differ from the dynamic model's by float32 rounding)")
    args = ap.parse_args(argv)

    if args.batch_size <= 0:
        raise ReproError(f"--batch-size must be > 0, got {args.batch_size}")
    info = read_export(args.export_dir)
    if len(info["inputs"]) != 1:
        raise ReproError(f"the model takes {len(info['inputs'])} inputs; this CLI feeds one-input models "
                         f"(call repro.predict.predict_arrays with one array per input)")
    spec = info["inputs"][0]
    # every input is read and checked before the predictor is built
    batches = [(path, fit(read_input(path, info), spec, path)) for path in args.inputs]
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
    for path, _, logits in results:
        probs = softmax(logits)
        for i, c in enumerate(probs.argmax(axis=1)):
            print(f"{path}[{i}]: class {int(c)} (p={probs[i, c]:.3f})")
    return 0


if __name__ == "__main__":
    run_cli(main)
