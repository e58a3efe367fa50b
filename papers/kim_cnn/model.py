"""Kim's CNN, on paddlenlp.seq2vec's CNNEncoder (one Conv2D per window over the
word vectors, an activation, max over time)."""
import paddle
from paddle import nn


class KimCNNModel(nn.Layer):
    def __init__(self, vocab_size, mc):
        import paddlenlp
        super().__init__()
        a = mc.init_scale
        self.embedder = nn.Embedding(vocab_size, mc.emb_dim, padding_idx=0,
                                     weight_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-a, a)))
        self.encoder = paddlenlp.seq2vec.CNNEncoder(mc.emb_dim, mc.feature_maps, ngram_filter_sizes=tuple(mc.windows),
                                                    conv_layer_activation=nn.ReLU())
        self.dropout = nn.Dropout(mc.dropout)
        self.output = nn.Linear(self.encoder.get_output_dim(), 2)
        self.pad = max(mc.windows) - 1  # zeros either side, as Kim pads: a sentence shorter than a window still has features

    def forward(self, ids):
        ids = nn.functional.pad(ids, [self.pad, self.pad], value=0, data_format="NL") if self.pad else ids
        return self.output(self.dropout(self.encoder(self.embedder(ids))))

    @paddle.no_grad()
    def constrain(self, max_norm):
        """Rescale each output unit's weight vector to l2 norm max_norm where it is longer (Kim 2014, 2.1)."""
        w = self.output.weight  # [features, classes]: a column per class
        norms = paddle.sqrt((w * w).sum(axis=0, keepdim=True))
        w.set_value(w * paddle.clip(max_norm / paddle.clip(norms, min=1e-12), max=1.0))
