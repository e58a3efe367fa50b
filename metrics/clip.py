"""Image and text embeddings from a local CLIP model, for the CLIP score.

CLIPEmbedder(path) loads a paddlenlp CLIPModel or ChineseCLIPModel from a local
directory (config.json, weights, processor files) and returns the projected,
unnormalised embeddings that get_image_features / get_text_features give; the
cosine and scaling are metrics.generative.CLIPScore's. Nothing is downloaded:
a directory that lacks a file is a ReproError naming the file.

write_tiny_clip() writes a tiny randomly initialised model of either kind for
tests and smoke runs; write_byte_bpe_tokenizer_files() writes a byte-level
CLIP BPE vocabulary with no merges, so that any text, Chinese included,
tokenizes into byte tokens and never to the unknown token.
"""
import contextlib
import hashlib
import json
import logging
import os

import numpy as np

from repro.errors import ReproError

# architecture name / model_type in config.json -> kind
KINDS = {"CLIPModel": "clip", "clip": "clip", "ChineseCLIPModel": "chinese_clip", "chinese_clip": "chinese_clip"}
TOKENIZER_FILES = {"clip": ("vocab.json", "merges.txt"), "chinese_clip": ("vocab.txt",)}
PROCESSOR_FILES = ("preprocessor_config.json",)
# the model's weights: the first of these present, in the order paddlenlp's
# from_pretrained looks for them in a local directory; an *.index.json names shards
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "model_state.pdparams.index.json",
                "model_state.pdparams")


def bytes_to_unicode():
    """GPT-2/CLIP's table from the 256 byte values to printable unicode symbols
    (the same as paddlenlp.transformers.clip.tokenizer.bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_byte_bpe_tokenizer_files(path):
    """Write vocab.json and merges.txt of a byte-level CLIP BPE tokenizer with no merges.

    The vocabulary is the 256 byte symbols, the same with "</w>" (a word's last
    byte), then "<|startoftext|>" and "<|endoftext|>" (ids 512 and 513, so the
    end token is the highest id, as in CLIP). CLIPTokenizer skips the first line
    of merges.txt (the "#version" header), so a file holding only that header
    is an empty merge table. Returns the vocabulary (token -> id).
    """
    os.makedirs(path, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    return vocab


def _write_char_vocab(path):
    """vocab.txt for a tiny Chinese CLIP (BERT WordPiece): specials, printable
    ASCII with its "##" continuations, and every CJK Unified Ideograph."""
    ascii_chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    tokens = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ascii_chars + ["##" + c for c in ascii_chars]
              + [chr(c) for c in range(0x4E00, 0xA000)])
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return len(tokens)


def _init_weights(model, seed):
    """Fill every parameter from numpy's generator, so a seed gives the same
    weights (and weight file) on any device. LayerNorms 1 and 0, biases 0,
    embedding tables N(0, 1), matrices N(0, 1/fan_in) (large enough that random
    images and different prompts get clearly different embeddings, which the
    library's 0.02 initialisation does not give a tiny model); logit_scale keeps
    its configured value."""
    from paddle import nn

    rng = np.random.default_rng(seed)
    norm = {id(p) for layer in model.sublayers() if isinstance(layer, nn.LayerNorm) for p in layer.parameters()}
    for name, p in model.named_parameters():
        shape = list(p.shape)
        if name.endswith("logit_scale"):
            continue
        if id(p) in norm:
            value = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        elif name.endswith("bias"):
            value = np.zeros(shape)
        elif "embedding" in name:
            value = rng.normal(0.0, 1.0, shape)
        else:  # paddle Linear weights are [in, out]; conv weights [out, in, kh, kw]
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            value = rng.normal(0.0, fan_in ** -0.5, shape)
        p.set_value(value.astype(np.float32))


def write_tiny_clip(path, seed=0, kind="clip"):
    """Write a tiny randomly initialised CLIP (kind "clip": byte-BPE tokenizer)
    or Chinese CLIP (kind "chinese_clip": BERT character vocabulary) with its
    processor files into `path`, loadable by CLIPEmbedder(path). Two towers of
    hidden size 32 and 2 layers, 32x32 images in 8x8 patches, projection_dim 16.
    For tests and smoke runs only. Returns `path`."""
    from paddlenlp.transformers import (
        ChineseCLIPConfig,
        ChineseCLIPImageProcessor,
        ChineseCLIPModel,
        ChineseCLIPProcessor,
        ChineseCLIPTokenizer,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    if kind not in TOKENIZER_FILES:
        raise ValueError(f"kind must be one of {sorted(TOKENIZER_FILES)}, got {kind!r}")
    os.makedirs(path, exist_ok=True)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    vision = dict(tower, image_size=32, patch_size=8)
    images = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
    if kind == "clip":
        vocab = write_byte_bpe_tokenizer_files(path)
        tokenizer = CLIPTokenizer(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"))
        eos = vocab["<|endoftext|>"]
        text = dict(tower, vocab_size=len(vocab), max_position_embeddings=77,
                    bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        processor = CLIPProcessor(CLIPImageProcessor(**images), tokenizer)
    else:
        n = _write_char_vocab(path)
        tokenizer = ChineseCLIPTokenizer(os.path.join(path, "vocab.txt"), model_max_length=52)
        text = dict(tower, vocab_size=n, max_position_embeddings=64, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
        model = ChineseCLIPModel(ChineseCLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        processor = ChineseCLIPProcessor(ChineseCLIPImageProcessor(**images), tokenizer)
    _init_weights(model, seed)
    with _paddlenlp_warnings():
        model.save_pretrained(path, safe_serialization=True)
        processor.save_pretrained(path)
    return path


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _weight_files(path):
    """(weight files, missing shards) of a model directory: [file] or [index,
    *shards] for the first of WEIGHT_FILES present; (None, None) if none is."""
    for name in WEIGHT_FILES:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            continue
        if not name.endswith(".index.json"):
            return [name], []
        try:
            with open(file, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise ReproError(f"CLIP model {path}: unreadable weight index {name}: {e}")
        return [name] + shards, [s for s in shards if not os.path.isfile(os.path.join(path, s))]
    return None, None


def weights_sha256(path, files):
    """sha256 of the weights: for one file its plain sha256 (what sha256sum
    prints); for an index and shards, sha256 over each file's name and sha256."""
    if len(files) == 1:
        return _sha256_file(os.path.join(path, files[0]))
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{_sha256_file(os.path.join(path, name))}\n".encode())
    return h.hexdigest()


def _model_kind(path):
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ReproError(f"CLIP model {path}: unreadable config.json: {e}")
    if not isinstance(config, dict):
        raise ReproError(f"CLIP model {path}: config.json is not a JSON object")
    names = list(config.get("architectures") or []) + [config.get("model_type")]
    kinds = {KINDS[n] for n in names if n in KINDS}
    if len(kinds) != 1:
        raise ReproError(f"CLIP model {path}: config.json architectures {config.get('architectures')} / "
                         f"model_type {config.get('model_type')!r} is neither CLIPModel (clip) nor "
                         f"ChineseCLIPModel (chinese_clip)")
    return kinds.pop()


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _paddlenlp_warnings():
    """Quiet paddlenlp's INFO logging (it prints the whole config on load) and
    collect its warnings."""
    log = logging.getLogger("PaddleNLP")
    level, handler = log.level, _Messages()
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _missing_files(path, kind):
    """What a model directory lacks, and its weight files."""
    weights, missing = _weight_files(path)
    if weights is None:
        missing = ["weights (one of " + ", ".join(WEIGHT_FILES) + ")"]
    if kind is None:
        missing.insert(0, "config.json")
        tokenizers = [files for files in TOKENIZER_FILES.values()
                      if all(os.path.isfile(os.path.join(path, f)) for f in files)]
        if not tokenizers:
            missing.append("tokenizer files (" + " or ".join("+".join(f) for f in TOKENIZER_FILES.values()) + ")")
    else:
        missing += [f for f in TOKENIZER_FILES[kind] if not os.path.isfile(os.path.join(path, f))]
    missing += [f for f in PROCESSOR_FILES if not os.path.isfile(os.path.join(path, f))]
    return missing, weights


class CLIPEmbedder:
    """Projected image and text embeddings (float64, not L2-normalised) from a
    local paddlenlp CLIP or Chinese CLIP directory.

    identity: "clip <model_type> <directory name> sha256:<weights_sha256>".
    Texts are padded to max_length (77 for CLIP) whatever the batch, so a
    prompt's embedding does not depend on the prompts batched with it.
    """

    def __init__(self, path):
        path = os.path.abspath(os.path.expanduser(str(path)))
        if not os.path.isdir(path):
            raise ReproError(f"CLIP model directory not found: {path}")
        has_config = os.path.isfile(os.path.join(path, "config.json"))
        self.kind = _model_kind(path) if has_config else None
        missing, weights = _missing_files(path, self.kind)
        if missing:
            raise ReproError(f"CLIP model {path}: missing {', '.join(missing)}")

        import paddle
        from paddlenlp.transformers import (
            ChineseCLIPModel,
            ChineseCLIPProcessor,
            CLIPModel,
            CLIPProcessor,
        )

        model_cls, processor_cls = ((CLIPModel, CLIPProcessor) if self.kind == "clip"
                                    else (ChineseCLIPModel, ChineseCLIPProcessor))
        self._paddle = paddle
        with _paddlenlp_warnings() as warnings:
            try:
                self.model = model_cls.from_pretrained(path, dtype="float32")
                self.processor = processor_cls.from_pretrained(path)
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise ReproError(f"CLIP model {path}: cannot load: {str(e).splitlines()[0] if str(e) else e!r}")
        # paddlenlp only logs weights the checkpoint lacks (left randomly initialised): refuse those
        uninitialised = [m for m in warnings if "were not initialized from the model checkpoint" in m]
        if uninitialised:
            first = uninitialised[0].splitlines()
            detail = first[0] + (" ..." if len(first) > 1 or len(uninitialised) > 1 else "")
            raise ReproError(f"CLIP model {path}: the weights do not match {model_cls.__name__}: {detail[:500]}")
        self.model.eval()
        self.tokenizer = self.processor.tokenizer
        text_config = self.model.config.text_config
        limit = getattr(self.tokenizer, "model_max_length", None) or 10**9
        self.max_length = int(min(text_config.max_position_embeddings, limit))
        self.dim = int(self.model.config.projection_dim)
        self.path = path
        self.weights_sha256 = weights_sha256(path, weights)
        self.identity = f"clip {self.kind} {os.path.basename(path)} sha256:{self.weights_sha256}"

    def tokenize(self, prompts):
        """The tokenizer's batch for `prompts`: every prompt padded (and truncated) to max_length."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a list of strings")
        return self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=self.max_length,
                              return_attention_mask=True, return_tensors="np")

    def texts(self, prompts, batch_size=64):
        """list[str] -> float64 [N, D] text embeddings (get_text_features); a
        prompt longer than max_length tokens is truncated (its end token kept)."""
        if isinstance(prompts, str):
            raise TypeError("texts() takes a list of prompts, not one string")
        prompts = list(prompts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = []
        for i in range(0, len(prompts), batch_size):
            enc = self.tokenize(prompts[i:i + batch_size])
            inputs = {k: self._paddle.to_tensor(np.asarray(enc[k], np.int64))
                      for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
            if self.kind == "clip":
                inputs.pop("token_type_ids", None)
            with self._paddle.no_grad():
                out.append(self.model.get_text_features(**inputs).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    def images(self, images, batch_size=16):
        """uint8 [N, H, W, 3] -> float64 [N, D] image embeddings (get_image_features)."""
        from PIL import Image

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = []
        for i in range(0, len(images), batch_size):
            batch = [Image.fromarray(im) for im in images[i:i + batch_size]]
            pixels = self.processor.image_processor(batch, return_tensors="np")["pixel_values"]
            with self._paddle.no_grad():
                x = self._paddle.to_tensor(np.asarray(pixels, np.float32))
                out.append(self.model.get_image_features(pixel_values=x).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, self.dim))
