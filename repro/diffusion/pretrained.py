"""Local pretrained pipeline directories (model_index.json + one folder per
component): checked for every file they need before anything loads,
identified by a sha256 over their files, loaded with a chosen sampler.
Nothing downloads; "builtin:tiny-sd" names the tiny model of repro.diffusion.tiny.
"""
import hashlib
import importlib
import json
import os

from repro.diffusion.ppd import cached, ppdiffusers, quiet
from repro.diffusion.tiny import TINY_SD, TINY_SD_VERSION, builtin_dir, write_tiny_sd
from repro.errors import ReproError
from repro.strict import sha256_file

WEIGHT_EXTS = (".safetensors", ".pdparams", ".bin", ".index.json")
# where model_index.json may say a component's class lives; anything else is refused
LIBRARIES = {"ppdiffusers": "ppdiffusers", "diffusers": "ppdiffusers", "transformers": "ppdiffusers.transformers",
             "ppdiffusers.transformers": "ppdiffusers.transformers", "paddlenlp.transformers": "paddlenlp.transformers"}
SCHEDULERS = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler",
              "dpm": "DPMSolverMultistepScheduler", "ddpm": "DDPMScheduler"}


def dir_identity(path):
    """sha256 over (relative path, sha256) of every file under path, sorted: the
    identity of a model directory, whatever its size. Computed once per process
    for the same files, sizes and modification times (an SD directory is
    gigabytes; DreamBooth and verify --recompute over several runs ask again)."""
    if not os.path.isdir(path):
        raise ReproError(f"model directory not found: {path}")
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files += [os.path.join(root, name) for name in sorted(names)]
    stamp = tuple((f, st.st_size, st.st_mtime_ns) for f in files for st in [os.stat(f)])

    def digest():
        h = hashlib.sha256()
        for full in files:
            h.update(f"{os.path.relpath(full, path)}\0{sha256_file(full)}\n".encode())
        return h.hexdigest()

    return cached(("dir_identity", path, stamp), digest)


def read_model_index(path):
    index = os.path.join(path, "model_index.json")
    try:
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ReproError(f"pretrained {path}: model_index.json is not readable JSON ({e})") from None
    if not isinstance(data, dict) or "_class_name" not in data:
        raise ReproError(f"pretrained {path}: model_index.json has no _class_name; not a ppdiffusers pipeline")
    return data


def check_pretrained(path, required=("unet", "vae", "text_encoder", "tokenizer", "scheduler")):
    """Refuse a directory that is absent or incomplete, listing every missing file."""
    if not path:
        raise ReproError("model.pretrained is empty: give a local ppdiffusers pipeline directory "
                         f"(--pretrained PATH) or {TINY_SD}")
    if not os.path.isdir(path):
        raise ReproError(f"pretrained model directory not found: {path} (nothing is downloaded; "
                         "convert or download the model into a local directory first)")
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise ReproError(f"pretrained {path} is incomplete: missing model_index.json")
    index = read_model_index(path)
    missing = []
    for comp in required:
        entry = index.get(comp)
        folder = os.path.join(path, comp)
        if not isinstance(entry, list) or entry[0] is None:
            missing.append(f"{comp} (not in model_index.json)")
            continue
        if entry[0] not in LIBRARIES:
            raise ReproError(f"pretrained {path}: {comp} comes from library {entry[0]!r}; "
                             f"only {', '.join(sorted(LIBRARIES))} are loaded")
        if not os.path.isdir(folder):
            missing.append(f"{comp}/")
            continue
        files = os.listdir(folder)
        if comp == "tokenizer":
            if not ({"vocab.json", "merges.txt"} <= set(files) or "vocab.txt" in files):
                missing.append(f"{comp}/vocab.json+merges.txt or vocab.txt")
        elif comp == "scheduler":
            if "scheduler_config.json" not in files:
                missing.append(f"{comp}/scheduler_config.json")
        else:
            if "config.json" not in files:
                missing.append(f"{comp}/config.json")
            if not any(f.endswith(WEIGHT_EXTS) for f in files):
                missing.append(f"{comp}/ weights (*.safetensors or *.pdparams)")
    if missing:
        raise ReproError(f"pretrained {path} is incomplete: missing {', '.join(missing)}")
    return index


def pretrained_identity(spec):
    """'<model.pretrained> sha256:<dir_identity>' of a checked pretrained directory, for provenance."""
    path = resolve_pretrained(spec)
    check_pretrained(path)
    return f"{spec} sha256:{dir_identity(path)}"



def resolve_pretrained(spec):
    """A local directory for model.pretrained; builtin:tiny-sd is written to the cache on first use."""
    if spec == TINY_SD:
        return builtin_dir(f"tiny-sd-v{TINY_SD_VERSION}", write_tiny_sd)
    return os.path.abspath(os.path.expanduser(spec)) if spec else spec



def load_component(path, name, index=None):
    """One component (unet, vae, text_encoder, tokenizer, scheduler) of a checked directory."""
    index = index or read_model_index(path)
    library, class_name = index[name]
    ppdiffusers()
    module = importlib.import_module(LIBRARIES[library])
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ReproError(f"pretrained {path}: {name} class {class_name!r} is not in {LIBRARIES[library]}")
    try:
        with quiet():
            return cls.from_pretrained(os.path.join(path, name))
    except ReproError:
        raise
    except Exception as e:  # a damaged file surfaces as many exception types
        raise ReproError(f"pretrained {path}: cannot load {name} ({type(e).__name__}: {str(e).splitlines()[0]})") \
            from None


def load_pipeline(path, scheduler=""):
    """A StableDiffusionPipeline from a checked local directory, no safety checker
    (generation here is for evaluation), progress bars off."""
    index = check_pretrained(path)
    StableDiffusionPipeline = ppdiffusers().StableDiffusionPipeline
    parts = {name: load_component(path, name, index) for name in ("unet", "vae", "text_encoder", "tokenizer",
                                                                   "scheduler")}
    if scheduler:
        parts["scheduler"] = make_scheduler(scheduler, parts["scheduler"].config)
    with quiet():
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def with_scheduler(pipe, name):
    """The same pipeline with another sampler ('' keeps its own)."""
    if not name:
        return pipe
    with quiet():
        pipe = type(pipe)(**{**pipe.components, "scheduler": make_scheduler(name, pipe.scheduler.config)})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_scheduler(name, config):
    if name not in SCHEDULERS:
        raise ReproError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")
    with quiet():
        return getattr(ppdiffusers(), SCHEDULERS[name]).from_config(config)


