"""The model card of a text-to-image bundle: written by repro.diffusion.submit, read by the
judge (repro.diffusion.judge) from the same definitions, so what one writes the other reads.

What the review checks (license, base model, prompts, seeds, whether the weights come from a
smoke run) is a structured block, the card's front matter, read strictly (unknown keys are
refused: no `model-index` of claimed results). The prose must not contradict it: a line that
names a work gives that work's seed and no other number, the Prompts section lists the
block's prompts, a sha256 named with the base model is the block's, the License section gives
the block's license, the card's Python is regenerate.py. Numbers the judge does not compute
(the training run's own evaluation, its own repro.verify) sit under a heading marked
"(unverified)"; a score with a number anywhere else is refused. The judge's own scores go at
the top of the card the contest publishes (published()).
"""
import json
import re
import unicodedata

from repro import strict
from repro.errors import ReproError

FORMAT = "repro-card/1"
UNVERIFIED = "(unverified)"
FRONT_KEYS = {"license", "base_model", "library_name", "pipeline_tag", "language", "tags", "repro"}
BLOCK_KEYS = {"format", "base_model_identity", "lite", "prompts", "works"}
SHA_IN_TEXT = re.compile(r"sha256:([0-9a-f]{64})")
SCORE_WORD = re.compile(r"(?i)(?<![A-Za-z])(clip|clip[\s_-]*score|fid|mse|rmse|auc|elo|win[\s_-]*rate|results?|benchmarks?|fr[ée]chet|inception[\s_-]*score|kid|precision|"
                        r"recall|accuracy|loss|psnr|ssim|lpips|aesthetic|scores?|(?:val|test|eval|train)_\w+|"
                        r"metrics?)(?![A-Za-z])")
HEX = re.compile(r"[0-9a-f]{12,}")
INTEGER = re.compile(r"(?<![\w.])\d+(?![\w.]|\.\d)")
DECIMAL = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?\s?%|(?<![\w.-])\d*\.\d+(?![\w.])")
IMAGE_NAME = re.compile(r"[\w.-]+\.(?:png|jpe?g|webp|gif|bmp|tiff?)(?![\w.])", re.IGNORECASE)
FENCE = re.compile(r"^\s{0,3}(```|~~~)\s*([\w-]*)\s*$")


def _py_str(s):
    return json.dumps(s, ensure_ascii=False)


# ------------------------------------------------------------------ writing (repro.diffusion.submit)

def load_code(base_ref, weights_kind, gen):
    """Python that rebuilds the pipeline from the bundle and regenerates every work: regenerate.py,
    which the judge requires to be exactly this for the bundle's images/metadata.json."""
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


def front_matter(license_name, base_ref, identity, lite, gen, weights_kind):
    """The card's structured block (YAML; its values written as JSON, which YAML reads)."""
    langs = ["zh", "en"] if any(any("\u4e00" <= ch <= "\u9fff" for ch in p) for p in gen["prompts"]) else ["en"]
    works = "".join(f"\n  - {json.dumps({k: r[k] for k in ('file', 'prompt', 'seed')}, ensure_ascii=False)}"
                    for r in gen["images"])
    return f"""---
license: {_py_str(license_name)}
base_model: {_py_str(base_ref)}
library_name: ppdiffusers
pipeline_tag: text-to-image
language: [{", ".join(langs)}]
tags: [stable-diffusion, text-to-image, {"lora" if weights_kind == "lora" else "dreambooth"}, paddlepaddle, repro]
repro:
  format: {FORMAT}
  base_model_identity: {_py_str(identity)}
  lite: {"true" if lite else "false"}
  prompts: {json.dumps(list(dict.fromkeys(r["prompt"] for r in gen["images"])), ensure_ascii=False)}
  works:{works}
---
"""


def model_card(title, license_name, head, base_ref, base_identity, data_desc, config_yaml, gen, metrics,
               verdict_text, ok, code, weights_kind, files):
    prompts = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(dict.fromkeys(r["prompt"] for r in gen["images"])))
    works = "\n".join(f"| ![{r['file']}](images/{r['file']}) | {r['prompt']} | {r['seed']} |"
                      for r in gen["images"])
    metric_rows = "\n".join(f"| {k} | {v:.4f} | unverified |" if isinstance(v, (int, float)) else
                            f"| {k} | {v} | unverified |" for k, v in metrics.items())
    prov = head.get("provenance", {})
    lite = bool(head.get("lite"))
    return front_matter(license_name, base_ref, base_identity, lite, gen, weights_kind) + f"""
# {title}

{"LoRA weights" if weights_kind == "lora" else "A DreamBooth fine-tune"} of `{base_ref}`, trained with the
repro harness (`{head['paper']}/{head['exp']}`, seed {head['config']['train']['seed']}{", a --lite smoke run: "
"its weights are not the experiment's" if lite else ""}).

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

## Metrics {UNVERIFIED}
The training run's own final evaluation, on the submitter's machine: not checked by a contest's judge,
which computes its own scores from the works it redraws. Metric models: FID {prov.get('fid_extractor', '?')};
CLIP {prov.get('clip_model', '?')}.

| metric | value | |
|---|---|---|
{metric_rows}

## Verdict {UNVERIFIED}
The submitter's own `python -m repro.verify RUN_DIR --recompute`: **{"REPRODUCED" if ok else "NOT REPRODUCED"}**

```text
{verdict_text.rstrip()}
```

## How to use
With paddlepaddle and ppdiffusers installed, from this folder (the same code as `regenerate.py`):
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


# ------------------------------------------------------------------ reading (repro.diffusion.judge)

def split(text):
    """(front matter text, body) of a card that starts with a --- block."""
    if not text.startswith("---\n"):
        raise ReproError("the model card has no front matter (the structured block between --- lines at its top)")
    end = text.find("\n---\n", 3)
    if end < 0:
        raise ReproError("the model card's front matter is not closed by a --- line")
    return text[4:end + 1], text[end + 5:]


def read_block(text):
    """{license, base_model, identity, lite, prompts, works} of the card's front matter, strictly."""
    front_text, _ = split(text)
    front = strict.loads_yaml(front_text, "the model card's front matter")
    if not isinstance(front, dict):
        raise ReproError("the model card's front matter is not a mapping")
    unknown = sorted(map(str, set(front) - FRONT_KEYS))
    if unknown:
        raise ReproError(f"the model card's front matter has the unknown key {unknown[0][:40]!r} (known: "
                         f"{', '.join(sorted(FRONT_KEYS))}): it holds what the review checks, nothing else")
    block = front.get("repro")
    if not isinstance(block, dict) or set(block) != BLOCK_KEYS or block.get("format") != FORMAT:
        raise ReproError(f"the model card's front matter has no repro block of {FORMAT} ({', '.join(sorted(BLOCK_KEYS))}"
                         f"; python -m repro.diffusion.submit writes it)")
    for key in ("license", "base_model"):
        if key in front and not (isinstance(front[key], str) and front[key].strip() and front[key].isprintable()):
            raise ReproError(f"the model card's {key}: must be printable text")
    for key in ("library_name", "pipeline_tag", "language", "tags"):
        values = front.get(key) if isinstance(front.get(key), list) else [front.get(key)]
        if any(not (v is None or (isinstance(v, str) and len(v) <= 100)) or claims(str(v or "")) for v in values):
            raise ReproError(f"the model card's {key}: must be short text, no score")
    works = block["works"]
    good = lambda w: isinstance(w, dict) and set(w) == {"file", "prompt", "seed"} and isinstance(w["file"], str) \
        and isinstance(w["prompt"], str) and type(w["seed"]) is int
    if not isinstance(works, list) or not all(good(w) for w in works):
        raise ReproError("the model card's repro.works must list {file, prompt, seed} of every work")
    if not isinstance(block["prompts"], list) or not all(isinstance(p, str) for p in block["prompts"]):
        raise ReproError("the model card's repro.prompts must list its prompts")
    if not isinstance(block["lite"], bool) or not isinstance(block["base_model_identity"], str):
        raise ReproError("the model card's repro.lite must be true or false, its base_model_identity text")
    m = SHA_IN_TEXT.search(block["base_model_identity"])
    return {"license": front.get("license"), "base_model": front.get("base_model"),
            "identity": block["base_model_identity"], "sha256": m.group(1) if m else None, "lite": block["lite"],
            "prompts": block["prompts"], "works": works}


def sections(body):
    """[(heading lower-case or None, [(line number in the body, line, fenced block or None)])]: the
    body's lines by section, a heading the first line of its own; a fenced block's lines carry
    (its language, its text)."""
    out, lines, i = [(None, [])], body.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            close = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == m.group(1)), len(lines))
            block = (m.group(2).lower(), "\n".join(lines[i + 1:close]).rstrip() + "\n")
            out[-1][1].extend((k + 1, lines[k], block) for k in range(i, min(close + 1, len(lines))))
            i = close + 1
            continue
        heading = re.match(r"\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            out.append((heading.group(1).strip().lower(), []))
        out[-1][1].append((i + 1, line, None))
        i += 1
    return out


def _work_line(n, line, works, problems):
    """A line that names a work gives that one work, its prompt and its seed, and no other number."""
    named = [w for w in works if re.search(rf"(?<![\w.-]){re.escape(w['file'])}(?![\w.-])", line)]
    if len(named) > 1:
        problems.append(f"the model card's line {n} names {len(named)} works: one line per work, with its seed")
    if len(named) != 1:
        return
    w = named[0]
    rest = line.replace(w["file"], " ").replace(w["prompt"], " ")
    numbers = {int(x) for x in INTEGER.findall(rest)}
    other = sorted(numbers - {w["seed"]})
    if other:
        w["_wrong"] = True
        problems.append(f"the model card's line {n} gives {w['file']} the number {other[0]}; its seed is "
                        f"{w['seed']} (images/metadata.json and the card's repro block)")
    elif numbers:
        w["_seen"] = True
    if any(x["prompt"] in line for x in works if x["prompt"] != w["prompt"]):
        problems.append(f"the model card's line {n} gives {w['file']} another work's prompt")


def _line_problems(n, line, heading, block, names):
    problems = []
    hidden = next((c for c in line if unicodedata.category(c) in ("Cf", "Co", "Cs", "Cc") and c != "\t"), None)
    if hidden is not None:
        problems.append(f"the model card's line {n} holds an invisible character (U+{ord(hidden):04X}): a card "
                        f"says what it says in plain text")
    other = [m for m in IMAGE_NAME.findall(line) if m not in names]
    if other:
        problems.append(f"the model card's line {n} names the image {other[0][:40]!r}, which is not one of its works")
    base = re.match(r"(?i)\s*[-*|]?\s*base[\s_-]*model\s*[:=|]\s*(.+?)\s*\|?\s*$", line)
    if base and base.group(1).strip("`*_ .|") not in (block["base_model"], block["identity"]):
        problems.append(f"the model card's line {n} gives the base model {base.group(1)[:40]!r}; its front matter "
                        f"says {block['base_model']!r}")
    sha = [s for s in SHA_IN_TEXT.findall(line) if s != block["sha256"]]
    if sha and (heading == "base model" or re.search(r"(?i)base[\s_-]*model", line)):
        problems.append(f"the model card's line {n} names the base model sha256:{sha[0][:12]}...; its repro block "
                        f"says sha256:{str(block['sha256'])[:12]}...")
    lic = re.match(r"(?i)\s*[-*|]?\s*license\s*[:=|]\s*(.+?)\s*\|?\s*$", line)
    if lic and lic.group(1).strip("`*_ .|") != block["license"]:
        problems.append(f"the model card's line {n} gives the license {lic.group(1)[:40]!r}; its front matter "
                        f"says {block['license']!r}")
    return problems


def claims(line, heading=None, prompts=()):
    """Whether a line outside a section marked (unverified) claims a score: a score's name and a
    number, or a table row or emphasis giving a fraction or a percentage (the prompts aside)."""
    if heading is not None and heading.endswith(UNVERIFIED):
        return False
    text = HEX.sub("", line.replace("sha256:", ""))
    for p in prompts:
        text = text.replace(p, " ")
    if SCORE_WORD.search(text) and re.search(r"\d", text):
        return True
    return (text.lstrip().startswith("|") or "**" in text or "__" in text) and bool(DECIMAL.search(text))


def body_problems(text, block, fields, regenerate, config_text):
    """Contradictions between the card's prose and its block, and scores the judge did not compute.
    The card's Python must be regenerate.py (None: the bundle's records cannot say what it is);
    it and the config block (logs/config.yaml) are the harness's text, not read as claims."""
    _, body = split(text)
    problems, works = [], [dict(w) for w in block["works"]]
    offset = text[:len(text) - len(body)].count("\n")
    verified = {(regenerate or "").rstrip() + "\n", config_text.rstrip() + "\n"}
    told, claimed = set(), []
    names = {w["file"] for w in works} | {"grid.png"}
    for heading, lines in sections(body):
        for n, line, fence in lines:
            n += offset
            if fence is not None and fence[0] in ("python", "py", "python3") and fence[1] not in told \
                    and regenerate is not None and fence[1] != regenerate.rstrip() + "\n":
                told.add(fence[1])
                problems.append(f"the model card's Python at line {n} is not regenerate.py: the code it tells "
                                f"readers to run must be the harness's")
            if fence is not None and (fence[1] in verified or fence[0] in ("python", "py", "python3")):
                continue  # the harness's own text, or code refused above
            _work_line(n, line, works, problems)
            problems += _line_problems(n, line, heading, block, names)
            if claims(line, heading, [w["prompt"] for w in works]):
                claimed.append((n, line.strip()))
    if claimed:
        problems.append(f"the model card claims scores the judge did not compute (line {claimed[0][0]}: "
                        f"{claimed[0][1][:60]!r}" + (f", and {len(claimed) - 1} more line" if len(claimed) > 1 else "")
                        + f"): scores are the judge's; the training run's own go under a heading marked {UNVERIFIED}")
    problems += _required(body, block, fields, works)
    return list(dict.fromkeys(problems))


def _required(body, block, fields, works):
    """The sections the contest requires, each saying what the block says (every one of a name)."""
    problems, texts = [], {}
    for h, lines in sections(body):
        texts.setdefault(h, []).append("\n".join(line for _, line, fence in (lines[1:] if h else lines)
                                                 if fence is None))
    first = lambda t: next((ln.strip() for ln in t.splitlines() if ln.strip()), "")
    if "license" in fields:
        if not block["license"]:
            problems.append("the model card has no license (license: in its front matter)")
        elif not texts.get("license") or not all(re.match(rf"{re.escape(block['license'])}(?![\w-])", first(t))
                                                 for t in texts["license"]):
            problems.append(f"the model card's License section does not give its license {block['license']!r}")
    if "base_model" in fields:
        if not block["base_model"] or block["sha256"] is None:
            problems.append("the model card does not name its base model and that model's sha256 (base_model: and "
                            "repro.base_model_identity '<name> sha256:<64 hex>' in its front matter)")
        elif not texts.get("base model") or not all(f"sha256:{block['sha256']}" in t for t in texts["base model"]):
            problems.append("the model card's Base model section does not give its base model's sha256")
    if "training_data" in fields and not any(t.strip() for t in texts.get("training data", [])):
        problems.append("the model card has no Training data section")
    if "prompts" in fields:
        listed = [[re.sub(r"^\s*\d+[.)]\s*", "", ln).strip() for ln in t.splitlines() if ln.strip()]
                  for t in texts.get("prompts", [])]
        if not listed or any(items != list(block["prompts"]) for items in listed):
            problems.append("the model card's Prompts section does not list exactly the prompts of its repro block")
    if "seeds" in fields:
        missing = [w["file"] for w in works if not w.get("_seen") and not w.get("_wrong")]
        if missing:
            problems.append(f"the model card does not give the seed of {', '.join(missing[:3])} (a line naming the "
                            f"work and its seed)")
    return problems


def published(text, scores_md):
    """The card the contest publishes: the bundle's, with the judge's scores first in its body."""
    front, body = split(text)
    return f"---\n{front}---\n\n## Scores computed by the contest's judge\n{scores_md}\n{body}"
