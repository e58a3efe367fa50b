"""Kim, Convolutional Neural Networks for Sentence Classification, EMNLP 2014.

CNN-rand on SST-2 (Table 2: 82.7): word vectors initialised at random and
trained; filter windows 3, 4, 5 with 100 feature maps each, ReLU, max-over-time
pooling, dropout 0.5 on the penultimate layer, an l2 max-norm constraint of 3 on
the output weights, mini-batches of 50, Adadelta; trained on phrases and
sentences. Judged on GLUE's SST-2 dev split, since the test labels are not
public. See README.md here for the recipe's details and the deviations.
"""
from dataclasses import dataclass, field


from repro.config import TextDataConfig, TrainConfig, choice
from repro.paper import Experiment, TextClassificationPaper
from repro.targets import Policy, Target

SOURCE = ("Kim 2014, Table 2, CNN-rand, SST-2 (82.7% test accuracy); judged here on GLUE SST-2 dev "
          "(872 sentences), as GLUE publishes no test labels")
# from the calibration seeds 100-101 by the rule in README.md (sigma 0.33: the rule's floor)
TOLERANCE = 1.0
DEV = (872, "4b978815c3366c792e61a655572fa683e5acaddc4717607dce59f727f97d1861")  # token ids and labels (--print-eval-data)


@dataclass
class ModelConfig:
    emb_dim: int = 300
    windows: list[int] = field(default_factory=lambda: [3, 4, 5])
    feature_maps: int = 100
    dropout: float = 0.5
    max_norm: float = 3.0  # l2 norm of each output unit's weight vector; 0: no constraint
    init_scale: float = 0.25  # word vectors start uniform in [-a, a] (Kim's code, CNN-rand)


@dataclass
class DataConfig(TextDataConfig):
    source: str = choice("sst2", ("sst2", "synthetic"), "sst2: GLUE SST-2 (REPRO_DATA_DIR or --data-dir); "
                                                        "synthetic: made-up sentences for smoke runs")


@dataclass
class KimConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class KimCNN(TextClassificationPaper):
    name = "kim_cnn"
    title = "Convolutional Neural Networks for Sentence Classification"
    citation = "Kim, Y. Convolutional Neural Networks for Sentence Classification. EMNLP 2014. arXiv:1408.5882"
    url = "https://arxiv.org/abs/1408.5882"
    config_class = KimConfig
    experiments = (Experiment("sst2", "CNN-rand on SST-2 (phrases and sentences), dev accuracy", "sst2.yaml",
                              (Target("dev_acc", 82.7, "higher", TOLERANCE, SOURCE,
                                      Policy("mean_of_n", 3, seeds=(0, 1, 2), audit=5384)),),
                              eval_data={"dev": DEV}),)
    default_experiment = "sst2"
    config_dir = "../../configs/kim_cnn"
    train_split, eval_splits = "train", ("dev",)
    class_names = ("negative", "positive")

    def read_texts(self, cfg, split):
        if cfg.data.source == "synthetic":
            return self.synthetic_split(cfg, split)
        from repro.datasets import sst2
        return sst2.read_split(split)

    def build_model(self, cfg, vocab_size):
        from .model import KimCNNModel
        return KimCNNModel(vocab_size, cfg.model)

    def train_step(self, model, optimizer, batch, amp, cfg):
        loss = super().train_step(model, optimizer, batch, amp, cfg)
        if cfg.model.max_norm:
            getattr(model, "_layers", model).constrain(cfg.model.max_norm)
        return loss


PAPER = KimCNN()
