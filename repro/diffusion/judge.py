"""The judge's side of a text-to-image submission: a bundle that
`repro.diffusion.submit` wrote (a contest entry of kind text_to_image,
repro/judge/contest_t2i.py), reviewed by `repro.review`.

Trust boundary: nothing here imports paper code or anything the bundle holds.
The bundle's files are read as data, each from a regular file of bounded size
(the review has already refused links, FIFOs and devices anywhere in the
submission): SHA256SUMS, submission.json, images/metadata.json and the model
card as strict JSON / YAML / text, the works as PNGs whose header is checked
before a pixel is decoded, the LoRA as safetensors arrays. The works are drawn
again by a worker in the sandbox (repro.worker's task "redraw",
repro.diffusion.redraw) from the LoRA, the maintainers' own copy of the declared
base model and each work's claimed prompt and seed; the worker never gets the
submitted images. Here they are compared pixel by pixel (exact where the worker's
platform is the one the works record; elsewhere within the contest's stated
tolerance, the largest difference always reported), and every score is computed
from the redrawn images with the harness's own metric code (repro.metrics: the
CLIP and FID Inception named by the contest, never the submitter's numbers).

Flags: a work that does not come from the weights (another image, another seed
than claimed, other weights); a base model other than the declared one (in
submission.json, the model card, the training log or a shipped base/ folder);
weights identical to another team's (repro.review compares weights_sha256, a
digest of the LoRA's tensors, across submissions).
"""
import hashlib
import io
import math
import os
import re
import shutil
import stat

import numpy as np

from repro import strict
from repro.boundary.sandbox import Sandbox
from repro.diffusion.pretrained import SCHEDULERS, check_pretrained, dir_identity, resolve_pretrained
from repro.diffusion.redraw import LORA_FILE, PLATFORM_KEYS
from repro.diffusion.scoring import clip_embedder, fid_extractor, score_images
from repro.errors import ReproError
from repro.boundary import exchange
from repro.boundary.task import Staged, Worker
from repro.judge.contest_t2i import MAX_PROMPT
from repro.boundary.tree import read_at_most as _open_regular
from repro.strict import sha256_file

SUMS = "SHA256SUMS"
MANIFEST = "submission.json"
CARD = "README.md"
IMAGES = "images"
METADATA = "images/metadata.json"
GRID = "images/grid.png"
LORA = "weights/paddle_lora_weights.safetensors"
LOGS_HEADER = "logs/events.jsonl"
BASE = "base"
MAX_SUMS_BYTES = 1 << 20
MAX_CARD_BYTES = 1 << 20
MAX_JSON_BYTES = 8 << 20
MAX_LINE_BYTES = 4 << 20
MAX_PNG_BYTES = 64 << 20
MAX_PIXELS = 2048 * 2048
MAX_LORA_BYTES = 2 << 30
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.png")
SHA_IN_TEXT = re.compile(r"sha256:([0-9a-f]{64})")
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _names(items, n=3):
    items = list(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


# ------------------------------------------------------------------ reading the bundle's files

def _read(path, max_bytes, what):
    """The bytes of a regular file (never a link or FIFO) of at most max_bytes."""
    try:
        data = _open_regular(path, max_bytes)
    except OSError as e:
        raise ReproError(f"{what} cannot be read ({e.strerror or e})") from None
    if data is None:
        raise ReproError(f"{what} is over the {max_bytes:,} bytes such a file may have")
    return data


def _json(bundle, rel, what):
    data = _read(os.path.join(bundle, rel), MAX_JSON_BYTES, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ReproError(f"{what} is not UTF-8 text") from None
    value = strict.loads_json(text, what)
    if not isinstance(value, dict):
        raise ReproError(f"{what}: the top level must be an object")
    return value


def find_bundle(tree):
    """The bundle's folder inside a submitted repository ('' for its top), from scan_tree's
    entries: the top when it holds SHA256SUMS, else the one top-level folder that does."""
    if tree.get(SUMS, ("",))[0] == "file":
        return ""
    found = [rel for rel, (kind, _) in tree.items() if kind == "dir" and "/" not in rel
             and tree.get(f"{rel}/{SUMS}", ("",))[0] == "file"]
    if len(found) != 1:
        raise ReproError("no text-to-image bundle: SHA256SUMS at the repository's top or in exactly one of its "
                         "folders (python -m repro.diffusion.submit writes one)" if not found else
                         f"{len(found)} folders hold a bundle ({_names(sorted(found))}): submit one")
    return found[0]


def check_sums(bundle, files):
    """Problems with SHA256SUMS: every file of the bundle listed with its sha256, nothing
    listed that is not there, nothing there unlisted (the list itself aside)."""
    if SUMS not in files:
        return ["it has no SHA256SUMS"]
    try:
        text = _read(os.path.join(bundle, SUMS), MAX_SUMS_BYTES, SUMS).decode("utf-8")
    except UnicodeDecodeError:
        return [f"{SUMS} is not UTF-8 text"]
    except ReproError as e:
        return [str(e)]
    listed, bad, twice = {}, [], []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        name = m.group(2) if m else ""
        if not m or os.path.normpath(name) != name or name.startswith(("/", "../")) or name == ".." \
                or not name.isprintable():
            bad.append(str(i))
        elif name in listed:
            twice.append(name)
        else:
            listed[name] = m.group(1)
    problems = []
    if bad:
        problems.append(f"{SUMS} line {_names(bad)} is not '<sha256>  <file inside the bundle>'")
    if twice:
        problems.append(f"{SUMS} lists {_names(twice)} twice")
    missing = sorted(n for n in listed if n not in files)
    unlisted = sorted(n for n in files if n not in listed and n != SUMS)
    changed = sorted(n for n, h in listed.items() if n in files and sha256_file(os.path.join(bundle, n), follow=False)
               != h)
    for what, names in (("lists files the bundle does not hold", missing),
                        ("does not list files the bundle holds", unlisted),
                        ("gives another sha256 than the file's", changed)):
        if names:
            problems.append(f"{SUMS} {what}: {_names(names)}")
    return problems


def read_png(path, size, what):
    """uint8 [size, size, 3] of an RGB PNG: its header (format, width, height, mode) is
    checked before any pixel is decoded, so a small file cannot unpack into a huge image."""
    from PIL import Image
    data = _read(path, MAX_PNG_BYTES, what)
    if not data.startswith(PNG_MAGIC):
        raise ReproError(f"{what} is not a PNG file")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            w, h = img.size
            if w * h > MAX_PIXELS or (w, h) != (size, size):
                raise ReproError(f"{what} is {w}x{h}, not {size}x{size}")
            if img.mode != "RGB":
                raise ReproError(f"{what} is a {img.mode} image, not RGB")
            img.load()
            array = np.asarray(img, dtype=np.uint8)
    except ReproError:
        raise
    except Exception as e:  # noqa: BLE001 -- a damaged PNG surfaces as many exception types
        raise ReproError(f"{what} cannot be read as a PNG ({type(e).__name__})") from None
    if array.shape != (size, size, 3):
        raise ReproError(f"{what} decodes to {list(array.shape)}, not [{size}, {size}, 3]")
    return array


def lora_digest(path):
    """sha256 over the LoRA's tensors (names, dtypes, shapes, bytes): the same weights give the
    same digest however the file was written."""
    arrays, _ = exchange.read_arrays(path, f"the bundle's LoRA weights ({LORA})", MAX_LORA_BYTES)
    if not arrays or not all("lora" in k for k in arrays) or len(arrays) > 100_000:
        raise ReproError(f"{LORA} is not a LoRA state dict (its tensors are named after lora layers)")
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        if a.dtype.kind != "f":
            raise ReproError(f"{LORA}: {name[:80]} is {a.dtype}, not floating point")
        h.update(f"{name}\0{a.dtype.str}\0{list(a.shape)}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def first_line(path, what):
    fd = os.open(path, _FILE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ReproError(f"{what} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.readline(MAX_LINE_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_LINE_BYTES:
        raise ReproError(f"{what}: its first line is over {MAX_LINE_BYTES:,} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReproError(f"{what} is not UTF-8 text") from None


# ------------------------------------------------------------------ the works' metadata

def read_works(meta, entry):
    """(works [{file, prompt, seed}], drawing parameters, problems) from images/metadata.json."""
    problems = []
    images = meta.get("images")
    if not isinstance(images, list) or not images or len(images) > 10_000:
        raise ReproError(f"{METADATA} lists no works (its images)")
    works = []
    for i, rec in enumerate(images):
        at = f"{METADATA}: images[{i}]"
        if not isinstance(rec, dict):
            raise ReproError(f"{at} is not an object")
        name, prompt, seed = rec.get("file"), rec.get("prompt"), rec.get("seed")
        if not isinstance(name, str) or not WORK_NAME.fullmatch(name) or name == "grid.png":
            raise ReproError(f"{at}: file {str(name)[:60]!r} is not the name of a PNG in images/")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT or not prompt.isprintable():
            raise ReproError(f"{at}: prompt must be printable text of at most {MAX_PROMPT} characters")
        if type(seed) is not int or not 0 <= seed <= MAX_SEED:
            raise ReproError(f"{at}: seed must be an integer between 0 and 2**63 - 1")
        works.append({"file": name, "prompt": prompt, "seed": seed})
    files = [w["file"] for w in works]
    twice = sorted({f for f in files if files.count(f) > 1})
    if twice:
        raise ReproError(f"{METADATA} lists {_names(twice)} twice")
    pairs = [(w["prompt"], w["seed"]) for w in works]
    if len(set(pairs)) != len(pairs):
        problems.append("two of its works claim the same prompt and seed (they would be the same image)")
    if len(works) != entry.count:
        problems.append(f"it holds {len(works)} works; the contest asks for {entry.count}")
    if entry.prompts is not None:
        other = [w["file"] for w in works if w["prompt"] not in entry.prompts]
        unused = [p for p in entry.prompts if p not in {w["prompt"] for w in works}]
        if other:
            problems.append(f"{_names(other)} {'is' if len(other) == 1 else 'are'} drawn from a prompt the contest "
                            f"does not give")
        if unused:
            problems.append(f"no work is drawn from the contest's prompt {unused[0]!r}"
                            + (f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""))
    size, steps, guidance = meta.get("size"), meta.get("steps"), meta.get("guidance_scale")
    if type(size) is not int or size != entry.size:
        problems.append(f"its works are {size!r} pixels wide by its {METADATA}; the contest asks for {entry.size}")
    if type(steps) is not int or not 1 <= steps <= MAX_STEPS:
        raise ReproError(f"{METADATA}: steps must be an integer between 1 and {MAX_STEPS}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
            or not 0 <= guidance <= MAX_GUIDANCE:
        raise ReproError(f"{METADATA}: guidance_scale must be a number between 0 and {MAX_GUIDANCE:g}")
    negative = meta.get("negative_prompt") or ""
    if not isinstance(negative, str) or len(negative) > MAX_PROMPT or (negative and not negative.isprintable()):
        raise ReproError(f"{METADATA}: negative_prompt must be printable text of at most {MAX_PROMPT} characters")
    names = {cls: short for short, cls in SCHEDULERS.items()}
    scheduler = meta.get("scheduler")
    if scheduler not in names:
        raise ReproError(f"{METADATA}: scheduler {str(scheduler)[:60]!r} is not one of {', '.join(names)}")
    platform = meta.get("platform") if isinstance(meta.get("platform"), dict) else None
    threads = platform.get("threads") if platform else 1
    if type(threads) is not int or not 1 <= threads <= 1024:
        threads = 1
    params = {"scheduler": names[scheduler], "steps": steps, "guidance": float(guidance), "negative_prompt": negative,
              "size": entry.size, "threads": threads}
    return works, params, platform, problems


# ------------------------------------------------------------------ the model card

def card_parts(text):
    """(front matter, {lower-case heading: section text}) of a Markdown model card."""
    front, body = {}, text
    if text.startswith("---\n"):
        end = text.find("\n---\n", 3)
        if end > 0:
            value = strict.loads_yaml(text[4:end + 1], "the model card's front matter")
            front = value if isinstance(value, dict) else {}
            body = text[end + 5:]
    sections, current, fence = {}, None, False
    for line in body.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        heading = None if fence else re.match(r"\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            current = heading.group(1).strip().lower()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    return front, {k: "\n".join(v) for k, v in sections.items()}


def card_problems(text, fields, works):
    """(problems, the base model sha256 the card names or None): the card's required fields."""
    try:
        front, sections = card_parts(text)
    except ReproError as e:
        return [f"model card ({CARD}): {e}"], None
    problems = []
    base_text = sections.get("base model", "")
    named = SHA_IN_TEXT.findall(base_text)
    value = lambda key: front.get(key) if isinstance(front.get(key), (str, int, float)) else None
    if "license" in fields and not str(value("license") or "").strip():
        problems.append("the model card has no license (license: in its front matter)")
    if "base_model" in fields and (not str(value("base_model") or "").strip() or not named):
        problems.append("the model card does not name its base model and that model's sha256 (base_model: in its "
                        "front matter, and sha256:<64 hex> in a Base model section)")
    if "training_data" in fields and not sections.get("training data", "").strip():
        problems.append("the model card has no Training data section")
    if "prompts" in fields:
        listed = sections.get("prompts", "")
        missing = sorted({w["prompt"] for w in works if w["prompt"] not in listed})
        if missing:
            problems.append(f"the model card's Prompts section does not list the prompt {missing[0]!r}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if "seeds" in fields:
        lines = text.splitlines()
        missing = [w["file"] for w in works
                   if not any(w["file"] in ln and re.search(rf"(?<![\w.]){w['seed']}(?![\w.])", ln.replace(w["file"], ""))
                              for ln in lines)]
        if missing:
            problems.append(f"the model card does not give the seed of {_names(missing)} (a line naming the work "
                            f"and its seed)")
    return problems, (named[0] if len(set(named)) == 1 else (named[0] if named else None))


# ------------------------------------------------------------------ the base model

def contest_base(entry):
    """The maintainers' copy of the declared base model, checked against the contest's sha256."""
    path = resolve_pretrained(entry.base_model["path"])
    check_pretrained(path)
    got = dir_identity(path)
    if got != entry.base_model["sha256"]:
        raise ReproError(f"the contest's base model {entry.base_model['path']} is sha256:{got[:12]}..., not the "
                         f"sha256:{entry.base_model['sha256'][:12]}... the contest declares (the maintainers' copy "
                         f"or the contest file is wrong)")
    return path


def declared_bases(bundle, files, manifest, card_sha):
    """{where: sha256} of every base model the bundle names (or None where it names none)."""
    found = {}
    ident = manifest.get("base_model_identity") if isinstance(manifest, dict) else None
    m = SHA_IN_TEXT.search(ident) if isinstance(ident, str) else None
    found[MANIFEST] = m.group(1) if m else None
    if card_sha:
        found["the model card"] = card_sha
    if LOGS_HEADER in files:
        try:
            head = strict.loads_json(first_line(os.path.join(bundle, LOGS_HEADER), LOGS_HEADER), LOGS_HEADER)
            prov = head.get("provenance") if isinstance(head, dict) else None
            text = prov.get("pretrained") if isinstance(prov, dict) else None
            m = SHA_IN_TEXT.search(text) if isinstance(text, str) else None
            if m:
                found["its training log"] = m.group(1)
        except ReproError:
            pass  # a log that cannot be read names no base model; the review does not judge the log
    if any(f.startswith(BASE + "/") for f in files):
        found[f"its {BASE}/ folder"] = dir_identity(os.path.join(bundle, BASE))
    return found


# ------------------------------------------------------------------ redraw, compare, score

def redraw(entry, base_dir, lora_path, digest, works, params, options):
    """(images uint8 [N, size, size, 3], the worker's platform) drawn in the sandbox; the same
    request (base, weights' digest, parameters, prompts and seeds) is drawn once per review."""
    key = repr((entry.base_model["sha256"], digest, sorted(params.items()),
                [(w["prompt"], w["seed"]) for w in works]))
    cache = getattr(options, "cache", None)
    if cache is not None and key in cache:
        return cache[key]
    req = {"task": "redraw", "base": base_dir, "weights": entry.weights, **params,
           "works": [[w["prompt"], w["seed"]] for w in works]}
    worker = Worker(Sandbox(options.sandbox), readonly=[(base_dir, base_dir)], trusted=False)
    answer, out = Staged(worker, req, {LORA_FILE: lora_path}, options.timeout, outputs=["works.safetensors"]).run()
    try:
        arrays, _ = exchange.read_arrays(os.path.join(out, "works.safetensors"), "the redrawn works")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    images = arrays.get("images")
    want = (len(works), entry.size, entry.size, 3)
    if images is None or images.dtype != np.uint8 or images.shape != want:
        raise ReproError(f"the redraw worker's images are not uint8 {list(want)}")
    platform = answer.get("platform") if isinstance(answer.get("platform"), dict) else {}
    if cache is not None:
        cache[key] = (images, platform)
    return images, platform


def same_platform(made_on, redrawn_on):
    return isinstance(made_on, dict) and all(made_on.get(k) == redrawn_on.get(k) for k in PLATFORM_KEYS)


def compare(works, submitted, redrawn, tolerance):
    """Per work: its largest |difference| and the share of pixel values that differ."""
    out = []
    for w, a, b in zip(works, submitted, redrawn):
        if a is None:
            out.append({**w, "largest_difference": None, "differing": None, "ok": False})
            continue
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        largest = int(diff.max())
        out.append({**w, "largest_difference": largest, "differing": round(float((diff > 0).mean()), 6),
                    "ok": largest <= tolerance})
    return out


def scores(entry, images, works):
    """{score: value} and {score: the model it used}, computed here from the redrawn images."""
    values, models = {}, {}
    for name, spec in entry.scores.items():
        if name == "clip_score":
            clip = clip_embedder(spec["model"], spec.get("sha256") or "")
            values[name] = score_images(images, prompts=[w["prompt"] for w in works], clip=clip)["clip_score"]
            models[name] = clip.identity
        elif name == "fid":
            ref = spec["reference"]
            strict.regular_file(ref["path"], "the contest's FID reference set")
            if sha256_file(ref["path"]) != ref["sha256"]:
                raise ReproError(f"the contest's FID reference set {ref['path']} is not the file its sha256 names")
            arrays, _ = exchange.read_arrays(ref["path"], "the contest's FID reference set")
            reference = arrays.get("images")
            if reference is None or reference.dtype != np.uint8 or reference.ndim != 4 or reference.shape[-1] != 3 \
                    or len(reference) < 2:
                raise ReproError("the contest's FID reference set must hold images, uint8 [N >= 2, H, W, 3]")
            inc = spec["inception"]
            extractor = fid_extractor("", "") if not isinstance(inc, dict) else fid_extractor(inc["path"], inc["sha256"])
            if len(images) < 2:
                raise ReproError("FID needs at least 2 works")
            values[name] = score_images(images, reference=reference, fid=extractor)["fid"]
            models[name] = extractor.identity
    return values, models


# ------------------------------------------------------------------ one submission

def review_bundle(repo, tree, entry, options, result):
    """Review the bundle in a submitted repository (tree: repro.review.scan_tree's entries, with
    nothing but regular files and folders): fills result's problems, checks, targets, bundle."""
    prefix = find_bundle(tree)
    bundle = os.path.join(repo, prefix) if prefix else repo
    files = {(rel[len(prefix) + 1:] if prefix else rel): size for rel, (kind, size) in tree.items()
             if kind == "file" and (not prefix or rel.startswith(prefix + "/"))}
    info = {"folder": prefix or ".", "works": [], "weights_sha256": None, "base_model": None, "scores": {},
            "score_models": {}, "platform": None, "tolerance": None, "summary": "not redrawn"}
    result["bundle"] = info
    problems = result["problems"]
    checks = ["files", "card", "works"]
    result["checks"] = checks
    problems += check_sums(bundle, files)

    manifest = None
    try:
        if MANIFEST not in files:
            raise ReproError(f"it has no {MANIFEST} (what the bundle is: repro.diffusion.submit writes it)")
        manifest = _json(bundle, MANIFEST, MANIFEST)
        if manifest.get("weights") != entry.weights:
            problems.append(f"{MANIFEST} says its weights are {str(manifest.get('weights'))[:40]!r}; the contest "
                            f"judges {entry.weights} bundles")
    except ReproError as e:
        problems.append(str(e))

    works, params, made_on = [], None, None
    try:
        if METADATA not in files:
            raise ReproError(f"it has no {METADATA} (the works' prompts and seeds)")
        works, params, made_on, found = read_works(_json(bundle, METADATA, METADATA), entry)
        problems += found
    except ReproError as e:
        problems.append(str(e))
    info["works"] = [dict(w) for w in works]
    extra = sorted(f for f in files if f.startswith(IMAGES + "/") and f not in
                   {METADATA, GRID} | {f"{IMAGES}/{w['file']}" for w in works})
    if extra and works:
        problems.append(f"images/ holds files that are not works listed in {METADATA}: {_names(extra)}")

    card_sha = None
    if CARD not in files:
        problems.append(f"it has no model card ({CARD})")
    else:
        try:
            text = _read(os.path.join(bundle, CARD), MAX_CARD_BYTES, f"the model card ({CARD})").decode("utf-8")
            found, card_sha = card_problems(text, entry.card_fields, works)
            problems += found
        except UnicodeDecodeError:
            problems.append(f"the model card ({CARD}) is not UTF-8 text")
        except ReproError as e:
            problems.append(str(e))

    submitted = []
    for w in works:
        rel = f"{IMAGES}/{w['file']}"
        try:
            if rel not in files:
                raise ReproError(f"{rel} is listed in {METADATA} but not there")
            submitted.append(read_png(os.path.join(bundle, rel), entry.size, rel))
        except ReproError as e:
            problems.append(str(e))
            submitted.append(None)

    base_dir = contest_base(entry)  # the maintainers' copy: a wrong one is their problem, said as such
    want = entry.base_model["sha256"]
    declared = declared_bases(bundle, files, manifest, card_sha)
    info["base_model"] = {"contest": want, "declared": declared}
    if declared.get(MANIFEST) is None and manifest is not None:
        problems.append(f"{MANIFEST} does not declare its base model's identity (base_model_identity: "
                        f"'<name> sha256:<64 hex>')")
    other = {where: sha for where, sha in declared.items() if sha is not None and sha != want}
    if other:
        problems.append("a base model other than the declared one: " + "; ".join(
            f"{where} names sha256:{sha[:12]}..." for where, sha in other.items())
            + f"; the contest's base model is sha256:{want[:12]}...")

    lora_path, digest = os.path.join(bundle, LORA), None
    others = sorted(f for f in files if f.startswith("weights/") and f != LORA)
    if others:
        problems.append(f"weights/ holds files besides {os.path.basename(LORA)}: {_names(others)} (a LoRA bundle's "
                        f"weights are that one safetensors file)")
    if LORA not in files:
        problems.append(f"it has no LoRA weights ({LORA})")
    else:
        try:
            digest = lora_digest(lora_path)
        except ReproError as e:
            problems.append(str(e))
    info["weights_sha256"] = digest
    if digest is not None:
        result["_weights"] = lora_path  # for the comparison across teams (repro.review), never published

    if not options.runs_code:
        info["summary"] = "not redrawn (--logs-only)"
        return
    if digest is None or not works or params is None:
        info["summary"] = "not redrawn: " + ("no readable weights" if digest is None else "no readable works")
        return
    images, redrawn_on = redraw(entry, base_dir, lora_path, digest, works, params, options)
    same = same_platform(made_on, redrawn_on)
    tolerance = 0 if same else entry.pixel_tolerance
    info["platform"] = {"works": made_on, "redraw": redrawn_on, "same": same}
    info["tolerance"] = tolerance
    compared = compare(works, submitted, images, tolerance)
    info["works"] = compared
    checks.append("redraw")
    bad = [c for c in compared if not c["ok"]]
    where = ("on the platform the works were made on: exact required" if same else
             f"on another platform than the works' ({_platform_diff(made_on, redrawn_on)}): the contest allows a "
             f"largest difference of {tolerance}")
    found = [c["largest_difference"] for c in compared if c["largest_difference"] is not None]
    largest = max(found) if found else None
    if bad:
        detail = "; ".join(f"{IMAGES}/{c['file']} (prompt {c['prompt'][:40]!r}, claimed seed {c['seed']})"
                           + (f" differs by up to {c['largest_difference']} of 255 in "
                              f"{c['differing']:.1%} of its values" if c["largest_difference"] is not None
                              else " could not be read") for c in bad[:4])
        problems.append(f"{len(bad)} of {len(compared)} works {'does' if len(bad) == 1 else 'do'} not come from the "
                        f"submitted weights and the "
                        f"declared base model: redrawn from their prompt and claimed seed, {detail}"
                        + (f" and {len(bad) - 4} more" if len(bad) > 4 else "") + f" ({where})")
    info["summary"] = (f"redrew {len(compared)} works {'on their platform' if same else 'on another platform'}: "
                       + (f"{len(bad)} differ{'s' if len(bad) == 1 else ''}, " if bad else "")
                       + f"largest difference {largest if largest is not None else '-'}"
                       + ("" if same else f" (allowed {tolerance})"))
    if entry.scores:
        values, models = scores(entry, images, works)
        info["scores"], info["score_models"] = values, models
        checks.append("scores")
        for name, target in entry.targets().items():
            value = values.get(name)
            passed = value is not None and target.reached(value)
            result["targets"].append({
                "paper": entry.plugin, "exp": entry.experiment, "metric": name, "value": value, "bar": target.bar(),
                "passed": passed, "why": "" if passed else
                f"{value:.4f} does not reach the bar {target.bar()} (computed by the judge from the "
                f"{len(works)} works it redrew)"})
    result["full_review"] = True


def _platform_diff(a, b):
    if not isinstance(a, dict):
        return "the works do not record theirs"
    keys = [k for k in PLATFORM_KEYS if a.get(k) != b.get(k)]
    return ", ".join(f"{k} {str(a.get(k))[:30]} vs {str(b.get(k))[:30]}" for k in keys[:3])
