"""Bundle a text-to-image run for submission: weights, model card, works, logs, verdict.

    python -m repro.diffusion.submit RUN_DIR [--images GEN_DIR] [--out DIR] [--license NAME]
                           [--base-name NAME] [--title TEXT]

GEN_DIR is a `repro.diffusion.generate` output of this run's final checkpoint (default:
the newest under RUN_DIR/generated). DIR (default RUN_DIR-submission, beside
the run so `repro.verify RUN_DIR` never finds the copied log twice) gets:

  README.md           the model card (repro.diffusion.card): a structured front
                      matter (license, base model and its sha256, prompts, each
                      work's seed, whether it is a smoke run), training data,
                      config, the works, the run's own metrics and repro.verify
                      verdict (marked unverified), and Python that reloads the
                      weights in ppdiffusers and regenerates the works
  regenerate.py       that Python, exactly as the card gives it
  weights/            the fine-tuned weights as safetensors (LoRA: the layout
                      pipe.load_lora_weights() reads; DreamBooth: a whole
                      ppdiffusers pipeline directory)
  base/               the base model, only when it is the built-in tiny one
  images/             the generated works, grid.png and their metadata.json
  logs/               events.jsonl, train.log and config.yaml of the run
  verify.txt, verify.json   `python -m repro.verify RUN_DIR --recompute`
  submission.json     what the bundle is: paper, experiment, seed, the run, its
                      checkpoint's sha256, the base model, the verdict. Its
                      presence makes `repro.verify PARENT` skip the bundle's
                      copy of the log (the run itself is found beside it)
  SHA256SUMS          every file of the bundle

The bundle is written into a temporary folder and renamed into place; an
existing DIR is never touched. It names no path of this machine (the run is
RUN_DIR, the base model its name), holds nothing but these files, and submit
refuses to write one that a contest's judge would refuse for its files
(repro.diffusion.bundle_files).
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import time

from repro import hints
from repro.diffusion.bundle_files import check_files
from repro.diffusion.card import body_problems as card_problems, load_code, model_card, read_block as card_block
from repro.diffusion.works import METADATA, load_trained
from repro.diffusion.pretrained import resolve_pretrained
from repro.diffusion.tiny import TINY_SD
from repro.errors import ReproError, run_cli
from repro.judge.contest_t2i import CARD_FIELDS
from repro.registry import parse_with_papers
from repro.strict import sha256_file
from repro.run.rundir import CONFIG, COPIES, EVENTS, TEXT, read as read_run
from repro.judge.options import Options
from repro.judge.verdict import verify

LOG_FILES = (EVENTS, TEXT, CONFIG)


def _paper_of(run_dir):
    """The paper a run's header names, or None where it cannot be read (for a hint only)."""
    try:
        return read_run(run_dir).header["paper"]
    except (ReproError, KeyError, TypeError):
        return None


def newest_generation(run_dir):
    root = os.path.join(run_dir, "generated")
    found = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, METADATA))) \
        if os.path.isdir(root) else []
    if not found:
        generate = hints.command("repro.diffusion.generate", run_dir, paper=_paper_of(run_dir))
        raise ReproError(f"{run_dir} has no generated works; run `{generate} "
                         "--prompts FILE` first or pass --images DIR")
    return os.path.join(root, found[-1])


def read_generation(path, checkpoint_sha):
    try:
        with open(os.path.join(path, METADATA), encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise ReproError(f"{path} is not a repro.diffusion.generate output: no {METADATA}") from None
    except ValueError:
        raise ReproError(f"{path}/{METADATA} is not valid JSON") from None
    if meta.get("checkpoint_sha256") != checkpoint_sha:
        raise ReproError(f"{path} was generated from another checkpoint than the run's final one "
                         f"({str(meta.get('checkpoint_sha256'))[:12]} vs {checkpoint_sha[:12]}); generate again")
    for rec in meta.get("images", []):
        if not os.path.isfile(os.path.join(path, rec["file"])):
            raise ReproError(f"{path}: {rec['file']} listed in {METADATA} is missing")
    return meta


def run_verify(run_dir):
    options = Options(recompute=True)
    verdict = verify([run_dir], options)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        verdict.print_table()
    return text.getvalue(), verdict.json()


def submit(run_dir, images=None, out=None, license_name="creativeml-openrail-m", base_name=None, title=None,
           echo=print):
    out = out or os.path.normpath(run_dir).rstrip(os.sep) + "-submission"
    if os.path.exists(out):
        raise ReproError(f"--out {out} already exists; give a new directory")
    events = read_run(run_dir).events
    end = [e for e in events if e.get("kind") == "run_end"]
    if not end or end[-1].get("status") != "success":
        raise ReproError(f"{run_dir} did not finish successfully; only a finished run can be submitted")
    paper, cfg, model, meta, sha, head = load_trained(run_dir)
    publish = getattr(paper, "publish", None)
    if publish is None:
        raise ReproError(f"paper {paper.name!r} has no text-to-image weights to submit")
    gen_dir = images or newest_generation(run_dir)
    gen = read_generation(gen_dir, sha)
    echo(f"verifying {run_dir} (with --recompute)")
    verdict_text, report = run_verify(run_dir)

    tmp = f"{out}.tmp-{os.getpid()}"
    os.makedirs(tmp)
    try:
        base_dir = resolve_pretrained(cfg.model.pretrained)
        if cfg.model.pretrained == TINY_SD:
            shutil.copytree(base_dir, os.path.join(tmp, "base"))
            base_ref = "base"
        else:  # a name, never this machine's path to it
            base_ref = base_name or (os.path.basename(os.path.normpath(base_dir)) if os.path.isabs(
                cfg.model.pretrained) else cfg.model.pretrained)
        places = {os.path.abspath(run_dir): "RUN_DIR", os.path.normpath(base_dir): base_ref}
        gen, verdict_text, report = (_unplace(v, places) for v in (gen, verdict_text, report))
        gen.pop("run", None)
        weights_kind = publish(model, cfg, os.path.join(tmp, "weights"))
        _unplace_json_files(os.path.join(tmp, "weights"), places)  # a saved tokenizer names where it came from
        os.makedirs(os.path.join(tmp, "images"))
        for name in [r["file"] for r in gen["images"]] + ["grid.png"]:
            shutil.copyfile(os.path.join(gen_dir, name), os.path.join(tmp, "images", name))
        with open(os.path.join(tmp, "images", METADATA), "w", encoding="utf-8") as f:
            json.dump(gen, f, ensure_ascii=False, indent=1, default=str)
        os.makedirs(os.path.join(tmp, "logs"))
        for name in LOG_FILES:
            if os.path.isfile(os.path.join(run_dir, name)):
                shutil.copy2(os.path.join(run_dir, name), os.path.join(tmp, "logs", name))
        with open(os.path.join(tmp, "verify.txt"), "w", encoding="utf-8") as f:
            f.write(verdict_text)
        with open(os.path.join(tmp, "verify.json"), "w", encoding="utf-8") as f:
            json.dump(report, f, ensure_ascii=False, indent=1, default=str)
        identity = _unplace(head.get("provenance", {}).get("pretrained", "?"), places)
        manifest = {"format": "repro-submission/1", "paper": paper.name, "exp": head["exp"], "seed": head["config"]["train"]["seed"],
                    "lite": bool(head.get("lite")), "checkpoint_sha256": sha,
                    "weights": weights_kind, "base_model": base_ref, "base_model_identity": identity,
                    "verified": report["ok"],
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(os.path.join(tmp, COPIES), "w", encoding="utf-8") as f:
            json.dump(manifest, f, ensure_ascii=False, indent=1)
        with open(os.path.join(run_dir, CONFIG), encoding="utf-8") as f:
            config_yaml = f.read()
        code = load_code(base_ref, weights_kind, gen)
        with open(os.path.join(tmp, "regenerate.py"), "w", encoding="utf-8") as f:
            f.write(code)
        files = _listing(tmp) + ["README.md"]
        card = model_card(title or f"{paper.title}: {head['exp']}", license_name, head, base_ref, identity,
                          _data_description(head),
                          config_yaml, gen, end[-1].get("metrics", {}), verdict_text, report["ok"], code,
                          weights_kind, sorted(files))
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)
        said = card_problems(card, card_block(card), CARD_FIELDS, code, config_yaml)
        if said:  # a title or a data description can say what a contest's judge refuses
            raise ReproError(f"the model card would be refused by a contest's judge: {said[0]}")
        _write_sums(tmp)
        refused = check_files(tmp, {f: 0 for f in _listing(tmp)}, "")
        if refused:
            raise ReproError(f"the bundle would be refused by a contest's judge: {refused[0]}")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, report["ok"]


def _listing(root):
    return sorted(os.path.relpath(os.path.join(r, n), root) for r, _, ns in os.walk(root) for n in ns)


def _unplace(value, places):
    """value with every path of this machine in places (path: what the bundle calls it) replaced."""
    if isinstance(value, str):
        for path, name in sorted(places.items(), key=lambda p: -len(p[0])):
            value = value.replace(path, name)
        return value
    if isinstance(value, dict):
        return {k: _unplace(v, places) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unplace(v, places) for v in value]
    return value


def _unplace_json_files(root, places):
    for name in _listing(root):
        path = os.path.join(root, name)
        if name.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                value = json.load(f)
            if _unplace(value, places) != value:
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(_unplace(value, places), f, ensure_ascii=False, indent=2)


def _data_description(head):
    data = head.get("data", {})
    cfg = head.get("config", {}).get("data", {})
    parts = [f"- source: `{cfg.get('path', '?')}` at {cfg.get('resolution', '?')}x{cfg.get('resolution', '?')}"
             f" ({'centre' if cfg.get('center_crop', True) else 'top-left'} crop"
             f"{', random flips' if cfg.get('random_flip') else ''})"]
    for split, d in data.items():
        parts.append(f"- {split}: {d.get('n')} images, sha256 `{d.get('sha256')}` (repro.data.fingerprint "
                     "of the images and token ids)")
    return "\n".join(parts)


def _write_sums(root):
    lines = []
    for r, _, names in os.walk(root):
        for n in sorted(names):
            full = os.path.join(r, n)
            lines.append(f"{sha256_file(full)}  {os.path.relpath(full, root)}")
    with open(os.path.join(root, "SHA256SUMS"), "w", encoding="utf-8") as f:
        f.write("\n".join(sorted(lines, key=lambda s: s.split("  ", 1)[1])) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.diffusion.submit", description=__doc__.splitlines()[0])
    ap.add_argument("run", metavar="RUN_DIR")
    ap.add_argument("--images", metavar="GEN_DIR", help="a repro.diffusion.generate output (default: the newest)")
    ap.add_argument("--out", metavar="DIR", help="bundle directory (default RUN_DIR-submission)")
    ap.add_argument("--license", default="creativeml-openrail-m", help="the model card's license field")
    ap.add_argument("--base-name", help="how the card names the base model (default: its local path)")
    ap.add_argument("--title", help="the model card's title")
    args = parse_with_papers(ap, argv)
    if not os.path.isdir(args.run):
        raise ReproError(f"{args.run}: no such run directory")
    t0 = time.perf_counter()
    out, ok = submit(args.run, args.images, args.out, args.license, args.base_name, args.title)
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s; verdict: {'REPRODUCED' if ok else 'NOT REPRODUCED'} "
          f"(see {out}/verify.txt)")
    return 0


if __name__ == "__main__":
    run_cli(main)
