"""Bundle a text-to-image run for submission: weights, model card, works, logs, verdict.

    python -m repro.diffusion.submit RUN_DIR [--images GEN_DIR] [--out DIR] [--license NAME]
                           [--base-name NAME] [--title TEXT]

GEN_DIR is a `repro.diffusion.generate` output of this run's final checkpoint (default:
the newest under RUN_DIR/generated). DIR (default RUN_DIR-submission, beside
the run so `repro.verify RUN_DIR` never finds the copied log twice) gets:

  README.md           the model card: base model and its sha256, training data,
                      config, prompts, the works, metrics, the repro.verify
                      verdict, license, and Python that reloads the weights in
                      ppdiffusers and regenerates the works from their seeds
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
existing DIR is never touched.
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import time

from repro import hints
from repro.diffusion.works import METADATA, load_trained
from repro.diffusion.pretrained import resolve_pretrained
from repro.diffusion.tiny import TINY_SD
from repro.errors import ReproError, run_cli
from repro.registry import add_papers_option, use_folders
from repro.run.checkpoint import sha256_file
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


def _py_str(s):
    return json.dumps(s, ensure_ascii=False)


def load_code(base_ref, weights_kind, gen):
    """Python that rebuilds the pipeline from the bundle and regenerates every work."""
    if weights_kind == "lora":
        load = (f"pipe = StableDiffusionPipeline.from_pretrained({_py_str(base_ref)}, safety_checker=None,\n"
                "                                               requires_safety_checker=False)\n"
                "pipe.load_lora_weights(\"weights\")\n")
    else:
        load = ("pipe = StableDiffusionPipeline.from_pretrained(\"weights\", safety_checker=None,\n"
                "                                               requires_safety_checker=False)\n")
    scheduler = gen["scheduler"]
    works = [[r["prompt"], r["seed"], r["file"]] for r in gen["images"]]
    return (
        "import os\n\nimport paddle\n"
        f"from ppdiffusers import StableDiffusionPipeline, {scheduler}\n\n"
        + load +
        f"pipe.scheduler = {scheduler}.from_config(pipe.scheduler.config)\n"
        f"works = {json.dumps(works, ensure_ascii=False)}  # prompt, seed, file\n"
        "os.makedirs(\"regenerated\", exist_ok=True)\n"
        "for prompt, seed, name in works:\n"
        f"    image = pipe(prompt, negative_prompt={_py_str(gen['negative_prompt']) if gen['negative_prompt'] else None},"
        f" height={gen['size']}, width={gen['size']},\n"
        f"                 num_inference_steps={gen['steps']}, guidance_scale={gen['guidance_scale']},\n"
        "                 generator=paddle.Generator().manual_seed(seed)).images[0]\n"
        "    image.save(os.path.join(\"regenerated\", name))\n")


def model_card(title, license_name, head, base_ref, base_identity, data_desc, config_yaml, gen, metrics,
               verdict_text, ok, code, weights_kind, files):
    prompts = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(gen["prompts"]))
    works = "\n".join(f"| ![{r['file']}](images/{r['file']}) | {r['prompt']} | {r['seed']} |"
                      for r in gen["images"])
    metric_rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, (int, float)) else f"| {k} | {v} |"
                            for k, v in metrics.items())
    prov = head.get("provenance", {})
    langs = ["zh", "en"] if any(any("\u4e00" <= ch <= "\u9fff" for ch in p) for p in gen["prompts"]) else ["en"]
    return f"""---
license: {license_name}
base_model: {base_ref}
library_name: ppdiffusers
pipeline_tag: text-to-image
language: [{", ".join(langs)}]
tags: [stable-diffusion, text-to-image, {"lora" if weights_kind == "lora" else "dreambooth"}, paddlepaddle, repro]
---

# {title}

{"LoRA weights" if weights_kind == "lora" else "A DreamBooth fine-tune"} of `{base_ref}`, trained with the
repro harness (`{head['paper']}/{head['exp']}`, seed {head['config']['train']['seed']}{", a --lite smoke run" if head.get('lite') else ""}).

## Base model
- `{base_ref}`
- identity: `{base_identity}` (sha256 over the directory's files, as `repro.diffusion.pretrained.dir_identity` computes it)

## Training data
{data_desc}

## Training configuration
```yaml
{config_yaml.rstrip()}
```

## Prompts
{prompts}

## The works
{gen['n']} per prompt, {gen['size']}x{gen['size']}, {gen['scheduler']} with {gen['steps']} steps, guidance
{gen['guidance_scale']}, negative prompt {_py_str(gen['negative_prompt']) if gen['negative_prompt'] else "none"}.
Image k of prompt p uses seed {gen['seed']} + p*{gen['n']} + k.

| image | prompt | seed |
|---|---|---|
{works}

![grid](images/grid.png)

## Metrics
Final evaluation of the run (metric models: FID {prov.get('fid_extractor', '?')}; CLIP {prov.get('clip_model', '?')}).

| metric | value |
|---|---|
{metric_rows}

## Verdict
`python -m repro.verify RUN_DIR --recompute`: **{"REPRODUCED" if ok else "NOT REPRODUCED"}**

```text
{verdict_text.rstrip()}
```

## How to use
With paddlepaddle and ppdiffusers installed, from this folder:
```python
{code.rstrip()}
```
This regenerates every work above into `regenerated/` from its seed. On the CPU, on the same machine
and with the same thread settings, they match the files in `images/` exactly; another thread count or
a GPU can move a few pixel values by 1 (a different summation order).

## License
{license_name}. The base model's own license applies to its weights too.

## Files
{chr(10).join(f"- `{f}`" for f in files)}
"""


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
        else:
            base_ref = base_name or base_dir
        weights_kind = publish(model, cfg, os.path.join(tmp, "weights"))
        shutil.copytree(gen_dir, os.path.join(tmp, "images"))
        os.makedirs(os.path.join(tmp, "logs"))
        for name in LOG_FILES:
            if os.path.isfile(os.path.join(run_dir, name)):
                shutil.copy2(os.path.join(run_dir, name), os.path.join(tmp, "logs", name))
        with open(os.path.join(tmp, "verify.txt"), "w", encoding="utf-8") as f:
            f.write(verdict_text)
        with open(os.path.join(tmp, "verify.json"), "w", encoding="utf-8") as f:
            json.dump(report, f, ensure_ascii=False, indent=1, default=str)
        manifest = {"format": "repro-submission/1", "paper": paper.name, "exp": head["exp"], "seed": head["config"]["train"]["seed"],
                    "lite": bool(head.get("lite")), "run": os.path.abspath(run_dir), "checkpoint_sha256": sha,
                    "weights": weights_kind, "base_model": base_ref,
                    "base_model_identity": head.get("provenance", {}).get("pretrained"), "verified": report["ok"],
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(os.path.join(tmp, COPIES), "w", encoding="utf-8") as f:
            json.dump(manifest, f, ensure_ascii=False, indent=1)
        with open(os.path.join(run_dir, CONFIG), encoding="utf-8") as f:
            config_yaml = f.read()
        code = load_code(base_ref, weights_kind, gen)
        with open(os.path.join(tmp, "regenerate.py"), "w", encoding="utf-8") as f:
            f.write(code)
        files = sorted(os.path.relpath(os.path.join(r, n), tmp) for r, _, ns in os.walk(tmp) for n in ns)
        files.append("README.md")
        card = model_card(title or f"{paper.title}: {head['exp']}", license_name, head, base_ref,
                          head.get("provenance", {}).get("pretrained", "?"),
                          _data_description(head),
                          config_yaml, gen, end[-1].get("metrics", {}), verdict_text, report["ok"], code,
                          weights_kind, sorted(files))
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)
        _write_sums(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, report["ok"]


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
    add_papers_option(ap)
    args = ap.parse_args(argv)
    use_folders(args.papers)
    if not os.path.isdir(args.run):
        raise ReproError(f"{args.run}: no such run directory")
    t0 = time.perf_counter()
    out, ok = submit(args.run, args.images, args.out, args.license, args.base_name, args.title)
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s; verdict: {'REPRODUCED' if ok else 'NOT REPRODUCED'} "
          f"(see {out}/verify.txt)")
    return 0


if __name__ == "__main__":
    run_cli(main)
