"""The paper contract: what a plugin under papers/<name>/ declares.

A paper is a subclass of ``Paper`` with:
  name, title, citation, url       who and where
  config_class                     typed schema of its YAML configs
  experiments                      the cells of its results table (``Experiment``)
  default_experiment               what `--paper X` runs with no `--exp`
  build_model(cfg)                 a paddle.nn.Layer
  build_data(cfg)                  a ``Data`` with the train arrays and eval splits
  loss(outputs, labels)            a scalar paddle Tensor
  metrics(cfg)                     {name: metric object} from metrics/ (update/compute)
A paper that needs a different step overrides ``train_step``; nothing else in
the loop is pluggable on purpose. A generative paper (whose evaluation samples
from the model rather than scoring its outputs on labelled rows) also sets
``evaluate`` and ``pipeline``; see papers/sd_lora for one.
"""
import os
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config: str  # YAML path relative to the repo root, e.g. configs/mnist1d/cnn.yaml
    targets: tuple = ()
    # the registered evaluation data: {split: (sample count, repro.data.fingerprint)};
    # verify rejects a run whose logged evaluation data differ
    eval_data: dict = field(default_factory=dict)

    @property
    def config_path(self):
        return os.path.join(REPO_ROOT, self.config)


@dataclass
class Data:
    """Arrays for one experiment. eval: {split name: (x, y)}; train: (x, y).

    ``fingerprints`` names what was used (e.g. {'test': sha256}) so a run's log
    can say which data it saw.
    """
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
    name = ""
    title = ""
    citation = ""
    url = ""
    config_class = None
    experiments = ()
    default_experiment = ""
    # optional: augment(x, rng), training-time augmentation of a preprocessed
    # numpy batch drawing only from rng (a Generator seeded by seed and step)
    augment = None
    # optional: module path of a reference implementation (e.g. PyTorch) that
    # `python -m repro.align ladder` checks the port against; see repro/align/ladder.py
    reference = None
    # optional: evaluate(model, cfg, data, dist) -> (metrics, samples), replacing
    # repro.eval's score-the-outputs loop (e.g. generate images, then FID / CLIP)
    evaluate = None
    # config keys that may differ from the registered config without the run
    # departing from the protocol: local paths whose content provenance() pins
    free_keys = ()
    # {provenance name: (free key, config key of the sha256 it must have)}: where the
    # registered config pins that sha256, verify requires it of the logged provenance;
    # where it leaves it empty, verify warns that the result rests on the run's own file
    pins = {}

    def experiment(self, name=None):
        from repro.errors import ReproError
        name = name or self.default_experiment
        for exp in self.experiments:
            if exp.name == name:
                return exp
        known = ", ".join(e.name for e in self.experiments)
        raise ReproError(f"paper {self.name!r} has no experiment {name!r}; experiments: {known}")

    def build_model(self, cfg):
        raise NotImplementedError

    def build_data(self, cfg):
        raise NotImplementedError

    def loss(self, outputs, labels):
        raise NotImplementedError

    def metrics(self, cfg):
        raise NotImplementedError

    def init_model(self, model, data):
        """Data-dependent initialisation before the first step (not on resume),
        e.g. a per-pixel mean kept as a model buffer so checkpoints carry it."""

    def provenance(self, cfg):
        """{name: identity} of what a run used besides its code, config and data
        (e.g. a pretrained model's sha256); logged in the run header."""
        return {}

    def pipeline(self, model, cfg):
        """Generative papers: a ppdiffusers pipeline over the trained model, for repro.generate."""
        raise NotImplementedError(f"paper {self.name!r} does not generate images")

    def input_spec(self, cfg):
        """[paddle.static.InputSpec] of the model's input, for repro.export."""
        raise NotImplementedError

    def train_step(self, model, optimizer, batch, amp):
        """One optimisation step; returns the loss tensor. amp is a repro.amp.Amp."""
        x, y = batch
        with amp.autocast():
            loss = self.loss(model(x), y)
        amp.backward_step(loss, optimizer)
        optimizer.clear_grad()
        return loss
