"""The judge's side of a text-to-image submission: a bundle that
`repro.diffusion.submit` wrote (a contest entry of kind text_to_image,
repro/judge/contest_t2i.py), reviewed by `repro.review`.

Trust boundary: nothing here imports paper code or anything the bundle holds.
The bundle's files are read as data, each from a regular file of bounded size
(the review has already refused links, FIFOs and devices anywhere in the
submission). The bundle decides nothing the judge should:

- files: only what submit writes, each of its kind (repro.diffusion.bundle_files):
  no pickle, archive or program anywhere, no machine path, the training log there;
- card: its structured block (repro.diffusion.card) agrees with the works and
  submission.json, the prose contradicts neither, scores the judge did not compute
  sit under a heading marked (unverified), regenerate.py is the harness's code;
- cost: the redraw's steps, scheduler, guidance and threads are within what the
  contest sets, or the bundle is refused before anything is drawn;
- redraw (repro.diffusion.judge_redraw): a worker in the sandbox draws every work
  again from the LoRA, the maintainers' copy of the declared base model and the
  work's claimed prompt and seed, within the submission's time budget; the pixels
  must match exactly where the works' platform record is the judge's, and on any
  other only where the contest accepts that platform (tolerate:), said so on the
  page; a missing record is refused;
- scores: computed from the redrawn works with the contest's models, never the
  submitter's numbers; the card the contest publishes carries them.

Flags besides: a base model other than the declared one (in submission.json, the
model card, the training log or a shipped base/ folder); a smoke run's weights
(shown, or refused where the contest says smoke_runs: refuse); weights identical
to another team's (repro.review compares weights_sha256 across submissions).
"""
import hashlib
import io
import math
import os
import re

import numpy as np

from repro import strict
from repro.diffusion import bundle_files, card
from repro.diffusion.bundle_files import EVENTS, GRID, LORA, MANIFEST, METADATA, SUMS
from repro.diffusion.judge_records import METADATA_KEYS, unknown_keys, check_card, check_log, first_line, \
    read_limited, read_manifest, read_record, told
from repro.diffusion.judge_redraw import judges_scores, redraw_and_compare, score_targets
from repro.diffusion.pretrained import SCHEDULERS, check_pretrained, dir_identity, resolve_pretrained
from repro.errors import ReproError
from repro.boundary import exchange
from repro.judge.contest_t2i import MAX_PROMPT
from repro.machine import check_mkl_path
from repro.strict import sha256_file

IMAGES = "images"
BASE = "base"
MAX_SUMS_BYTES = 1 << 20
MAX_PNG_BYTES = 64 << 20
MAX_PIXELS = 2048 * 2048
MAX_LORA_BYTES = 2 << 30
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
WORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.png")
SHA_IN_TEXT = re.compile(r"sha256:([0-9a-f]{64})")


def _names(items, n=3):
    items = list(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


# ------------------------------------------------------------------ reading the bundle's files

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
        text = read_limited(os.path.join(bundle, SUMS), MAX_SUMS_BYTES, SUMS).decode("utf-8")
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
    data = read_limited(path, MAX_PNG_BYTES, what)
    if not data.startswith(PNG_MAGIC):
        raise ReproError(f"{what} is not a PNG file")
    if not data.endswith(PNG_END):
        raise ReproError(f"{what} does not end with the PNG's end chunk (a cut file, or other data after the image)")
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
        unknown_keys(rec, {"file", "prompt", "seed"}, at)
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
    platform = meta.get("platform")
    if not isinstance(platform, dict) or not platform:
        raise ReproError(f"{METADATA} records no platform (what drew the works): the redraw must be exact on the "
                         f"judge's platform, so the works must say where they were made")
    threads = platform.get("threads")
    if type(threads) is not int or not 1 <= threads <= 1024:
        raise ReproError(f"{METADATA}: platform.threads must be an integer between 1 and 1024")
    # MKL's code path the works were drawn on, which the redraw takes (absent: drawn before it was recorded)
    mkl = check_mkl_path(platform.get("mkl_path"), f"{METADATA}: platform.mkl_path")
    params = {"scheduler": names[scheduler], "steps": steps, "guidance": float(guidance), "negative_prompt": negative,
              "size": entry.size, "threads": threads, "mkl_path": mkl}
    problems += cost_problems(params, entry)
    return works, params, platform, problems


def cost_problems(params, entry):
    """What the redraw would cost beyond what the contest sets (its redraw: steps, scheduler,
    guidance, threads): each one line, found before anything is drawn."""
    bounds = entry.redraw or {}
    problems = []
    for key, what in (("steps", "steps"), ("guidance", "guidance_scale"), ("threads", "platform.threads")):
        lo, hi = bounds.get(key, (params[key], params[key]))
        if not lo <= params[key] <= hi:
            allowed = f"{lo:g}" if lo == hi else f"{lo:g} to {hi:g}"
            problems.append(f"{METADATA}: {what} {params[key]:g} is outside what the contest redraws ({allowed}): "
                            f"refused before any redraw")
    if params["scheduler"] not in bounds.get("scheduler", (params["scheduler"],)):
        problems.append(f"{METADATA}: scheduler {params['scheduler']} is not one the contest redraws with "
                        f"({', '.join(bounds['scheduler'])}): refused before any redraw")
    return problems


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
    if EVENTS in files:
        try:
            head = strict.loads_json(first_line(os.path.join(bundle, EVENTS), EVENTS), EVENTS)
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


# ------------------------------------------------------------------ one submission

def review_bundle(repo, tree, entry, options, result, deadline=None):
    """Review the bundle in a submitted repository (tree: repro.review.scan_tree's entries, with
    nothing but regular files and folders): fills result's problems, checks, targets, bundle.
    deadline: the submission's time budget as a time.monotonic() instant (or options.deadline);
    the redraw runs within it."""
    prefix = find_bundle(tree)
    bundle = os.path.join(repo, prefix) if prefix else repo
    files = {(rel[len(prefix) + 1:] if prefix else rel): size for rel, (kind, size) in tree.items()
             if kind == "file" and (not prefix or rel.startswith(prefix + "/"))}
    info = {"folder": prefix or ".", "works": [], "weights_sha256": None, "base_model": None, "scores": {},
            "score_models": {}, "platform": None, "tolerance": None, "lite": None, "caveats": [],
            "summary": "not redrawn"}
    result["bundle"] = info
    problems = result["problems"]
    checks = ["files", "card", "works"]
    result["checks"] = checks
    problems += check_sums(bundle, files)
    problems += bundle_files.check_files(repo, {rel: size for rel, (kind, size) in tree.items() if kind == "file"},
                                         prefix)
    manifest = read_manifest(bundle, files, entry, problems)
    works, params, made_on, meta = [], None, None, None
    try:
        meta = read_record(bundle, files, METADATA, METADATA_KEYS, "the works' prompts and seeds")
        works, params, made_on, found = read_works(meta, entry)
        problems += found
    except ReproError as e:
        problems.append(str(e))
    info["works"] = [dict(w) for w in works]
    told = {p.split(" ", 1)[0] for p in problems}
    extra = sorted(f for f in files if f.startswith(IMAGES + "/") and f not in told and f not in
                   {METADATA, GRID} | {f"{IMAGES}/{w['file']}" for w in works})
    if extra and works:
        problems.append(f"images/ holds files that are not works listed in {METADATA}: {_names(extra)}")
    text, block = check_card(bundle, files, entry, meta, works, manifest, problems)
    check_log(bundle, files, manifest, meta, block, entry, info, problems)
    submitted = read_submitted(bundle, files, works, entry, problems)
    base_dir = check_bases(bundle, files, entry, manifest, block, info, problems)
    lora_path, digest = check_lora(bundle, files, info, result, problems)

    if not options.runs_code:
        info["summary"] = "not redrawn (--logs-only)"
        return
    if digest is None or not works or params is None or problems:
        info["summary"] = "not redrawn: " + ("no readable weights" if digest is None else "no readable works"
                                             if not works or params is None else "refused before its redraw")
        return
    ok = redraw_and_compare(entry, base_dir, lora_path, digest, works, params, made_on, submitted, options,
                            deadline, info, problems)
    images = info.pop("_images", None)
    if info["platform"] is not None:  # drawn and compared, whatever it found
        checks.append("redraw")
        result["full_review"] = True
    if not ok:
        return
    if entry.scores:
        score_targets(entry, images, works, info, result)
    if text is not None:
        result["_card"] = card.published(text, judges_scores(info, result["targets"]))


def read_submitted(bundle, files, works, entry, problems):
    submitted = []
    for w in works:
        rel = f"{IMAGES}/{w['file']}"
        try:
            if rel not in files:
                raise ReproError(f"{rel} is listed in {METADATA} but not there")
            submitted.append(read_png(os.path.join(bundle, rel), entry.size, rel))
        except ReproError as e:
            if str(e) not in problems:  # bundle_files may have said it already
                problems.append(str(e))
            submitted.append(None)
    return submitted


def check_bases(bundle, files, entry, manifest, block, info, problems):
    base_dir = contest_base(entry)  # the maintainers' copy: a wrong one is their problem, said as such
    want = entry.base_model["sha256"]
    declared = declared_bases(bundle, files, manifest, block["sha256"] if block else None)
    info["base_model"] = {"contest": want, "declared": declared}
    if declared.get(MANIFEST) is None and manifest is not None:
        problems.append(f"{MANIFEST} does not declare its base model's identity (base_model_identity: "
                        f"'<name> sha256:<64 hex>')")
    other = {where: sha for where, sha in declared.items() if sha is not None and sha != want}
    if other:
        problems.append("a base model other than the declared one: " + "; ".join(
            f"{where} names sha256:{sha[:12]}..." for where, sha in other.items())
            + f"; the contest's base model is sha256:{want[:12]}...")
    return base_dir


def check_lora(bundle, files, info, result, problems):
    lora_path, digest = os.path.join(bundle, LORA), None
    others = sorted(f for f in files if f.startswith("weights/") and f != LORA)
    if others:
        problems.append(f"weights/ holds files besides {os.path.basename(LORA)}: {_names(others)} (a LoRA bundle's "
                        f"weights are that one safetensors file)")
    if LORA not in files:
        problems.append(f"it has no LoRA weights ({LORA})")
    else:
        digest = told(problems, lora_digest, lora_path)
    info["weights_sha256"] = digest
    if digest is not None:
        result["_weights"] = lora_path  # for the comparison across teams (repro.review), never published
    return lora_path, digest

