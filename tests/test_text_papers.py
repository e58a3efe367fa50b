"""Text papers (kim_cnn, chnsenticorp_rnn): the vocabulary a run fits is its artifact,
token data fingerprint the same in every process, and eval, export and predict
need only the run directory and the evaluation split."""
import json
import os
import re
import shutil

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, cli, events, shared_file, subprocess_cli

from repro import eval as eval_cli, export, predict, train, verify
from repro.errors import ReproError
from repro.judge.compliance import LITE
from repro.registry import get_paper
from repro.run import rundir

REVIEW = "这家酒店很干净"

FINGERPRINTS = """
import sys
from repro.data import fingerprint
from repro.registry import get_paper
for name in ("kim_cnn", "chnsenticorp_rnn"):
    paper = get_paper(name)
    data = paper.data(paper.config(lite=True))
    print(name, fingerprint(*data.train), *[fingerprint(*xy) for xy in data.eval.values()])
"""


@pytest.mark.slow
def test_token_data_fingerprint_the_same_in_two_processes():
    """Object arrays of token ids hash by value: two interpreters with different
    hash seeds (and so different dict orders and object addresses) agree."""
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        import subprocess
        import sys
        p = subprocess.run([sys.executable, "-c", FINGERPRINTS], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout)
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == 2, outs


def test_fingerprint_of_rows_is_by_value():
    from repro.data import fingerprint
    rows = lambda *rs: np.array([np.asarray(r, np.int64) for r in rs] + [None], dtype=object)[:-1]
    a, b = rows([1, 2, 3], [4]), rows([1, 2, 3], [4])
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(rows([1, 2], [3, 4]))  # the same tokens, cut differently
    assert fingerprint(a) != fingerprint(rows([1, 2, 3], [5]))


@pytest.mark.slow
@pytest.mark.parametrize("paper_name", ["kim_cnn", "chnsenticorp_rnn"])
def test_registered_dev_data_are_what_the_shared_files_give(paper_name):
    """The registered (count, fingerprint) of each evaluation split is what
    `--print-eval-data` computes from the real files, in a fresh process."""
    shared_file("sst2" if paper_name == "kim_cnn" else "chnsenticorp")
    paper = get_paper(paper_name)
    for exp in paper.experiments:
        code, out, err = subprocess_cli("-m", "repro.train", "--paper", paper_name, "--exp", exp.name,
                                        "--print-eval-data", env={"REPRO_DATA_DIR": SHARED_DATA})
        assert code == 0, err
        assert f"eval_data={exp.eval_data!r}".replace("'", '"') == out.strip().splitlines()[-1], out
        if paper_name == "chnsenticorp_rnn":
            break  # the three networks share one data config


@pytest.fixture(scope="module")
def chn_run(tmp_path_factory):
    from repro.errors import run_cli
    run = str(tmp_path_factory.mktemp("chn") / "run")
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--paper", "chnsenticorp_rnn", "--exp", "textcnn", "--lite", "--out", run,
                             "-o", "train.visualdl=false"])
    assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        run_cli(export.main, [run])
    assert e.value.code == 0
    return run


def test_the_vocabulary_is_the_runs_artifact_with_its_sha256_in_the_header(chn_run):
    run = rundir.open_run(get_paper, chn_run)
    artifact = rundir.read_artifact(run)
    assert artifact["kind"] == "vocabulary" and artifact["tokens"][:2] == ["[PAD]", "[UNK]"]
    assert run.header["artifact_sha256"] == rundir.artifact_sha256(artifact)
    # the model's embedding is as large as the vocabulary
    model = rundir.load_trained(run)[0]
    assert model.embedder.weight.shape[0] == len(artifact["tokens"])
    # and the export carries it
    info = json.load(open(os.path.join(chn_run, "export", "export.json"), encoding="utf-8"))
    assert info["artifact"] == rundir.ARTIFACT
    assert json.load(open(os.path.join(chn_run, "export", rundir.ARTIFACT), encoding="utf-8")) == artifact


def test_export_says_how_to_predict_from_a_sentence(chn_run, tmp_path):
    lines = []
    export.export(chn_run, out=str(tmp_path / "exp"), echo=lines.append)
    from repro.hints import python
    assert lines[-1] == f'predict with: {python()} -m repro.predict {tmp_path / "exp"} "a sentence"', lines


def test_eval_and_predict_read_no_training_split(chn_run, monkeypatch, capsys):
    paper = get_paper("chnsenticorp_rnn")
    real = type(paper).read_texts

    def no_train(self, cfg, split):
        assert split != paper.train_split, "the training split was read"
        return real(self, cfg, split)

    monkeypatch.setattr(type(paper), "read_texts", no_train)
    monkeypatch.setattr(paper, "_data_cache", {})  # nothing segmented earlier in this process is reused
    code, out, err = cli(eval_cli.main, [chn_run, "--json", "--lite"], capsys)
    assert code == 0, err
    assert json.loads(out) == events(chn_run)[-1]["metrics"]
    code, out, err = cli(predict.main, [os.path.join(chn_run, "export"), REVIEW], capsys)
    assert code == 0, err


def test_predict_takes_a_sentence_and_prints_its_class_and_probability(chn_run, capsys):
    import paddle
    code, out, err = cli(predict.main, [os.path.join(chn_run, "export"), REVIEW, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)["results"][0]
    # the exported model's probability is the dynamic model's on the same ids
    run = rundir.open_run(get_paper, chn_run)
    paper, cfg = run.paper, run.cfg
    ids = paper.encode_text(REVIEW, cfg, rundir.read_artifact(run))
    model = rundir.load_trained(run)[0]
    with paddle.no_grad():
        probs = paddle.nn.functional.softmax(model(paddle.to_tensor(ids[None]))).numpy()[0]
    assert result["classes"] == [int(probs.argmax())]
    np.testing.assert_allclose(result["probs"][0], probs.max(), rtol=1e-5)

    code, out, err = cli(predict.main, [os.path.join(chn_run, "export"), REVIEW], capsys)
    assert code == 0, err
    names = "|".join(paper.class_names)
    assert re.fullmatch(rf"{REVIEW}\[0\]: class [01] ({names}) \(p=[01]\.\d{{3}}\)\n", out), out


@pytest.mark.slow
def test_a_moved_run_evaluates_and_predicts_in_a_fresh_process(chn_run, tmp_path):
    """Only the run directory travels: eval and predict in new interpreters, from another folder."""
    moved = str(tmp_path / "elsewhere")
    shutil.copytree(chn_run, moved)
    code, out, err = subprocess_cli("-m", "repro.eval", moved, "--json", "--lite")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == events(chn_run)[-1]["metrics"]
    code, out, err = subprocess_cli("-m", "repro.predict", os.path.join(moved, "export"), REVIEW)
    assert code == 0, err
    assert out.startswith(f"{REVIEW}[0]: class "), out


@pytest.mark.slow
def test_a_vocabulary_fitted_elsewhere_is_caught_by_recompute(chn_run, tmp_path, capsys):
    """A forger who swaps in another vocabulary (and re-chains the log to name its
    sha256) is caught: --recompute fits the vocabulary again from the registered
    config's training split."""
    from test_tamper import forge
    run = str(tmp_path / "run")
    shutil.copytree(chn_run, run, ignore=shutil.ignore_patterns("export"))
    evs = events(run)
    artifact = json.load(open(os.path.join(run, rundir.ARTIFACT), encoding="utf-8"))
    tokens = artifact["tokens"]
    tokens[2], tokens[3] = tokens[3], tokens[2]  # two words trade their vectors
    evs[0] = {**evs[0], "artifact_sha256": rundir.write_artifact(run, artifact)}
    forge(run, evs)
    code, out, _ = cli(verify.main, [run, "--json"], capsys)
    (r,) = json.loads(out)["runs"]
    assert r["problems"] == [LITE], r["problems"]  # the logs alone cannot tell
    code, out, _ = cli(verify.main, [run, "--json", "--recompute"], capsys)
    (r,) = json.loads(out)["runs"]
    assert code == 1 and any("is not what the registered config fits" in p for p in r["problems"]), r["problems"]


def test_a_malformed_vocabulary_is_one_clear_error(chn_run, tmp_path, capsys):
    run = str(tmp_path / "run")
    shutil.copytree(chn_run, run, ignore=shutil.ignore_patterns("export"))
    path = os.path.join(run, rundir.ARTIFACT)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"kind": "vocabulary", "tokens": ["[PAD]", "[UNK]", "a", "a"], "unk": "[UNK]", "pad": "[PAD]"}, f)
    code, _, err = cli(eval_cli.main, [run, "--json", "--lite"], capsys)
    assert code == 2 and "artifact" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    from repro.paper import vocab_from
    with pytest.raises(ReproError, match="distinct tokens"):
        vocab_from({"tokens": ["[PAD]", "[UNK]", "a", "a"], "unk": "[UNK]", "pad": "[PAD]"})


def test_kim_max_norm_constraint_and_adadelta_from_the_config():
    """train_step sees the config: Kim's l2 max-norm of 3 holds on every output
    unit after each step; Adadelta gets rho and epsilon from the schema."""
    import paddle

    from repro.run import recipe
    from repro.run.amp import Amp
    paper = get_paper("kim_cnn")
    cfg = paper.config(lite=True, overrides=["model.max_norm=0.05"])
    paddle.seed(0)
    model = paper.build_model(cfg, 50)
    opt = recipe.build_optimizer(cfg.train, model)
    assert isinstance(opt, paddle.optimizer.Adadelta)
    assert (opt._rho, opt._epsilon) == (cfg.train.rho, cfg.train.epsilon) == (0.95, 1e-6)
    x = paddle.to_tensor(np.random.default_rng(0).integers(1, 50, (4, 9)), dtype="int64")
    y = paddle.to_tensor([0, 1, 0, 1], dtype="int64")
    with paddle.no_grad():
        model.output.weight.set_value(model.output.weight * 100)  # far beyond the constraint
    paper.train_step(model, opt, (x, y), Amp(cfg.train.amp), cfg)
    norms = np.linalg.norm(model.output.weight.numpy(), axis=0)
    np.testing.assert_allclose(norms, 0.05, rtol=1e-5)
