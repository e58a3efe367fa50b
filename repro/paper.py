"""The paper contract: what a plugin declares.

A plugin is a Python package whose ``PAPER`` is an instance of one of:

  ClassificationPaper  the model scores labelled rows: logits, cross-entropy,
                       accuracy by default; exported for Paddle Inference
  GenerativePaper      evaluation samples from the model (images) and scores the
                       samples; it brings evaluate() and pipeline()

Both are a ``Paper``, which declares every member a plugin can have, below.
Paths a paper names (its configs, any files it ships) are relative to its own
package folder, so the same plugin works inside this repository and outside it.
Nothing else in the training loop is pluggable on purpose: a paper that needs
a different step overrides ``train_step``.
"""
import os
import sys
from dataclasses import dataclass, field

from repro.errors import ReproError


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
        from repro.config import load_config
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

    def train_step(self, model, optimizer, batch, amp):
        """One optimisation step; returns the loss tensor. amp is a repro.amp.Amp."""
        x, y = batch
        with amp.autocast():
            loss = self.loss(model(x), y)
        amp.backward_step(loss, optimizer)
        optimizer.clear_grad()
        return loss

    def init_model(self, model, data):
        """Data-dependent initialisation before the first step (not on resume),
        e.g. a per-pixel mean kept as a model buffer so checkpoints carry it."""

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
        from repro.metrics import build_metric
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


class GenerativePaper(Paper):
    """A model whose evaluation generates samples (images) and scores them; its
    train_step gets the loss from the model itself (forward(*batch) is the loss)."""

    def train_step(self, model, optimizer, batch, amp):
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
