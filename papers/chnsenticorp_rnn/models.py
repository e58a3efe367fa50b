"""PaddleNLP's BoW, Bi-LSTM and TextCNN classifiers (examples/text_classification/rnn/model.py),
written here on paddlenlp.seq2vec's encoders, with their layer sizes. Padding is id 0."""
import paddle
from paddle import nn


class BoW(nn.Layer):
    def __init__(self, vocab_size, mc):
        import paddlenlp
        super().__init__()
        self.embedder = nn.Embedding(vocab_size, mc.emb_dim, padding_idx=0)
        self.encoder = paddlenlp.seq2vec.BoWEncoder(mc.emb_dim)
        self.fc1 = nn.Linear(mc.emb_dim, mc.hidden_size)
        self.fc2 = nn.Linear(mc.hidden_size, mc.fc_hidden_size)
        self.output = nn.Linear(mc.fc_hidden_size, 2)

    def forward(self, ids):
        h = paddle.tanh(self.encoder(self.embedder(ids)))
        return self.output(paddle.tanh(self.fc2(paddle.tanh(self.fc1(h)))))


class BiLSTM(nn.Layer):
    def __init__(self, vocab_size, mc):
        import paddlenlp
        super().__init__()
        self.embedder = nn.Embedding(vocab_size, mc.emb_dim, padding_idx=0)
        self.encoder = paddlenlp.seq2vec.LSTMEncoder(mc.emb_dim, mc.lstm_hidden_size, direction="bidirect")
        self.fc = nn.Linear(self.encoder.get_output_dim(), mc.fc_hidden_size)
        self.output = nn.Linear(mc.fc_hidden_size, 2)

    def forward(self, ids):
        lengths = (ids != 0).astype("int64").sum(axis=1)  # the rows' own lengths: padding is not read
        h = self.encoder(self.embedder(ids), sequence_length=lengths)
        return self.output(paddle.tanh(self.fc(h)))


class TextCNN(nn.Layer):
    def __init__(self, vocab_size, mc):
        import paddlenlp
        super().__init__()
        self.embedder = nn.Embedding(vocab_size, mc.emb_dim, padding_idx=0)
        self.encoder = paddlenlp.seq2vec.CNNEncoder(mc.emb_dim, mc.num_filter, ngram_filter_sizes=(1, 2, 3))
        self.fc = nn.Linear(self.encoder.get_output_dim(), mc.fc_hidden_size)
        self.output = nn.Linear(mc.fc_hidden_size, 2)

    def forward(self, ids):
        ids = nn.functional.pad(ids, [0, 2], value=0, data_format="NL")  # at least the widest window
        return self.output(self.fc(paddle.tanh(self.encoder(self.embedder(ids)))))


def build(mc, vocab_size):
    return {"bow": BoW, "bilstm": BiLSTM, "textcnn": TextCNN}[mc.network](vocab_size, mc)
