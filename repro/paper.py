"""The paper contract: what a plugin declares.

A plugin is a Python package whose ``PAPER`` is an instance of one of:

  ClassificationPaper  the model scores labelled rows: logits, cross-entropy,
                       accuracy by default; exported for Paddle Inference
  TextClassificationPaper  a ClassificationPaper of labelled texts: the harness
                       fits a vocabulary on the training split (the run's
                       artifact), maps tokens to ids and pads batches
  GenerativePaper      evaluation samples from the model (images) and scores the
                       samples; it brings evaluate() and pipeline()

Both are a ``Paper``, which declares every member a plugin can have, below.
Paths a paper names (its configs, any files it ships) are relative to its own
package folder, so the same plugin works inside this repository and outside it.
Nothing else in the training loop is pluggable on purpose: a paper that needs
a different step overrides ``train_step``.
"""
import dataclasses
import os
import sys
from dataclasses import dataclass, field

from repro.config import load_config
from repro.data import synthetic_texts
from repro.errors import ReproError
from repro.metrics import build_metric


@dataclass(frozen=True)
class Experiment:
    """One cell of the paper's results table."""
    name: str
    description: str
    config: str  # the experiment's YAML, relative to the paper's config_dir, e.g. "cnn.yaml"
    targets: tuple = ()
    # the registered evaluation data: {split: (sample count, repro.data.fingerprint or None)};
    # verify rejects a run whose logged evaluation data differ
    eval_data: dict = field(default_factory=dict)


@dataclass
class Data:
    """Arrays for one experiment. train: (x, y); eval: {split name: (x, y)}."""
    train: tuple
    eval: dict
    info: dict = field(default_factory=dict)
    # stored rows -> model input, for training and evaluation alike (e.g. uint8
    # images -> float32); must be a pure function of the rows
    preprocess: object = None
    # training-time augmentation augment(x, rng) chosen by the config; when None
    # the paper's own ``augment`` (if any) is used
    augment: object = None
    # what the paper fitted on the training split (a vocabulary) and the model needs:
    # JSON-able, stored in the run directory (repro.run.rundir.ARTIFACT) and exported with the model
    artifact: dict = None

    def prepare(self, x):
        return x if self.preprocess is None else self.preprocess(x)


class Paper:
    """Every member a plugin can declare. Subclass ClassificationPaper or GenerativePaper."""

    # who
    name = ""            # the registry name; must be the plugin package's name
    title = ""
    citation = ""
    url = ""
    # what
    config_class = None  # a dataclass: the typed schema of the experiment YAMLs (repro.config)
    experiments = ()     # Experiment per cell of the results table
    default_experiment = ""
    config_dir = "configs"  # where the experiment YAMLs are, relative to the package folder
    # config keys naming local files (a pretrained model, a data folder, metric weights):
    # a run may set them to its own paths, because provenance() logs what they held
    path_keys = ()
    # {provenance name: (path key, config key of the sha256 it must have)}: where the
    # registered config pins that sha256, verify requires it of the logged provenance;
    # where it leaves it empty, verify warns that the result rests on the run's own file
    pins = {}
    # module path of a reference implementation (e.g. PyTorch) that
    # `python -m repro.align ladder` checks the port against; see repro/align/ladder.py
    reference = None
    # training-time augmentation augment(x, rng) of a preprocessed numpy batch, drawing
    # only from rng (a Generator seeded by seed and step); None: no augmentation
    augment = None

    # ------------------------------------------------------------ where things are

    @property
    def root(self):
        """The folder of the package that defines this paper."""
        module = sys.modules[type(self).__module__]
        return os.path.dirname(os.path.abspath(module.__file__))

    def config_path(self, exp):
        return os.path.normpath(os.path.join(self.root, self.config_dir, exp.config))

    def config(self, exp=None, lite=False, overrides=(), seed=None):
        """An experiment's resolved config (an Experiment or its name; default: the
        default experiment): defaults <- its YAML <- lite block <- overrides <- seed."""
        exp = exp if isinstance(exp, Experiment) else self.experiment(exp)
        return load_config(self.config_class, self.config_path(exp), lite=lite, overrides=overrides, seed=seed)

    def experiment(self, name=None):
        name = name or self.default_experiment
        for exp in self.experiments:
            if exp.name == name:
                return exp
        known = ", ".join(e.name for e in self.experiments)
        raise ReproError(f"paper {self.name!r} has no experiment {name!r}; experiments: {known}")

    # ------------------------------------------------------------ what every paper has

    def build_model(self, cfg):
        """A paddle.nn.Layer."""
        raise NotImplementedError

    def build_data(self, cfg):
        """A Data with the train arrays and the named evaluation splits."""
        raise NotImplementedError

    def metrics(self, cfg):
        """{name: metric object} (repro metrics: update/compute); metric m on split s is logged as s_m."""
        raise NotImplementedError

    def loss(self, outputs, labels):
        """A scalar paddle Tensor."""
        raise NotImplementedError

    def data(self, cfg, artifact=None, train=True):
        """How the harness asks for the data: build_data(cfg). A paper whose data and model
        depend on something fitted on the training split (TextClassificationPaper's vocabulary)
        extends this: given the run's artifact it reuses it, and train=False needs no training split."""
        return self.build_data(cfg)

    def model(self, cfg, artifact=None):
        """How the harness asks for the model: build_model(cfg) (see data())."""
        return self.build_model(cfg)

    def train_step(self, model, optimizer, batch, amp, cfg):
        """One optimisation step; returns the loss tensor. amp is a repro.run.amp.Amp."""
        x, y = batch
        with amp.autocast():
            loss = self.loss(model(x), y)
        amp.backward_step(loss, optimizer)
        optimizer.clear_grad()
        return loss

    def init_model(self, model, data):
        """Data-dependent initialisation before the first step (not on resume),
        e.g. a per-pixel mean kept as a model buffer so checkpoints carry it."""

    def fresh_split(self, cfg, n, seed):
        """(x, y): n new evaluation samples from the distribution of the registered evaluation
        split, drawn from `seed` (a generated dataset can; a contest's private evaluation uses it
        with a seed only the maintainers hold). A paper whose data are fixed files has none."""
        raise ReproError(f"paper {self.name!r} cannot generate a fresh split (its data are fixed files): "
                         f"give the private evaluation as a file the maintainers hold")

    def provenance(self, cfg):
        """{name: identity} of what a run used besides its code, config and data
        (e.g. a pretrained model's sha256); logged in the run header."""
        return {}


class ClassificationPaper(Paper):
    """A model that maps a batch of inputs to class logits [B, classes]: trained with
    cross-entropy and scored by accuracy unless the paper says otherwise; exported
    for Paddle Inference with input_spec; predict takes .npy arrays, and image
    files where the paper sets image_input."""

    # (mode, (width, height), preprocess): how an image file becomes one model input:
    # PIL mode ("L" or "RGB"), the size the data's rows have, and the Data.preprocess
    # that turns stored rows ([N, H, W] or [N, 3, H, W] uint8) into model input
    image_input = None

    def loss(self, outputs, labels):
        import paddle
        return paddle.nn.functional.cross_entropy(outputs, labels)

    def metrics(self, cfg):
        return {"acc": build_metric("accuracy")}

    def input_spec(self, cfg):
        """[paddle.static.InputSpec] of the model's input, for repro.export."""
        raise NotImplementedError

    def preprocess_image(self, path, cfg):
        """An image file -> one model input, as the data's rows are preprocessed."""
        import numpy as np
        from PIL import Image
        if self.image_input is None:
            raise NotImplementedError
        mode, size, preprocess = self.image_input
        with Image.open(path) as img:
            rows = np.asarray(img.convert(mode).resize(size), dtype=np.uint8)
        if mode == "RGB":
            rows = rows.transpose(2, 0, 1)
        return preprocess(rows[None])[0]


class TextClassificationPaper(ClassificationPaper):
    """Labelled texts. The paper reads raw texts (read_texts) and cuts them into
    tokens (tokenize); the harness fits a vocabulary on the training split
    (paddlenlp.data.Vocab: [PAD] = 0, [UNK] = 1, then by frequency), which is the
    run's artifact (stored in the run directory and exported with the model), maps
    tokens to ids (at most data.max_len of them, when the config has it) and pads
    each batch to its longest row with paddlenlp.data.Pad. The model gets int64 ids
    [B, L] with 0 for padding; build_model(cfg, vocab_size) makes it.

    The paper's data config subclasses repro.config.TextDataConfig: data.min_freq
    (tokens seen fewer times are [UNK]), data.max_len (0: no limit) and the sizes
    of the made-up splits of --lite runs (repro.data.synthetic_texts)."""

    train_split = "train"      # the paper's own split names
    eval_splits = ("dev",)
    class_names = ()           # e.g. ("negative", "positive"), for repro.predict

    synthetic_chinese = False  # made-up texts of --lite runs in Chinese (no spaces between words)

    def read_texts(self, cfg, split):
        """(list of texts, int64 labels) of one split; for made-up data (a --lite run),
        return self.synthetic_split(cfg, split)."""
        raise NotImplementedError

    def synthetic_split(self, cfg, split):
        """Made-up labelled texts for one split (repro.data.synthetic_texts): the training
        split has data.synthetic_train of them, any other data.synthetic_dev; the same
        sentences every time (evaluation splits share theirs)."""
        train = split == self.train_split
        n = cfg.data.synthetic_train if train else cfg.data.synthetic_dev
        return synthetic_texts(n, seed=1 if train else 2, chinese=self.synthetic_chinese)

    def tokenize(self, cfg, texts, vocab=None):
        """Token lists of the texts (vocab: the fitted Vocab, None while fitting it);
        by default lower-cased and split on white space."""
        return [t.lower().split() for t in texts]

    def build_model(self, cfg, vocab_size):
        raise NotImplementedError

    def model(self, cfg, artifact=None):
        if artifact is None:
            raise ReproError(f"{self.name}'s model needs the vocabulary a run fitted: give the run directory")
        return self.build_model(cfg, len(artifact["tokens"]))

    def data(self, cfg, artifact=None, train=True):
        """Segmenting thousands of texts takes tens of seconds (jieba), so the result is
        kept per process for the same data config, artifact and split choice: an audit
        child that recomputes several runs of one paper segments once."""
        import json
        key = (json.dumps(dataclasses.asdict(cfg.data), sort_keys=True, default=str),
               None if artifact is None else json.dumps(artifact, sort_keys=True), train)
        cache = self.__dict__.setdefault("_data_cache", {})
        if key not in cache:
            if len(cache) >= 4:
                cache.pop(next(iter(cache)))
            cache[key] = self._text_data(cfg, artifact, train)
        return cache[key]

    def _text_data(self, cfg, artifact, train):
        import numpy as np
        from paddlenlp.data import Pad, Vocab

        dc = cfg.data
        max_len, min_freq = dc.max_len, dc.min_freq
        vocab = None if artifact is None else vocab_from(artifact)
        need_train = train or vocab is None
        train_texts, train_y = self.read_texts(cfg, self.train_split) if need_train else ([], np.zeros(0, np.int64))
        if vocab is None:
            vocab = Vocab.build_vocab(self.tokenize(cfg, train_texts), min_freq=min_freq, unk_token="[UNK]",
                                      pad_token="[PAD]")
            artifact = {"kind": "vocabulary", "tokens": [vocab.idx_to_token[i] for i in range(len(vocab))],
                        "unk": "[UNK]", "pad": "[PAD]"}

        def ids(texts):
            rows = np.empty(len(texts), dtype=object)
            for i, tokens in enumerate(self.tokenize(cfg, texts, vocab)):
                rows[i] = np.asarray(vocab.to_indices(tokens[:max_len] if max_len else tokens) or [0], np.int64)
            return rows

        pad = Pad(pad_val=0, axis=0, dtype="int64")
        evals = {s: (ids(t), y) for s in self.eval_splits for t, y in [self.read_texts(cfg, s)]}
        return Data(train=(ids(train_texts), train_y) if train else (np.empty(0, object), train_y),
                    eval=evals, preprocess=lambda rows: pad(list(rows)), artifact=artifact)

    def encode_text(self, text, cfg, artifact):
        """One text as the model's input ids (for repro.predict)."""
        import numpy as np
        vocab = vocab_from(artifact)
        tokens = self.tokenize(cfg, [text], vocab)[0]
        max_len = cfg.data.max_len
        return np.asarray(vocab.to_indices(tokens[:max_len] if max_len else tokens) or [0], np.int64)

    def input_spec(self, cfg):
        import paddle
        return [paddle.static.InputSpec([None, None], "int64", "ids")]


def vocab_from(artifact):
    """A paddlenlp Vocab from a run's vocabulary artifact."""
    from paddlenlp.data import Vocab
    tokens = artifact.get("tokens") if isinstance(artifact, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens) or len(set(tokens)) != len(tokens) \
            or tokens[:2] != [artifact.get("pad"), artifact.get("unk")]:
        raise ReproError("the vocabulary artifact is not a list of distinct tokens starting [PAD], [UNK]")
    return Vocab.from_dict({t: i for i, t in enumerate(tokens)}, unk_token=artifact["unk"], pad_token=artifact["pad"])


class GenerativePaper(Paper):
    """A model whose evaluation generates samples (images) and scores them; its
    train_step gets the loss from the model itself (forward(*batch) is the loss)."""

    def train_step(self, model, optimizer, batch, amp, cfg):
        with amp.autocast():
            loss = model(*batch)
        amp.backward_step(loss, optimizer)
        optimizer.clear_grad()
        return loss

    def evaluate(self, model, cfg, data, dist):
        """(metrics, samples): sample from the model, then score ({split: samples counted})."""
        raise NotImplementedError

    def pipeline(self, model, cfg):
        """A ppdiffusers pipeline over the trained model, for repro.diffusion.generate."""
        raise NotImplementedError

    def publish(self, model, cfg, out):
        """Write the weights to share into out (repro.diffusion.submit); returns their kind."""
        raise NotImplementedError(f"paper {self.name!r} has no weights to submit")
