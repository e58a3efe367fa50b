"""repro.review of a text-to-image contest (issue 28), on the built-in tiny Stable
Diffusion: the example contest (configs/contests/text_to_image.yaml) passes an
honest bundle and rejects each dishonest one with its own reason (a work replaced
by another image, a work drawn with another seed than claimed, a LoRA swapped for
another, a card without its license, a base model other than the declared one,
another team's weights, a link), every work redrawn in the sandbox from the
submitted weights and scored by the judge; the strict contest schema; the
bundle readers on hostile files."""
import json
import os
import shutil
import time

import numpy as np
import pytest
from conftest import REPO, cli
import t2i_tampered
from contest_repo import commit_of, git
from PIL import Image

from repro import review
from repro.boundary import sandbox
from repro.boundary.tree import scan_tree
from repro.errors import ReproError
from repro.judge import copies, ledger
from repro.judge.contest import read_contest
from repro.judge.submissions import ReviewOptions

EXAMPLE = os.path.join(REPO, "configs", "contests", "text_to_image.yaml")
PROMPT = "一幅山水画，橙色的天空，绿色的山"


# ------------------------------------------------------------------ the contest schema (fast)

def test_the_example_contest_reads():
    (entry,) = read_contest(EXAMPLE).papers
    assert entry.kind == "text_to_image" and entry.plugin == "landscape_lora"
    assert (entry.count, entry.size, entry.prompts, entry.tolerate, entry.smoke_runs) == (4, 512, (PROMPT,), None,
                                                                                           "accept")
    assert entry.redraw == {"steps": (1, 50), "scheduler": ("ddim",), "guidance": (0.0, 15.0), "threads": (1, 1)}
    assert entry.card_fields == ("license", "base_model", "training_data", "prompts", "seeds")
    assert entry.base_model["path"] == "builtin:tiny-sd" and set(entry.scores) == {"clip_score"}
    assert entry.bar() == "4 at 512x512, redrawn from the weights; clip_score >= 0.00"


ENTRY = """name: t
deadline: "2027-01-31T23:59:59+08:00"
papers:
  - kind: text_to_image
    plugin: theme
    base_model: {{path: builtin:tiny-sd, sha256: {sha}}}
    works: {{count: 4, size: 512}}
    prompts: [a, b]
    redraw: {{steps: {{max: 50}}, scheduler: [ddim], guidance: 7.5, threads: 1}}
    scores: {{clip_score: {{model: builtin:tiny-clip, value: 0.15}}}}
"""
SHA = "a" * 64


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("kind: text_to_image", "kind: image"), "kind must be 'text_to_image'"),
    (lambda t: t.replace("    works:", "    weights: dreambooth\n    works:"), "weights must be one of lora"),
    (lambda t: t.replace(f"sha256: {SHA}", "sha256: ABC"), "base_model.sha256 must be 64 lowercase hex"),
    (lambda t: t.replace("count: 4", "count: 0"), "works.count must be an integer between 1 and 64"),
    (lambda t: t.replace("size: 512", "size: 500"), "works.size must be a multiple of 8"),
    (lambda t: t.replace("[a, b]", "[a, a]"), "prompts: 'a' is listed twice"),
    (lambda t: t.replace("[a, b]", "[a, b, c, d, e]"), "prompts must list 1 to works.count (4)"),
    (lambda t: t.replace("[a, b]", "anyone"), "prompts must be a list of the contest's prompts or 'submitter'"),
    (lambda t: t.replace("    works:", "    card_fields: [license, colour]\n    works:"),
     "card_fields: 'colour' is not one of"),
    (lambda t: t.replace("    works:", "    pixel_tolerance: 2\n    works:"), "unknown key 'pixel_tolerance'"),
    (lambda t: t.replace("    redraw: {steps: {max: 50}, scheduler: [ddim], guidance: 7.5, threads: 1}\n", ""),
     "redraw is required"),
    (lambda t: t.replace("threads: 1}", "threads: 1, seconds: 9}"), "redraw: unknown key 'seconds'"),
    (lambda t: t.replace("guidance: 7.5, ", ""), "redraw.guidance is required"),
    (lambda t: t.replace("{max: 50}", "{max: 5000}"), "redraw.steps must be an integer between 1 and 1000"),
    (lambda t: t.replace("{max: 50}", "{min: 9, max: 5}"), "redraw.steps: min 9 is above max 5"),
    (lambda t: t.replace("{max: 50}", "{most: 5}"), "redraw.steps: unknown key 'most'"),
    (lambda t: t.replace("[ddim]", "[ddim, warp]"), "redraw.scheduler must be one or a list of ddim"),
    (lambda t: t.replace("guidance: 7.5", "guidance: .inf"), "redraw.guidance must be a number between 0 and 100"),
    (lambda t: t.replace("threads: 1}", "threads: 0}"), "redraw.threads must be an integer between 1 and 256"),
    (lambda t: t.replace("    works:", "    tolerate: {pixels: 300, platforms: [{device: cpu}]}\n    works:"),
     "tolerate.pixels must be an integer between 0 and 255"),
    (lambda t: t.replace("    works:", "    tolerate: {pixels: 2, platforms: []}\n    works:"),
     "tolerate.platforms must list 1 to 64 platforms"),
    (lambda t: t.replace("    works:", "    tolerate: {pixels: 2, platforms: [{colour: red}]}\n    works:"),
     "tolerate.platforms[0]: unknown key 'colour'"),
    (lambda t: t.replace("    works:", "    tolerate: {pixels: 2}\n    works:"), "tolerate.platforms is required"),
    (lambda t: t.replace("    works:", "    smoke_runs: maybe\n    works:"), "smoke_runs must be one of accept, refuse"),
    (lambda t: t.replace("clip_score:", "inception_score:"), "scores: 'inception_score' is not a score"),
    (lambda t: t.replace("model: builtin:tiny-clip", "model: /models/clip"), "scores.clip_score.sha256 must be"),
    (lambda t: t.replace("value: 0.15", "value: .nan"), "scores.clip_score.value must be a finite number"),
    (lambda t: t.replace("{model: builtin:tiny-clip, value: 0.15}", "{model: builtin:tiny-clip}"),
     "scores.clip_score.value is required"),
    (lambda t: t.replace("scores: {clip_score: {model: builtin:tiny-clip, value: 0.15}}",
                         "scores: {fid: {reference: {path: r.safetensors}, inception: builtin:random-inception, "
                         "value: 90}}"), "scores.fid.reference.sha256 is required"),
    (lambda t: t.replace("    works:", "    audit: 100\n    works:"), "unknown key 'audit' for a text_to_image"),
    (lambda t: t + "  - {plugin: theme, experiment: mlp, metric: test_acc, measure: accuracy, value: 1.0}\n",
     "theme has a text_to_image entry and another entry"),
])
def test_text_to_image_entries_are_checked_strictly(tmp_path, edit, message):
    path = tmp_path / "contest.yaml"
    path.write_text(edit(ENTRY.format(sha=SHA)), encoding="utf-8")
    with pytest.raises(ReproError) as e:
        read_contest(str(path))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert str(path) in str(e.value)


def test_paths_are_relative_to_the_contest_file(tmp_path):
    text = ENTRY.format(sha=SHA).replace("builtin:tiny-sd", "models/sd").replace(
        "scores: {clip_score: {model: builtin:tiny-clip, value: 0.15}}",
        f"scores: {{fid: {{reference: {{path: ref.safetensors, sha256: {SHA}}}, "
        f"inception: {{path: w/pt.pth, sha256: {SHA}}}, value: 90}}}}").replace("[a, b]", "submitter")
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    (entry,) = read_contest(str(tmp_path / "c.yaml")).papers
    assert entry.base_model["path"] == str(tmp_path / "models" / "sd") and entry.prompts is None
    assert entry.scores["fid"]["reference"]["path"] == str(tmp_path / "ref.safetensors")
    assert entry.scores["fid"]["inception"]["path"] == str(tmp_path / "w" / "pt.pth")
    assert entry.scores["fid"]["direction"] == "lower" and entry.bar().endswith("fid <= 90.00")


# ------------------------------------------------------------------ the bundle's readers (fast)

def test_sha256sums_lists_every_file_and_nothing_else(tmp_path):
    from repro.diffusion import judge
    from repro.diffusion.submit import _write_sums
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"a")
    (tmp_path / "README.md").write_text("card")
    _write_sums(str(tmp_path))
    files = {"images/a.png": 1, "README.md": 4, "SHA256SUMS": 0}
    assert judge.check_sums(str(tmp_path), files) == []
    (tmp_path / "README.md").write_text("edit")
    (tmp_path / "extra.txt").write_text("x")
    sums = (tmp_path / "SHA256SUMS").read_text()
    (tmp_path / "SHA256SUMS").write_text(sums + f"{'0' * 64}  gone.bin\n{'0' * 64}  ../up\nnot a line\n")
    problems = judge.check_sums(str(tmp_path), {**files, "extra.txt": 1})
    assert any("line 4, 5 is not" in p for p in problems), problems
    assert any("lists files the bundle does not hold: gone.bin" in p for p in problems)
    assert any("does not list files the bundle holds: extra.txt" in p for p in problems)
    assert any("gives another sha256 than the file's: README.md" in p for p in problems)
    assert judge.check_sums(str(tmp_path), {"README.md": 4}) == ["it has no SHA256SUMS"]


def test_pngs_are_read_with_their_header_checked_first(tmp_path):
    from repro.diffusion import judge
    ok = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    Image.fromarray(ok).save(tmp_path / "ok.png")
    np.testing.assert_array_equal(judge.read_png(str(tmp_path / "ok.png"), 16, "ok.png"), ok)
    # a 5000 x 5000 PNG of one colour is a small file: refused from its header, never decoded
    Image.new("L", (5000, 5000)).save(tmp_path / "bomb.png", optimize=True)
    assert os.path.getsize(tmp_path / "bomb.png") < 1 << 20
    with pytest.raises(ReproError, match="is 5000x5000, not 16x16"):
        judge.read_png(str(tmp_path / "bomb.png"), 16, "bomb.png")
    Image.fromarray(np.dstack([ok, ok[..., :1]])).save(tmp_path / "rgba.png")
    with pytest.raises(ReproError, match="is a RGBA image, not RGB"):
        judge.read_png(str(tmp_path / "rgba.png"), 16, "rgba.png")
    Image.fromarray(ok).save(tmp_path / "ok.jpg")
    with pytest.raises(ReproError, match="is not a PNG file"):
        judge.read_png(str(tmp_path / "ok.jpg"), 16, "ok.jpg")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    with pytest.raises(ReproError, match="does not end with the PNG's end chunk"):
        judge.read_png(str(tmp_path / "cut.png"), 16, "cut.png")
    (tmp_path / "long.png").write_bytes((tmp_path / "ok.png").read_bytes() + b"\x80\x04\x95 a pickle")
    with pytest.raises(ReproError, match="does not end with the PNG's end chunk"):
        judge.read_png(str(tmp_path / "long.png"), 16, "long.png")
    (tmp_path / "bad.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60] + b"IEND\xaeB`\x82")
    with pytest.raises(ReproError, match="cannot be read as a PNG"):
        judge.read_png(str(tmp_path / "bad.png"), 16, "bad.png")
    os.symlink(tmp_path / "ok.png", tmp_path / "link.png")
    with pytest.raises(ReproError, match="cannot be read"):
        judge.read_png(str(tmp_path / "link.png"), 16, "link.png")


def test_the_contest_schema_names_the_diffusion_familys_schedulers_and_platform_keys():
    from repro.diffusion.pretrained import SCHEDULERS
    from repro.diffusion.platform import PLATFORM_KEYS
    from repro.judge import contest_t2i
    assert contest_t2i.SCHEDULERS == tuple(SCHEDULERS) and contest_t2i.PLATFORM_KEYS == PLATFORM_KEYS


def test_tolerance_is_the_maintainers_opt_in_for_the_platforms_they_name(tmp_path):
    (example,) = read_contest(EXAMPLE).papers
    assert example.tolerated({"device": "cpu", "cpu": "anything"}) is None  # the example: exact only
    text = ENTRY.format(sha=SHA).replace(
        "    works:", "    tolerate: {pixels: 2, platforms: [{device: cpu, cpu: AMD EPYC}, {gpu: H100}]}\n    works:")
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    (entry,) = read_contest(str(tmp_path / "c.yaml")).papers
    assert entry.tolerated({"device": "cpu", "cpu": "AMD EPYC", "threads": 4}) == 2  # every key given must match
    assert entry.tolerated({"device": "gpu:0", "gpu": "H100"}) == 2
    assert entry.tolerated({"device": "cpu", "cpu": "Intel Xeon"}) is None
    assert entry.tolerated({"cpu": "AMD EPYC"}) is None and entry.tolerated(None) is None


GEN = {"images": [{"file": "p00_0.png", "prompt": PROMPT, "seed": 7}, {"file": "p00_1.png", "prompt": PROMPT, "seed": 8}],
       "prompts": [PROMPT], "n": 2, "size": 512, "scheduler": "DDIMScheduler", "steps": 2, "guidance_scale": 7.5,
       "negative_prompt": "", "seed": 7}
CONFIG = "train:\n  steps: 4\n  eval_every: 4\neval:\n  fid_weights: ''\n"
FIELDS = ("license", "base_model", "training_data", "prompts", "seeds")


def a_card(lite=False):
    from repro.diffusion import card
    head = {"paper": "sd_lora", "exp": "lora", "config": {"train": {"seed": 1}}, "lite": lite,
            "provenance": {"clip_model": "tiny sha256:" + "c" * 64}}
    code = card.load_code("base", "lora", GEN)
    return card.model_card("t", "apache-2.0", head, "base", f"builtin:tiny-sd sha256:{SHA}", "- source: landscapes",
                           CONFIG, GEN, {"val_fid": 92.9, "val_clip_score": 0.07}, "0 of 2 targets reached", False,
                           code, "lora", ["README.md"]), code


def card_problems(text, code):
    from repro.diffusion import card
    try:
        block = card.read_block(text)
    except ReproError as e:
        return [str(e)]
    return card.body_problems(text, block, FIELDS, code, CONFIG)


@pytest.mark.parametrize("old, new, message", [
    (None, None, None),  # the card submit writes
    ("license: \"apache-2.0\"\n", "", "the model card has no license (license: in its front matter)"),
    ("library_name:", "model-index: [{results: [{metrics: [{type: fid, value: 3.1}]}]}]\nlibrary_name:",
     "unknown key 'model-index'"),
    ("tags: [", "tags: [clip-score-0.99, ", "the model card's tags: must be short text, no score"),
    ("---\nlicense", "license", "the model card has no front matter"),
    ("  lite: false\n", "", "has no repro block of repro-card/1"),
    ("\n## Prompts", "\n## Results\nCLIP score: 0.99\n\n## Prompts", "claims scores the judge did not compute (line"),
    ("\n# t\n", "\n# t (FID 3.14)\n", "claims scores the judge did not compute"),
    ("\n## Prompts", "\n| ours | 0.99 |\n|---|---|\n\n## Prompts", "claims scores the judge did not compute"),
    ("\n## Prompts", "\nWe beat the base model by **12%**.\n\n## Prompts", "claims scores the judge did not compute"),
    ("\n## Prompts", "\n```text\nval_clip_score 0.99\n```\n\n## Prompts", "claims scores the judge did not compute"),
    ("| 8 |", "| 80 |", "the model card's line 50 gives p00_1.png the number 80; its seed is 8"),
    ("\n## Prompts", "\nWork p00_0.png and p00_1.png: seeds 7 and 9.\n\n## Prompts", "names 2 works"),
    ("## License\napache-2.0.", "## License\nMIT.", "License section does not give its license 'apache-2.0'"),
    ("\n## Prompts", "\nLicense: MIT\n\n## Prompts", "gives the license 'MIT'; its front matter says 'apache-2.0'"),
    ("## Training data\n", "## Training data\nbase model sha256:" + "d" * 64 + "\n",
     "names the base model sha256:dddddddddddd...; its repro block says sha256:aaaaaaaaaaaa..."),
    (f"1. {PROMPT}\n", f"1. {PROMPT}\n2. 雪\n", "Prompts section does not list exactly the prompts of its repro block"),
    ("## Training data\n- source: landscapes\n", "## Training data\n", "the model card has no Training data section"),
    ("import paddle\n", "import paddle\nos.system('sh')\n", "the model card's Python at line"),
    ("\n## Files", "\n## License\nMIT, whatever the block says.\n\n## Files",
     "License section does not give its license 'apache-2.0'"),  # a second section of a name is read too
    ("\n## Files", "\n## Prompts\n1. 雪\n\n## Files", "Prompts section does not list exactly the prompts"),
    ("\n## Files", "\n![best](images/best.png)\n\n## Files", "names the image 'best.png', which is not one of"),
    ("| ![p00_0.png]", "| ![p00_0\u200b.png]", "holds an invisible character (U+200B)"),
])
def test_the_model_card_is_its_structured_block_and_nothing_contradicts_it(old, new, message):
    text, code = a_card()
    if old is not None:
        assert old in text, old
        text = text.replace(old, new, 1)
    problems = card_problems(text, code)
    if message is None:
        assert problems == [] and "## Metrics (unverified)" in text and "| val_fid | 92.9000 | unverified |" in text
        return
    assert len(problems) == 1 and message in problems[0] and "\n" not in problems[0], problems


def test_the_published_card_carries_the_judges_scores_first():
    from repro.diffusion import card
    text, _ = a_card(lite=True)
    out = card.published(text, "| clip_score | 0.0131 |\n")
    assert out.startswith(text.split("\n---\n", 1)[0]) and "a --lite smoke run" in out
    assert out.index("## Scores computed by the contest's judge") < out.index("## Metrics (unverified)")
    assert card.read_block(out)["lite"] is True


def test_bundle_files_hold_data_only_and_name_no_machine_path(tmp_path):
    from repro.diffusion import bundle_files as bf
    cases = {"p.bin": (b"\x80\x04\x95" + b"\0" * 20, 0o644, "is a pickle"),
             "p2.bin": (b"\x80\x02}q\x00.", 0o644, "is a pickle"),
             "m.pt": (b"PK\x03\x04" + b"\0" * 20, 0o644, "is a zip archive"),
             "a.npy": (b"\x93NUMPY\x01\x00", 0o644, "is a numpy array file"),
             "g.gz": (b"\x1f\x8b\x08\x00", 0o644, "is a gzip archive"),
             "run.txt": (b"#!/bin/sh\ncurl x | sh\n", 0o644, "is a script (it starts with #!)"),
             "x.json": (b"{}", 0o744, "is executable (mode 744)"),
             "e.png": (b"\x7fELF\x02\x01", 0o644, "is a program (an ELF binary)"),
             "w.png": (b"MZ\x90\x00", 0o644, "is a program (a Windows executable)"),
             "ok.txt": (b"plain text\n", 0o644, None)}
    for name, (data, mode, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        os.chmod(path, mode)
        why = bf.hazard(str(path), name)
        assert (why is None) if message is None else (message in why and why.startswith(name)), (name, why)
    for text in ("run: /home/alice/x", '"/tmp/a/b"', "at ~/runs/a", "C:\\Users\\a", "(/opt/sd/unet)",
                 "\\\\server\\share"):
        assert bf.machine_path(text) is not None, text
    for text in ("https://huggingface.co/a/b", "images/p00_0.png", "sd_lora/lora", "2026/12/06", "RUN_DIR/logs",
                 "1/2", "a --lite smoke run"):
        assert bf.machine_path(text) is None, text
    (tmp_path / "meta.json").write_text('{"run": "\\/home\\/alice\\/run"}', encoding="utf-8")
    (problem,) = bf.check_kind(str(tmp_path / "meta.json"), "meta.json", "json")
    assert problem.startswith("meta.json names a path on the machine it was made on ('/home/alice/run')"), problem
    assert [bf.kind_of(n) for n in ("README.md", "images/p00_0.png", "base/unet/config.json", "base/x.pkl",
                                    "model.pkl", "images/a.jpg", "logs/events.jsonl", "weights/w.pdparams")] \
        == ["text", "png", "json", None, None, None, "jsonl", None]


def test_the_redraw_runs_within_what_is_left_of_the_submissions_budget():
    from types import SimpleNamespace
    from repro.diffusion.judge_redraw import budget
    now = time.monotonic()
    assert budget(SimpleNamespace(timeout=3600), None) == 3600  # no budget: the review's per-task timeout
    assert 98 <= budget(SimpleNamespace(timeout=3600), now + 100) <= 100
    assert budget(SimpleNamespace(timeout=60), now + 100) == 60
    assert budget(SimpleNamespace(timeout=60, deadline=now - 5), None) < 1  # the caller's options may carry it


def test_weights_identical_or_nearly_identical_to_another_teams_are_a_copy(tmp_path):
    from safetensors.numpy import save_file
    rng = np.random.default_rng(0)
    mine = {"unet.a.lora.down.weight": rng.normal(size=(4, 32)).astype(np.float32),
            "unet.a.lora.up.weight": rng.normal(size=(32, 4)).astype(np.float32)}

    def result(team, tensors, day, root=None):
        path = str(tmp_path / f"{team}-{day}.safetensors")
        save_file(tensors, path)
        digest = "".join(f"{v.tobytes().hex()[:8]}" for v in tensors.values())
        return {"team": team, "paper": "p", "time": f"2027-01-0{day}", "problems": [], "ok": True,
                "bundle": {"weights_sha256": digest}, "_weights": path,
                "_repository": {"roots": [root or f"{team}-root"], "remotes": []}}

    nudged = {k: v * np.float32(1 + 1e-5) for k, v in mine.items()}
    other = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in mine.items()}
    results = [result("alpha", mine, 1), result("alpha", nudged, 2), result("beta", nudged, 3),
               result("gamma", other, 4), result("delta", mine, 5), result("alpha", nudged, 6, root="another")]
    copies.flag_copied_bundles(results)
    # a team's resubmission of its own repository is its own; another repository under its name is a copy
    assert [r["ok"] for r in results] == [True, True, False, True, False, False]
    assert "recorded under the same team name, but another root commit" in results[5]["problems"][0]
    (why,) = results[2]["problems"]
    assert why.startswith("its weights are those of alpha's bundle (p, recorded earlier: 2027-01-01) but for a "
                          "relative difference of 1.0e-05 (under 0.001): a copy"), why
    assert results[4]["problems"] == ["its weights are identical to those of alpha's bundle (p, recorded earlier: "
                                      "2027-01-01): a copy of that submission"]
    assert results[2]["bundle"]["copy_of"] == {"team": "alpha", "time": "2027-01-01"}


# ------------------------------------------------------------------ the full review (slow)

needs_sandbox = pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A LoRA run on the tiny model, its four 512x512 works, one more work drawn with another
    seed, its honest bundle, and another LoRA (its weights, each moved by seeded noise)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from repro import train
    from repro.diffusion import submit, works as drawing
    from repro.errors import run_cli
    root = tmp_path_factory.mktemp("t2i")
    run = str(root / "run-a")
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--paper", "sd_lora", "--lite", "--seed", "42", "--out", run, "-o", "train.visualdl=false"])
    assert e.value.code == 0
    quiet = lambda *a, **k: None
    works = drawing.run(run, [PROMPT], n=4, size=512, seed=0, steps=2, out=str(root / "works"), echo=quiet)
    other = drawing.run(run, [PROMPT], n=1, size=512, seed=99, steps=2, out=str(root / "seed99"), echo=quiet)
    honest, _ = submit.submit(run, works, str(root / "honest"), license_name="apache-2.0", echo=quiet)
    with safe_open(os.path.join(honest, "weights", "paddle_lora_weights.safetensors"), "np") as f:
        weights = {k: f.get_tensor(k) for k in f.keys()}
        rng = np.random.default_rng(7)
        moved = {k: (w + 0.1 * rng.standard_normal(w.shape)).astype(w.dtype) for k, w in weights.items()}
        os.makedirs(root / "lora-b")
        save_file(moved, str(root / "lora-b" / "paddle_lora_weights.safetensors"), metadata=f.metadata())
    return {"root": str(root), "honest": honest, "seed99": os.path.join(other, "p00_0.png"),
            "lora_b": str(root / "lora-b" / "paddle_lora_weights.safetensors")}


def bundle_repo(made, name, edit=None):
    """A git repository holding a copy of the honest bundle, edited by edit(path), its
    SHA256SUMS written again (a cheater signs what they submit); returns (repo, commit)."""
    from repro.diffusion.submit import _write_sums
    repo = os.path.join(made["root"], "subs", name)
    shutil.copytree(made["honest"], repo, symlinks=True)
    if edit:
        edit(repo)
        signed = t2i_tampered.signed_folder(repo)
        os.remove(os.path.join(signed, "SHA256SUMS"))
        _write_sums(signed)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the bundle")
    return repo, commit_of(repo)


def submissions(made, path, items):
    lines = ["submissions:"]
    for i, (team, (repo, commit)) in enumerate(items):
        lines += [f"  - team: {team}", "    paper: landscape_lora", f"    repo: {repo}", f"    commit: {commit}",
                  f'    time: "2027-01-05T10:{i:02d}:00+08:00"']
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def replace_work(name, image):
    def edit(repo):
        Image.fromarray(image).save(os.path.join(repo, "images", name))
    return edit


def edit_text(rel, old, new):
    def edit(repo):
        path = os.path.join(repo, rel)
        text = open(path, encoding="utf-8").read()
        assert old in text, (rel, old)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new))
    return edit


def moved(by):
    """Every value of every work moved by `by` (clipped): works that no longer come from the weights."""
    def edit(repo):
        from repro.diffusion.images import load_png
        for name in sorted(os.listdir(os.path.join(repo, "images"))):
            if name.startswith("p") and name.endswith(".png"):
                path = os.path.join(repo, "images", name)
                Image.fromarray(np.clip(load_png(path).astype(np.int16) + by, 0, 255).astype(np.uint8)).save(path)
    return edit


def swap_lora(made):
    return lambda repo: shutil.copyfile(made["lora_b"], os.path.join(repo, "weights",
                                                                      "paddle_lora_weights.safetensors"))


@pytest.mark.slow
@needs_sandbox
def test_the_example_contest_passes_the_honest_bundle_and_rejects_each_dishonest_one(made, tmp_path, capsys,
                                                                                       monkeypatch):
    from repro.diffusion.images import builtin_landscapes, load_png
    from repro.boundary import task
    drawn, run = [], task.Staged.run
    monkeypatch.setattr(task.Staged, "run", lambda self: drawn.append(self.req["task"]) or run(self))
    declared = json.load(open(os.path.join(made["honest"], "submission.json")))["base_model_identity"]
    sha = declared.split("sha256:")[1]
    landscape = builtin_landscapes(1, 512, seed=3)[0][0]
    other_sha = "f" * 64
    elsewhere = t2i_tampered.meta_edit(t2i_tampered.plat("cpu", "Intel Xeon"))
    no_platform = t2i_tampered.meta_edit(t2i_tampered.plat(None, None))

    subs = [
        ("alpha", bundle_repo(made, "alpha")),
        ("beta", bundle_repo(made, "beta", replace_work("p00_1.png", landscape))),
        ("gamma", bundle_repo(made, "gamma", replace_work("p00_2.png", load_png(made["seed99"])))),
        ("delta", bundle_repo(made, "delta", swap_lora(made))),
        ("epsilon", bundle_repo(made, "epsilon", edit_text("README.md", "license: \"apache-2.0\"\n", ""))),
        ("zeta", bundle_repo(made, "zeta", t2i_tampered.both(edit_text("submission.json", sha, other_sha),
                                                edit_text("README.md", sha, other_sha)))),
        ("eta", bundle_repo(made, "eta", lambda repo: (os.remove(os.path.join(repo, "images", "p00_3.png")),
                                                       os.symlink("p00_0.png", os.path.join(repo, "images",
                                                                                            "p00_3.png"))))),
        ("theta", bundle_repo(made, "theta")),
        # the works' platform record is a claim, not a switch: what it hid is refused all the same
        ("swapped-elsewhere", bundle_repo(made, "swapped-elsewhere", t2i_tampered.both(swap_lora(made), elsewhere))),
        ("other-run-elsewhere", bundle_repo(made, "other-run-elsewhere", t2i_tampered.both(
            replace_work("p00_2.png", load_png(made["seed99"])), elsewhere))),
        ("moved-elsewhere", bundle_repo(made, "moved-elsewhere", t2i_tampered.both(moved(2), elsewhere))),
        ("moved-no-platform", bundle_repo(made, "moved-no-platform", t2i_tampered.both(moved(2), no_platform))),
    ] + [(name, bundle_repo(made, name, edit)) for name, edit, _ in t2i_tampered.TAMPERED]
    path = submissions(made, str(tmp_path / "subs.yaml"), subs)
    out = str(tmp_path / "review")
    code, stdout, err = cli(review.main, [EXAMPLE, path, "--out", out], capsys)
    assert code == 0, err
    data = json.load(open(os.path.join(out, "review.json"), encoding="utf-8"))
    got = {r["team"]: r for r in data["submissions"]}
    why = {team: ledger.reasons(r) for team, r in got.items()}
    copy = "its weights are identical to those of alpha's bundle"

    alpha = got["alpha"]
    assert alpha["status"] == "REPRODUCED: first to reach the bar (weights from a --lite smoke run)", alpha["status"]
    assert why["alpha"] == [], why["alpha"]
    assert alpha["checks"] == ["files", "card", "works", "redraw", "scores"] and alpha["full_review"]
    assert [w["largest_difference"] for w in alpha["bundle"]["works"]] == [0, 0, 0, 0]
    assert alpha["bundle"]["platform"]["same"] and alpha["bundle"]["tolerance"] == 0  # exact on this platform
    assert alpha["targets"][0]["metric"] == "clip_score" and alpha["targets"][0]["passed"]
    assert alpha["bundle"]["base_model"]["declared"] == {"submission.json": sha, "the model card": sha,
                                                         "its training log": sha, "its base/ folder": sha}
    assert data["papers"][0]["status"] == "reproduced" and data["papers"][0]["reproduced_by"] == "alpha"

    def own(team):
        """Its reasons other than being a copy of alpha's (or delta's) weights: each alone rejects it."""
        assert got[team]["status"] == "not reproduced", (team, got[team]["status"])
        return [w for w in why[team] if not (w.startswith("its weights are identical to those of ") and "a copy" in w)]

    (reason,) = own("beta")
    assert reason.startswith("1 of 4 works does not come from the submitted weights and the declared base model") \
        and "images/p00_1.png" in reason and "claimed seed 1" in reason and "exact required" in reason, reason
    (reason,) = own("gamma")
    assert "1 of 4 works does not come" in reason and "images/p00_2.png" in reason and "claimed seed 2" in reason
    (reason,) = own("delta")
    assert reason.startswith("4 of 4 works do not come from the submitted weights"), reason
    assert not any(copy in w for w in why["delta"])  # other weights: not a copy
    assert own("epsilon") == ["the model card has no license (license: in its front matter)"]
    (reason,) = own("zeta")
    assert reason.startswith("a base model other than the declared one: submission.json names sha256:ffffffffffff"
                             "...; the model card names sha256:ffffffffffff...") and sha[:12] in reason, reason
    assert own("eta") == ["images/p00_3.png is a symbolic link: a submission holds regular files and folders only "
                          "(never followed or opened)"]
    assert why["theta"] == [f"{copy} (landscape_lora, recorded earlier: 2027-01-05T10:00:00+08:00): a copy of that "
                            f"submission"]
    for team in ("swapped-elsewhere", "other-run-elsewhere", "moved-elsewhere"):
        (reason,) = own(team)
        assert reason.startswith("its works were drawn on another platform than the judge's (cpu Intel Xeon vs ") \
            and reason.endswith("the redraw must be exact and the contest accepts no other platform (tolerate:)"), \
            (team, reason)
    (reason,) = own("moved-no-platform")
    assert reason.startswith("images/metadata.json records no platform"), reason
    for name, _, want in t2i_tampered.TAMPERED:
        reasons = own(name)
        assert len(reasons) == 1 and want in reasons[0] and "\n" not in reasons[0], (name, reasons)
        assert got[name]["bundle"]["summary"].startswith("not redrawn") or name == "platform-cpu", name
    # the works are drawn once per distinct (weights, parameters, prompts and seeds): alpha's and delta's;
    # every other bundle is refused before its redraw or redrawn from the same request
    assert drawn == ["redraw", "redraw"], drawn
    text = open(os.path.join(out, "status.md"), encoding="utf-8").read()
    assert "| landscape_lora | works | works 4 at 512x512, redrawn from the weights; clip_score &#62;= 0.00 |" in text
    assert "redrew 4 works on their platform: largest difference 0" in text
    page = open(os.path.join(out, alpha["page"]), encoding="utf-8").read()
    assert "Works, redrawn from the weights" in page and "REPRODUCED (weights from a --lite smoke run)" in page
    assert made["root"] not in page
    published = open(os.path.join(out, alpha["page"][:-5] + ".card.md"), encoding="utf-8").read()
    assert f"| clip_score | {alpha['targets'][0]['value']:.4f} | >= 0.00 |" in published
    assert published.index("## Scores computed by the contest's judge") < published.index("## Metrics (unverified)")
    beta_page = open(os.path.join(out, got["beta"]["page"]), encoding="utf-8").read()
    assert "NOT from the weights" in beta_page
    assert made["root"] not in text and made["root"] not in json.dumps(data)
    for root, _, names in os.walk(made["honest"]):  # the bundle names no path of the machine that made it
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                assert made["root"].encode() not in f.read(), name


@pytest.mark.slow
@needs_sandbox
def test_off_platform_only_where_the_contest_accepts_it_and_a_score_below_its_bar(made, tmp_path, capsys,
                                                                                 monkeypatch):
    """Works that record another platform (here: another CPU and 2 threads, so the redraw rounds
    differently) pass within the tolerance only where the contest names that platform, and the
    pass says it is not exact; the score is the judge's own, and a bar it misses refuses the bundle.
    The second review (the higher bar) gets the first one's redraw of the same bundle: the same
    request, drawn once here (the redraw itself is what the first review tests)."""
    from repro.diffusion import judge_redraw
    real, drawn = judge_redraw.redraw, []

    def once(*args):
        if not drawn:
            drawn.append((args[3], args[4], args[5], real(*args)))  # the weights' digest, the works, their parameters
        assert drawn[0][:3] == args[3:6]
        return drawn[0][3]
    monkeypatch.setattr(judge_redraw, "redraw", once)
    def elsewhere(repo):
        path = os.path.join(repo, "images", "metadata.json")
        meta = json.load(open(path, encoding="utf-8"))
        # 2 threads on MKL's own path (on its strict AVX2 path, which the works took on an AMD CPU, two
        # threads round as one does)
        meta["platform"] = {**meta["platform"], "cpu": "another CPU", "threads": 2, "mkl_path": None}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False, indent=1)
    tolerant = open(EXAMPLE, encoding="utf-8").read().replace(
        "threads: 1}", "threads: {max: 2}}\n    tolerate: {pixels: 2, platforms: [{cpu: another CPU}]}")
    results = {}
    for bar in ("0.0", "0.9"):
        contest = tmp_path / f"contest-{bar}.yaml"
        contest.write_text(tolerant.replace("value: 0.0,", f"value: {bar},"), encoding="utf-8")
        path = submissions(made, str(tmp_path / "subs.yaml"), [("alpha", bundle_repo(made, f"elsewhere-{bar}",
                                                                                     elsewhere))])
        code, _, err = cli(review.main, [str(contest), path, "--out", str(tmp_path / bar)], capsys)
        assert code == 0, err
        (results[bar],) = json.load(open(tmp_path / bar / "review.json", encoding="utf-8"))["submissions"]
    r = results["0.0"]
    diffs = [w["largest_difference"] for w in r["bundle"]["works"]]
    assert not r["bundle"]["platform"]["same"] and r["bundle"]["tolerance"] == 2
    assert max(diffs) == 1 and all(w["ok"] for w in r["bundle"]["works"]), diffs  # 2 threads round otherwise
    assert r["bundle"]["summary"] == "redrew 4 works on another platform: largest difference 1 (tolerated up to 2: " \
                                     "not exact)"
    assert r["status"].startswith("REPRODUCED: first to reach the bar (weights from a --lite smoke run; not an exact "
                                  "redraw: the works were made on another platform (cpu another CPU vs "), r["status"]
    assert "pass within a tolerance of 2 of 255 (largest difference 1)" in r["status"]
    page = open(tmp_path / "0.0" / r["page"], encoding="utf-8").read()
    assert "REPRODUCED (weights from a --lite smoke run) (not an exact redraw" in page
    (reason,) = ledger.reasons(results["0.9"])
    assert reason.startswith("landscape_lora/works clip_score: 0.") and "does not reach the bar >= 0.90 (computed by " \
        "the judge from the 4 works it redrew)" in reason, reason


@pytest.mark.slow
def test_a_logs_only_review_of_a_bundle_redraws_nothing(made, tmp_path, capsys, monkeypatch):
    from repro.boundary import task
    monkeypatch.setattr(task.Staged, "run", lambda self: pytest.fail("a worker ran in a --logs-only review"))
    path = submissions(made, str(tmp_path / "subs.yaml"), [("alpha", bundle_repo(made, "logs-only"))])
    code, _, err = cli(review.main, [EXAMPLE, path, "--out", str(tmp_path / "review"), "--logs-only"], capsys)
    assert code == 0, err
    (r,) = json.load(open(tmp_path / "review" / "review.json", encoding="utf-8"))["submissions"]
    assert r["status"].startswith("pending full review") and r["checks"] == ["files", "card", "works"]
    assert r["bundle"]["summary"] == "not redrawn (--logs-only)" and r["problems"] == []
    # a contest may refuse a smoke run's weights
    contest = tmp_path / "no-smoke.yaml"
    contest.write_text(open(EXAMPLE, encoding="utf-8").read().replace("smoke_runs: accept", "smoke_runs: refuse"),
                       encoding="utf-8")
    code, _, err = cli(review.main, [str(contest), path, "--out", str(tmp_path / "no-smoke"), "--logs-only"], capsys)
    assert code == 0, err
    (r,) = json.load(open(tmp_path / "no-smoke" / "review.json", encoding="utf-8"))["submissions"]
    assert r["problems"] == ["its weights come from a --lite smoke run (its training log and submission.json say so); "
                             "the contest refuses smoke runs (smoke_runs: refuse)"]


@pytest.mark.slow
def test_a_redraw_past_the_submissions_time_budget_is_never_started(made, monkeypatch):
    from repro.boundary import task
    from repro.diffusion import judge
    monkeypatch.setattr(task.Staged, "run", lambda self: pytest.fail("a redraw started past the budget"))
    (entry,) = read_contest(EXAMPLE).papers
    tree, hostile = scan_tree(made["honest"])
    assert hostile == {}
    result = {"problems": [], "targets": [], "checks": []}
    options = ReviewOptions()
    judge.review_bundle(made["honest"], tree, entry, options, result, deadline=time.monotonic() - 1)
    assert result["problems"] == ["not redrawn: the submission's time budget was spent before its redraw"]
