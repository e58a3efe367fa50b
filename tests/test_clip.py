"""metrics.clip: CLIP embeddings from a local model directory, on tiny random models."""
import os
import re
import shutil

import numpy as np
import pytest

from repro.metrics.clip import CLIPEmbedder, write_byte_bpe_tokenizer_files, write_tiny_clip
from repro.metrics.generative import CLIPScore
from repro.errors import ReproError

PROMPTS = ["a photo of a cat", "a photo of a dog", "一幅山水画"]


def _images(n, seed=0, h=40, w=48):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_clip(str(tmp_path_factory.mktemp("clip") / "tiny-clip"))


@pytest.fixture(scope="module")
def embedder(tiny):
    return CLIPEmbedder(tiny)


def test_tiny_clip_shapes_identity_and_determinism(tmp_path):
    path = write_tiny_clip(str(tmp_path / "tiny-clip"), seed=0)
    a, b = CLIPEmbedder(path), CLIPEmbedder(path)
    images = _images(5)
    ia, ta = a.images(images, batch_size=2), a.texts(PROMPTS, batch_size=2)
    assert ia.shape == (5, 16) and ta.shape == (3, 16)
    assert ia.dtype == np.float64 and ta.dtype == np.float64
    # two loads of the same directory give the same numbers; batching changes only the last bits (MKL's
    # AVX2 path, taken on AMD CPUs, blocks a product by its number of rows: repro.machine.mkl_path)
    np.testing.assert_array_equal(ia, b.images(images, batch_size=2))
    np.testing.assert_array_equal(ta, b.texts(PROMPTS, batch_size=2))
    np.testing.assert_allclose(ia, a.images(images, batch_size=16), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ta, a.texts(PROMPTS[::-1], batch_size=1)[::-1], rtol=0, atol=1e-6)

    assert re.fullmatch(r"clip clip tiny-clip sha256:[0-9a-f]{64}", a.identity), a.identity
    assert a.identity == b.identity
    # the weights come from numpy's generator: the same seed writes the same weights, another seed others
    assert CLIPEmbedder(write_tiny_clip(str(tmp_path / "again" / "tiny-clip"), seed=0)).identity == a.identity
    assert CLIPEmbedder(write_tiny_clip(str(tmp_path / "seed1" / "tiny-clip"), seed=1)).identity != a.identity


def test_embeddings_are_unnormalised_projections(embedder):
    import paddle

    images = _images(4, seed=1)
    got = embedder.images(images)
    # recompute get_image_features by hand: the vision tower's pooled output times the projection
    pixels = embedder.processor.image_processor(list(images), return_tensors="np")["pixel_values"]
    with paddle.no_grad():
        pooled = embedder.model.vision_model(pixel_values=paddle.to_tensor(pixels))[1].numpy()
    want = pooled.astype(np.float64) @ embedder.model.vision_projection.numpy().astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    texts = embedder.texts(PROMPTS)
    for e in (got, texts):
        assert e.shape[1] == embedder.dim == 16
        assert np.isfinite(e).all()
        assert not np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-3)  # not L2-normalised
    # different prompts and different images give different embeddings
    cos = texts @ texts.T / np.outer(np.linalg.norm(texts, axis=1), np.linalg.norm(texts, axis=1))
    assert cos[0, 1] < 0.99 and cos[0, 2] < 0.99 and cos[1, 2] < 0.99
    assert not np.allclose(got[0], got[1], atol=1e-3)


def test_clip_score_on_embeddings_matches_numpy_cosine(embedder):
    img, txt = embedder.images(_images(3, seed=2)), embedder.texts(PROMPTS)
    cos = (img * txt).sum(1) / (np.linalg.norm(img, axis=1) * np.linalg.norm(txt, axis=1))
    for scale in (100.0, 1.0):
        score = CLIPScore(scale=scale)
        score.update(img[:2], txt[:2])
        score.update(img[2:], txt[2:])
        assert score.compute() == pytest.approx(np.maximum(scale * cos, 0).mean(), rel=1e-12)


def test_byte_bpe_tokenizer_covers_chinese(tmp_path, embedder):
    from paddlenlp.transformers import CLIPTokenizer
    from paddlenlp.transformers.clip.tokenizer import bytes_to_unicode

    vocab = write_byte_bpe_tokenizer_files(str(tmp_path))
    symbols = list(bytes_to_unicode().values())
    assert list(vocab) == symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert tok.bpe_ranks == {}  # the "#version" header line is skipped: no merges

    text = "一幅山水画"
    ids = tok(text)["input_ids"]
    # CLIP's unknown token is <|endoftext|>, so an unknown piece would show up as the end id
    assert tok.unk_token_id == tok.eos_token_id == vocab["<|endoftext|>"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    body = ids[1:-1]
    assert len(body) == len(text.encode("utf-8")) == 15  # one token per UTF-8 byte
    assert tok.unk_token_id not in body
    assert tok.convert_tokens_to_string(tok.convert_ids_to_tokens(body)) == text

    # the same through the embedder, padded to 77 with the end token
    enc = embedder.tokenize([text])["input_ids"][0]
    assert len(enc) == 77 and list(enc[:17]) == ids and set(enc[17:]) == {tok.eos_token_id}
    zh, en = embedder.texts([text, "a landscape painting"])
    assert np.isfinite(zh).all() and not np.allclose(zh, en, atol=1e-3)
    long = embedder.tokenize(["word " * 200])["input_ids"][0]  # truncated, keeping the end token
    assert len(long) == 77 and long[-1] == tok.eos_token_id


def test_chinese_clip_directory(tmp_path):
    path = write_tiny_clip(str(tmp_path / "tiny-cn-clip"), kind="chinese_clip")
    e = CLIPEmbedder(path)
    assert e.kind == "chinese_clip" and e.identity.startswith("clip chinese_clip tiny-cn-clip sha256:")
    enc = e.tokenize(["一幅山水画"])
    ids = [i for i, m in zip(enc["input_ids"][0], enc["attention_mask"][0]) if m]
    assert len(ids) == 7 and e.tokenizer.unk_token_id not in ids  # [CLS] 5 characters [SEP]
    img, txt = e.images(_images(2)), e.texts(["一幅山水画", "一只猫"])
    assert img.shape == txt.shape == (2, 16)
    assert not np.allclose(txt[0], txt[1], atol=1e-3)
    np.testing.assert_array_equal(txt, CLIPEmbedder(path).texts(["一幅山水画", "一只猫"]))


def _error(path):
    with pytest.raises(ReproError) as e:
        CLIPEmbedder(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_directory_and_files(tmp_path, tiny):
    assert "not found" in _error(str(tmp_path / "nope"))

    no_weights = shutil.copytree(tiny, tmp_path / "no-weights")
    os.remove(no_weights / "model.safetensors")
    msg = _error(str(no_weights))
    assert "missing weights" in msg and "model.safetensors" in msg and "model_state.pdparams" in msg

    bare = tmp_path / "bare"
    bare.mkdir()
    msg = _error(str(bare))
    assert "config.json" in msg and "weights" in msg and "preprocessor_config.json" in msg

    no_tokenizer = shutil.copytree(tiny, tmp_path / "no-tokenizer")
    os.remove(no_tokenizer / "merges.txt")
    os.remove(no_tokenizer / "preprocessor_config.json")
    msg = _error(str(no_tokenizer))
    assert "merges.txt" in msg and "preprocessor_config.json" in msg and "vocab.json" not in msg

    other = shutil.copytree(tiny, tmp_path / "other")
    (other / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    assert "neither CLIPModel" in _error(str(other))


def test_pdparams_weights_and_weights_that_leave_parameters_uninitialised(tmp_path, tiny, embedder):
    import hashlib

    import paddle
    from safetensors.numpy import load_file

    state = load_file(os.path.join(tiny, "model.safetensors"))
    pd = shutil.copytree(tiny, tmp_path / "pdparams")
    os.remove(pd / "model.safetensors")
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(pd / "model_state.pdparams"))
    e = CLIPEmbedder(str(pd))
    # one weight file: the identity's hash is that file's plain sha256
    assert e.weights_sha256 == hashlib.sha256((pd / "model_state.pdparams").read_bytes()).hexdigest()
    images = _images(2)
    np.testing.assert_array_equal(e.images(images), embedder.images(images))

    del state["text_projection"]
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(pd / "model_state.pdparams"))
    msg = _error(str(pd))
    assert "do not match CLIPModel" in msg and "text_projection" in msg
