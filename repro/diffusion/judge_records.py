"""The bundle's own records read against each other, for the judge (repro.diffusion.judge):
submission.json and images/metadata.json with the keys submit and generate write, the model
card's structured block against them (repro.diffusion.card), regenerate.py against the code
the harness writes for the works, the training log's header against submission.json and the
card. Each file is read as data from a regular file of bounded size; each problem is one line.
"""
import os

from repro import strict
from repro.diffusion import card
from repro.diffusion.bundle_files import CARD, EVENTS, LOG_CONFIG as CONFIG, MANIFEST, METADATA, REGENERATE
from repro.errors import ReproError
from repro.boundary.tree import read_at_most as _open_regular
from repro.run import runlog

MAX_CARD_BYTES = 1 << 20
MAX_JSON_BYTES = 8 << 20
MAX_LINE_BYTES = 4 << 20

# what submit and generate write into submission.json and images/metadata.json: nothing else is read
MANIFEST_KEYS = {"format", "paper", "exp", "seed", "lite", "checkpoint_sha256", "weights", "base_model",
                 "base_model_identity", "verified", "created"}
METADATA_KEYS = {"paper", "exp", "checkpoint_sha256", "checkpoint_step", "provenance", "config", "negative_prompt",
                 "scheduler", "scheduler_config", "steps", "guidance_scale", "size", "n", "seed", "prompts", "images",
                 "platform", "seconds"}


def unknown_keys(value, known, what):
    unknown = sorted(map(str, set(value) - known))
    if unknown:
        raise ReproError(f"{what} has the unknown key {unknown[0][:40]!r}: a bundle holds what submit writes "
                         f"({', '.join(sorted(known))})")


def read_limited(path, max_bytes, what):
    """The bytes of a regular file (never a link or FIFO) of at most max_bytes."""
    try:
        data = _open_regular(path, max_bytes)
    except OSError as e:
        raise ReproError(f"{what} cannot be read ({e.strerror or e})") from None
    if data is None:
        raise ReproError(f"{what} is over the {max_bytes:,} bytes such a file may have")
    return data


def read_json(bundle, rel, what):
    data = read_limited(os.path.join(bundle, rel), MAX_JSON_BYTES, what)
    value = strict.loads_json(strict.utf8(data, what), what)
    if not isinstance(value, dict):
        raise ReproError(f"{what}: the top level must be an object")
    return value


def told(problems, read, *args):
    """read(*args), or None with its ReproError's one line added to problems: the judge goes on
    to the bundle's other checks."""
    try:
        return read(*args)
    except ReproError as e:
        problems.append(str(e))
        return None


def read_record(bundle, files, rel, known, made_by):
    """One of the bundle's JSON records (submission.json, images/metadata.json) with only the
    keys known; made_by says what writes it, for the bundle that has none."""
    if rel not in files:
        raise ReproError(f"it has no {rel} ({made_by})")
    value = read_json(bundle, rel, rel)
    unknown_keys(value, known, rel)
    return value


def first_line(path, what):
    raw = strict.read_start(path, what, MAX_LINE_BYTES, line=True)
    if len(raw) > MAX_LINE_BYTES:
        raise ReproError(f"{what}: its first line is over {MAX_LINE_BYTES:,} bytes")
    return strict.utf8(raw, what)


# ------------------------------------------------------------------ the bundle's own files

def read_manifest(bundle, files, entry, problems):
    """submission.json, or None (its problems added)."""
    manifest = told(problems, read_record, bundle, files, MANIFEST, MANIFEST_KEYS,
                    "what the bundle is: repro.diffusion.submit writes it")
    if manifest is None:
        return None
    if manifest.get("weights") != entry.weights:
        problems.append(f"{MANIFEST} says its weights are {str(manifest.get('weights'))[:40]!r}; the contest "
                        f"judges {entry.weights} bundles")
    base = manifest.get("base_model")
    if not isinstance(base, str) or not base or len(base) > 200 or not base.isprintable():
        problems.append(f"{MANIFEST}: base_model must name the base model (printable text)")
    if not isinstance(manifest.get("lite"), bool):
        problems.append(f"{MANIFEST}: lite must be true or false (whether the weights come from a --lite smoke run)")
    return manifest


def check_card(bundle, files, entry, meta, works, manifest, problems):
    """The model card against its structured block, the block against the bundle's own records
    (the works, submission.json), regenerate.py against what the harness writes; returns the
    card's (text, block) or (None, None)."""
    try:
        if CARD not in files:
            raise ReproError(f"it has no model card ({CARD})")
        text = read_limited(os.path.join(bundle, CARD), MAX_CARD_BYTES, f"the model card ({CARD})").decode("utf-8")
        block = card.read_block(text)
    except UnicodeDecodeError:
        problems.append(f"the model card ({CARD}) is not UTF-8 text")
        return None, None
    except ReproError as e:
        problems.append(str(e) if str(e).startswith(("it has", "the model card")) else f"model card ({CARD}): {e}")
        return None, None
    claimed = [{k: w[k] for k in ("file", "prompt", "seed")} for w in works]
    if works and block["works"] != claimed:
        problems.append(f"the model card's repro.works are not the works of {METADATA} (their files, prompts and "
                        f"seeds, in order)")
    if works and block["prompts"] != list(dict.fromkeys(w["prompt"] for w in claimed)):
        problems.append("the model card's repro.prompts are not its works' prompts")
    if manifest is not None:
        for key, mine, what in (("base_model", block["base_model"], "base_model"),
                                ("base_model_identity", block["identity"], "repro.base_model_identity")):
            if manifest.get(key) != mine:
                problems.append(f"the model card's {what} is {str(mine)[:60]!r}; {MANIFEST} says "
                                f"{str(manifest.get(key))[:60]!r}")
    regenerate = expected_regenerate(manifest, meta)
    if regenerate is not None and REGENERATE in files:
        got = read_limited(os.path.join(bundle, REGENERATE), MAX_CARD_BYTES, REGENERATE).decode("utf-8", "replace")
        if got != regenerate:
            line = next((i for i, (a, b) in enumerate(zip(got.splitlines() + [""], regenerate.splitlines() + [""]), 1)
                         if a != b), 1)
            problems.append(f"{REGENERATE} is not the code the harness writes for these works (from line {line}): "
                            f"the card tells readers to run it")
    config = read_limited(os.path.join(bundle, CONFIG), MAX_CARD_BYTES, CONFIG).decode("utf-8", "replace") \
        if CONFIG in files else ""
    problems += card.body_problems(text, {**block, "works": claimed or block["works"]}, entry.card_fields,
                                   regenerate, config)
    return text, block


def expected_regenerate(manifest, meta):
    """regenerate.py as repro.diffusion.submit writes it for these works, or None where the bundle's
    records are too broken to say."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("base_model"), str) or not isinstance(meta, dict):
        return None
    try:
        return card.load_code(manifest["base_model"], "lora", meta)
    except (KeyError, TypeError):
        return None


def read_training_log(bundle):
    """The events of the bundle's training log, its hash chain checked (repro.run.runlog)."""
    path = os.path.join(bundle, EVENTS)
    try:
        lines, events = runlog.read_log(path)
    except ReproError as e:
        raise ReproError(f"its training log cannot be read: {str(e).replace(path, EVENTS)}") from None
    broken = next((i + 1 for i in range(1, len(lines)) if events[i].get("prev") != runlog.line_hash(lines[i - 1])),
                  None)
    if broken is not None:
        raise ReproError(f"its training log ({EVENTS}) is not the run's: line {broken} does not chain to the line "
                         f"before it (prev)")
    if events[0].get("kind") != "run_start":
        raise ReproError(f"its training log ({EVENTS}) does not start with the run's header (run_start)")
    return events


def check_log(bundle, files, manifest, meta, block, entry, info, problems):
    """The training log against submission.json, the works and the card (paper, the final
    checkpoint, smoke run), and whether the contest takes a smoke run's weights."""
    if EVENTS not in files:
        return  # bundle_files says it is required
    events = told(problems, read_training_log, bundle)
    if events is None:
        return
    head, end = events[0], events[-1]
    if end.get("kind") != "run_end" or end.get("status") != "success":
        problems.append(f"its training log ({EVENTS}) does not end with the run's successful end (run_end)")
    last = [ev.get("sha256") for ev in events if ev.get("kind") == "checkpoint"][-1:]
    claimed = {where: record.get("checkpoint_sha256") for where, record in ((MANIFEST, manifest), (METADATA, meta))
               if isinstance(record, dict)}
    other = {where: sha for where, sha in claimed.items() if sha != (last[0] if last else None)}
    if other:
        problems.append(f"its training log's final checkpoint is {str(last[0] if last else None)[:12]}...; "
                        + "; ".join(f"{where} names {str(sha)[:12]}..." for where, sha in other.items()))
    lite = {EVENTS: bool(head.get("lite"))}
    if isinstance(manifest, dict) and isinstance(manifest.get("lite"), bool):
        lite[MANIFEST] = manifest["lite"]
        if head.get("paper") != manifest.get("paper"):
            problems.append(f"its training log is a run of {str(head.get('paper'))[:40]!r}; {MANIFEST} says "
                            f"{str(manifest.get('paper'))[:40]!r}")
    if block is not None:
        lite["the model card"] = block["lite"]
    if len(set(lite.values())) > 1:
        problems.append("whether its weights come from a --lite smoke run is told two ways: "
                        + "; ".join(f"{where} says {'yes' if v else 'no'}" for where, v in lite.items()))
    info["lite"] = any(lite.values())
    if info["lite"]:
        info["caveats"].append("weights from a --lite smoke run")
        if entry.smoke_runs == "refuse":
            problems.append("its weights come from a --lite smoke run (its training log and submission.json say so); "
                            "the contest refuses smoke runs (smoke_runs: refuse)")
