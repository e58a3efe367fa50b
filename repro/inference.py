"""The export format, and running an export with Paddle Inference.

An export directory (written by `python -m repro.export RUN_DIR`) holds the
static model (model.json with PIR, or model.pdmodel with the old IR, and
model.pdiparams) and export.json: paper, experiment, resolved config, the
checkpoint it came from, the input spec and every file's sha256. This module
owns that format: repro.export writes it, repro.predict and predict_arrays
read it through read_export and Exported.
"""
import os

import numpy as np

from repro import strict
from repro.errors import ReproError
from repro.strict import sha256_file

PREFIX = "model"

EXPORT_JSON = "export.json"
FORMAT = "repro-export/1"


def read_export(export_dir):
    """export.json of an export directory, checked; a ReproError if it is not one."""
    if not os.path.isdir(export_dir):
        raise ReproError(f"{export_dir}: no such export directory")
    path = os.path.join(export_dir, EXPORT_JSON)
    if not os.path.isfile(path):
        raise ReproError(f"{export_dir} is not an export: no {EXPORT_JSON} "
                         f"(make one with python -m repro.export RUN_DIR)")
    info = strict.read_json(path, "export description")
    if info.get("format") != FORMAT:
        raise ReproError(f"{path} is not a {FORMAT} file (format={str(info.get('format'))[:40]!r})")
    files = info.get("files")
    if not isinstance(files, dict):
        raise ReproError(f"{path} names no model files")
    for role in ("model", "params"):
        name = files.get(role)
        if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
            raise ReproError(f"{path}: the {role} file {str(name)[:40]!r} is not a file name in the export")
        strict.regular_file(os.path.join(export_dir, name), f"the {role} file")
        strict.inside(export_dir, os.path.join(export_dir, name), f"the {role} file")
    artifact = info.get("artifact")
    if artifact is not None:
        if artifact not in (files.get("written") or []) or not isinstance(files.get("sha256"), dict):
            raise ReproError(f"{path} names an artifact it did not write")
        file = os.path.join(export_dir, artifact)
        strict.regular_file(file, "the export's artifact")
        if sha256_file(file) != files["sha256"].get(artifact):
            raise ReproError(f"{file} is not the artifact the export wrote (sha256 differs)")
    inputs = info.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("dtype"), str)
            and isinstance(i.get("shape"), list) and all(d is None or type(d) is int for d in i["shape"])
            for i in inputs):
        raise ReproError(f"{path} lists no valid model inputs (name, shape, dtype)")
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
            # Paddle 3.3's matmul_add_act_fuse_pass fuses a product whose weight is computed (the MNIST-1D
            # CNN's convolution weight, transposed and reshaped) with the weight as it was before the
            # reshape, and the predictor then refuses the model ("Weight of fc is expected to be a 2-D
            # tensor"); without that one fusion the oneDNN kernels still run
            config.delete_pass("matmul_add_act_fuse_pass")
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


def read_artifact(export_dir, info):
    """The artifact an export carries (a vocabulary), or None."""
    if not info.get("artifact"):
        return None
    return strict.read_json(os.path.join(export_dir, info["artifact"]), "artifact", max_bytes=256 << 20)


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


