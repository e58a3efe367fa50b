"""What a text-to-image bundle may hold: the files repro.diffusion.submit writes, each of its
kind, and nothing that runs or names the machine it was made on.

An allowlist of names (a few fixed files, the works under images/, the built-in base model's
files under base/, a DreamBooth pipeline's under weights/) with a kind each (PNG, JSON, JSON lines, YAML, text, Python, safetensors),
checked from the file's bytes; then, for every file of the submitted repository, inside the
bundle or not: no pickle, zipped or numpy archive (refused by their magic bytes: loading one
can run code), no program (an executable mode bit, a #! line, an ELF / Mach-O / PE header);
and for every text file of the bundle, no absolute machine path (/home/..., ~/..., C:\\...).
Each problem is one line naming the file. Used by the judge (repro.diffusion.judge) and by
submit, which refuses to write a bundle the judge would refuse.
"""
import os
import re
import stat

from repro import strict
from repro.errors import ReproError
from repro.run.rundir import CONFIG, EVENTS as RUN_EVENTS, TEXT

SUMS = "SHA256SUMS"
MANIFEST = "submission.json"
CARD = "README.md"
REGENERATE = "regenerate.py"
METADATA = "images/metadata.json"
GRID = "images/grid.png"
LORA = "weights/paddle_lora_weights.safetensors"
LORA_FILE = "lora.safetensors"  # the name the LoRA tensors have among a redraw worker's inputs
EVENTS = f"logs/{RUN_EVENTS}"   # the training log, as submit copies the run's files
LOG_CONFIG = f"logs/{CONFIG}"
FIXED = {SUMS: "text", MANIFEST: "json", CARD: "text", REGENERATE: "python", "verify.txt": "text",
         "verify.json": "json", METADATA: "json", GRID: "png", EVENTS: "jsonl", f"logs/{TEXT}": "text",
         LOG_CONFIG: "yaml", LORA: "safetensors"}
REQUIRED = (REGENERATE, EVENTS, LOG_CONFIG)  # the judge itself says when the others are missing
WORK = re.compile(r"images/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.png")
BASE_FILE = re.compile(r"(?:base|weights)/(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}/){0,3}[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}"
                       r"\.(json|safetensors|txt)")
BASE_KINDS = {"json": "json", "safetensors": "safetensors", "txt": "text"}
MAX_TEXT_BYTES = 64 << 20
# magic bytes of what can run code when loaded or executed, whatever the file is called
MAGIC = ((re.compile(rb"\x80[\x02-\x05]"), "a pickle (loading it runs code)"),
         (re.compile(rb"PK\x03\x04"), "a zip archive (a PyTorch checkpoint is a zipped pickle)"),
         (re.compile(rb"\x93NUMPY"), "a numpy array file (it can hold pickled objects)"),
         (re.compile(rb"\x1f\x8b"), "a gzip archive"),
         (re.compile(rb"#!"), "a script (it starts with #!)"),
         (re.compile(rb"\x7fELF"), "a program (an ELF binary)"),
         (re.compile(rb"MZ"), "a program (a Windows executable)"),
         (re.compile(rb"\xfe\xed\xfa[\xce\xcf]|[\xce\xcf]\xfa\xed\xfe|\xca\xfe\xba\xbe"), "a program (a Mach-O binary)"))
# an absolute path: /a/... after a space, quote, bracket or the line's start (not inside a
# URL or a relative path), a home folder ~/..., a drive C:\ or C:/..., a share \\host\...
MACHINE_PATH = re.compile(r"(?<![\w.:/~\\-])/[\w.@+-]+/|(?<![\w.~/-])~[\w.-]*/|(?<![\w])[A-Za-z]:[\\/][\w.]"
                          r"|(?<![\w\\])\\\\[\w.-]+\\")
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def kind_of(rel):
    """The kind a file of the bundle must be, or None where submit writes no such file."""
    if rel in FIXED:
        return FIXED[rel]
    if WORK.fullmatch(rel):
        return "png"
    m = BASE_FILE.fullmatch(rel)
    return BASE_KINDS[m.group(1)] if m else None


def _head(path, n=16):
    fd = os.open(path, _FILE)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReproError("not a regular file")
        return os.read(fd, n), st.st_mode
    finally:
        os.close(fd)


def hazard(path, rel):
    """One line saying why the file may not be in a submission (it runs, or can run code when
    loaded), or None."""
    try:
        head, mode = _head(path)
    except (OSError, ReproError) as e:
        return f"{rel} cannot be read ({getattr(e, 'strerror', None) or e})"
    for magic, what in MAGIC:
        if magic.match(head):
            return f"{rel} is {what}: a bundle holds data, never code"
    if mode & 0o111:
        return f"{rel} is executable (mode {stat.S_IMODE(mode):o}): a bundle holds no programs"
    return None


def _text(path, rel):
    data = strict.read_start(path, rel, MAX_TEXT_BYTES)
    if len(data) > MAX_TEXT_BYTES:
        raise ReproError(f"{rel} is over the {MAX_TEXT_BYTES:,} bytes a text file of a bundle may have")
    text = strict.utf8(data, rel)
    if "\0" in text:
        raise ReproError(f"{rel} holds a NUL character: not text")
    return text


def _strings(value):
    """Every string in a parsed JSON / YAML value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def machine_path(text):
    """(line number, the path's start) of the first absolute machine path in text, or None."""
    m = MACHINE_PATH.search(text)
    if m is None:
        return None
    line = text.count("\n", 0, m.start()) + 1
    end = min([len(text)] + [i for i in (text.find(c, m.start()) for c in " \n\"'`|,)") if i >= 0])
    return line, text[m.start():min(end, m.start() + 60)]


def check_kind(path, rel, kind):
    """Problems with one allowlisted file: its bytes are not of its kind, or it names a machine path."""
    if kind == "png":
        head, _ = _head(path, 8)
        with open(path, "rb") as f:  # a regular file: _head checked it
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8))
            tail = f.read()
        if head != b"\x89PNG\r\n\x1a\n":
            return [f"{rel} is not a PNG file"]
        return [] if tail == b"IEND\xaeB`\x82" else [
            f"{rel} does not end with the PNG's end chunk (a cut file, or other data after the image)"]
    if kind == "safetensors":
        head, _ = _head(path, 9)
        size = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
        ok = len(head) == 9 and 2 <= size <= 100 << 20 and head[8:9] == b"{"
        return [] if ok else [f"{rel} is not a safetensors file"]
    try:
        text = _text(path, rel)
        values = []
        if kind == "json":
            values = [strict.loads_json(text, rel)]
        elif kind == "jsonl":
            values = [strict.loads_json(line, f"{rel} line {i}") for i, line in enumerate(text.splitlines(), 1)
                      if line.strip()]
        elif kind == "yaml":
            values = [strict.loads_yaml(text, rel)]
    except ReproError as e:
        return [str(e)]
    found = machine_path(text)
    if found is None:  # a path hidden by JSON escapes ("\\/home\\/...") is one once decoded
        found = next(((0, s[:60]) for v in values for s in _strings(v) if machine_path(s)), None)
    if found is not None:
        where = f" line {found[0]}" if found[0] else ""
        return [f"{rel}{where} names a path on the machine it was made on ({found[1]!r}): a bundle names no "
                f"path outside itself"]
    return []


def check_files(root, files, bundle_prefix):
    """Problems with a submitted repository's files (root: its top; files: {path: size} of its
    regular files; bundle_prefix: the bundle's folder, '' for the top): every file of the bundle
    is one submit writes, of its kind; the required ones are there; nothing anywhere runs."""
    problems, inside, bundle = [], {}, set()
    for rel in sorted(files):
        mine = not bundle_prefix or rel.startswith(bundle_prefix + "/")
        if mine:
            bundle.add(rel[len(bundle_prefix) + 1:] if bundle_prefix else rel)
        why = hazard(os.path.join(root, rel), rel)
        if why:
            problems.append(why)
        elif mine:
            inside[rel[len(bundle_prefix) + 1:] if bundle_prefix else rel] = rel
    for rel in sorted(set(files) - set(inside.values()) - {r for r in files if any(p.startswith(f"{r} ")
                                                                                  for p in problems)}):
        problems.append(f"{rel} is outside the bundle's folder {bundle_prefix}/: a submission's repository holds the "
                        f"bundle and nothing else")
    for rel in sorted(r for r in inside if kind_of(r) is None):
        problems.append(f"{rel} is not a file repro.diffusion.submit writes: a bundle holds its weights, works, "
                        f"card, logs and their sums, nothing else")
    for rel in REQUIRED:
        if rel not in bundle:
            what = "the training log" if rel == EVENTS else "a file repro.diffusion.submit writes"
            problems.append(f"it has no {rel} ({what}; the review requires it)")
    for rel, full in sorted(inside.items()):
        kind = kind_of(rel)
        if kind is not None:
            problems += check_kind(os.path.join(root, full), rel, kind)
    return problems
