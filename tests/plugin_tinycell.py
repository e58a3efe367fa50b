"""A paper plugin that lives outside this repository, as a contestant writes one:
a package folder with its own configs, registered with --papers PATH. Used by
tests/test_contest.py (which writes these files into a temporary repository)."""

INIT = '''"""A tiny MNIST-1D cell: an MLP for a few hundred steps (a test plugin)."""
from dataclasses import dataclass, field

from repro.config import TrainConfig
from repro.paper import ClassificationPaper, Data, Experiment
from repro.targets import Policy, Target

from . import models

TEST = (1000, "5b45252af737bb954e45da270fc51c5a15b08af25eab200a3f938b6322903f33")


@dataclass
class ModelConfig:
    hidden: int = 32


@dataclass
class TinyConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class TinyCell(ClassificationPaper):
    name = "tinycell"
    title = "A tiny MNIST-1D cell"
    citation = "a test plugin"
    config_class = TinyConfig
    # the plugin's own bar is low: a contest judges by its own
    experiments = (Experiment("mlp", "an MLP on MNIST-1D", "mlp.yaml",
                              (Target("test_acc", 10.0, "higher", 0.0, "the plugin's own", Policy("mean_of_n", 2,
                                                                                                  seeds=(0, 1))),),
                              eval_data={"test": TEST}),)
    default_experiment = "mlp"

    def build_model(self, cfg):
        return models.build(cfg.model.hidden)

    def build_data(self, cfg):
        from repro.papers.mnist1d.data import generate
        d = generate(42, False)
        return Data(train=(d["x"].astype("float32"), d["y"].astype("int64")),
                    eval={"test": (d["x_test"].astype("float32"), d["y_test"].astype("int64"))})


PAPER = TinyCell()
'''

MODELS = '''from paddle import nn


def build(hidden):
    return nn.Sequential(nn.Linear(40, hidden), nn.ReLU(), nn.Linear(hidden, 10))
'''

CONFIG = '''train:
  steps: 300
  batch_size: 100
  optimizer: adam
  lr: 0.01
  eval_every: 100
  log_every: 100
  checkpoint_every: 100
  audit_every: 100
  seed: 0
  visualdl: false
lite:
  train.steps: 20
  train.eval_every: 10
  train.log_every: 10
  train.checkpoint_every: 10
  train.audit_every: 10
'''


def write(folder, side_effect=None):
    """The plugin package folder `folder` (named tinycell); side_effect: a path the
    package's import writes (to test that reading logs never imports it)."""
    import os
    os.makedirs(os.path.join(folder, "configs"), exist_ok=True)
    init = INIT if side_effect is None else f"open({side_effect!r}, 'w').write('imported')\n" + INIT
    for name, text in (("__init__.py", init), ("models.py", MODELS), ("configs/mlp.yaml", CONFIG)):
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
    return folder
