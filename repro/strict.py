"""Strict, bounded parsing of files a stranger may have written: run logs,
configs, checkpoint metadata, export and contest files.

What a forger or a broken disk can put in such a file is refused with one
ReproError line naming the file, line and key, never a traceback: duplicate
keys (the later value would win silently), NaN and Infinity tokens, integers
of more than MAX_INT_DIGITS digits, nesting deeper than MAX_DEPTH, YAML
aliases (a few lines can expand to gigabytes), lines and files over their size
limits. Memory stays bounded by those limits whatever the input: an oversized
line is skipped in chunks, never read whole.
"""
import hashlib
import json
import math
import os
import re
import stat

import yaml

from repro.errors import ReproError

MAX_DEPTH = 64
MAX_INT_DIGITS = 40  # any honest int here (steps, seeds, counts) has far fewer
MAX_YAML_BYTES = 1 << 20
_CHUNK = 1 << 20


class _Invalid(ValueError):
    """A problem found inside json.loads' hooks, carried out with its key."""


def regular_file(path, what, max_bytes=None):
    """os.stat of path, which must be a regular file (links resolved) of at most
    max_bytes; a ReproError otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ReproError(f"{what} not found: {path}") from None
    except OSError as e:
        raise ReproError(f"{what} {path} cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ReproError(f"{what} {path} is not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ReproError(f"{what} {path} is {st.st_size:,} bytes, over the {max_bytes:,} such a file may have")
    return st


def inside(root, path, what):
    """path with links resolved, which must lie inside root (links resolved too)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ReproError(f"{what} {path} resolves to {real}, outside {root}")
    return real


def _pairs(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise _Invalid(f"duplicate key {k!r}")
        seen[k] = v
    return seen


def _int(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Invalid(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _float(text):
    value = float(text)
    if not math.isfinite(value):
        raise _Invalid(f"a number out of range ({text[:20]}...)")
    return value


def _constant(name):
    raise _Invalid(f"the non-standard token {name}")


def depth(value, limit=MAX_DEPTH):
    """Nesting depth of lists and dicts, up to limit + 1 (then it stops looking)."""
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def loads_json(text, where):
    """json.loads, strictly: one ReproError naming `where` for any of the module's refusals."""
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_float=_float,
                           parse_constant=_constant)
    except _Invalid as e:
        raise ReproError(f"{where}: {e}") from None
    except RecursionError:
        raise ReproError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise ReproError(f"{where} is not JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # e.g. a string with a lone surrogate
        raise ReproError(f"{where} is not valid JSON ({e})") from None
    if depth(value) > MAX_DEPTH:
        raise ReproError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    return value


def utf8(raw, what):
    """raw decoded as UTF-8; a ReproError '<what> is not UTF-8 text' otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReproError(f"{what} is not UTF-8 text") from None


def read_text(path, what, max_bytes):
    """A regular file of at most max_bytes, as UTF-8 text; a ReproError otherwise."""
    regular_file(path, what, max_bytes)
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    return utf8(raw, f"{what} {path}")


def read_json(path, what, max_bytes=16 << 20):
    """A whole JSON file (a dict at the top), read strictly."""
    value = loads_json(read_text(path, what, max_bytes), f"{what} {path}")
    if not isinstance(value, dict):
        raise ReproError(f"{what} {path}: the top level must be an object, got {type(value).__name__}")
    return value


def lines(path, max_line, max_bytes):
    """Yield (number, bytes of the line without its newline, ended) for each line.
    A line longer than max_line raises a ReproError naming it, after reading at
    most max_line + 1 bytes of it. `ended` is False for a last line without a newline."""
    regular_file(path, "log", max_bytes)
    with open(path, "rb") as f:
        n = 0
        while True:
            raw = f.readline(max_line + 1)
            if not raw:
                return
            n += 1
            if len(raw) > max_line and not raw.endswith(b"\n"):
                raise ReproError(f"{path} line {n} is longer than {max_line:,} bytes")
            ended = raw.endswith(b"\n")
            yield n, raw[:-1] if ended else raw, ended


# ---------------------------------------------------------------- YAML

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, duplicate keys, huge integers or deep nesting."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(problem=f"uses an alias (*{event.anchor}); aliases are not allowed",
                                       problem_mark=event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_DEPTH} levels",
                                           problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.MarkedYAMLError(problem=f"a key that is not a plain value ({key_node.tag})",
                                           problem_mark=key_node.start_mark) from None
            if duplicate:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        text = str(node.value).replace("_", "")
        if len(text.lstrip("+-")) > MAX_INT_DIGITS:
            raise yaml.MarkedYAMLError(problem=f"an integer of {len(text)} digits", problem_mark=node.start_mark)
        return super().construct_yaml_int(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_yaml_map)


def loads_yaml(text, where):
    """yaml.safe_load, strictly; a ReproError naming where (and the line) for anything refused."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or ["unreadable"])[0]
        raise ReproError(f"bad YAML in {where}{line}: {problem}") from None
    except RecursionError:
        raise ReproError(f"bad YAML in {where}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # a value the constructors cannot make (e.g. a date out of range)
        raise ReproError(f"bad YAML in {where}: {e}") from None


def read_yaml(path, what="config file", max_bytes=MAX_YAML_BYTES):
    return loads_yaml(read_text(path, what, max_bytes), path)


SHA256 = re.compile(r"[0-9a-f]{64}")  # a sha256 as a stranger's file must write it


def fields_of(data, where, fields, what=""):
    """{key: value} of a mapping that holds only the keys of fields ({key: (type, required)}),
    each checked by typed (None where absent); what: how an unknown key's line names the mapping.
    Every plugin and experiment name among them must be an identifier."""
    if not isinstance(data, dict):
        raise ReproError(f"{where} must be a mapping")
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        raise ReproError(f"{where}: unknown key {unknown[0][:40]!r}{what} (known: {', '.join(fields)})")
    values = {k: typed(data, k, tp, where, required) for k, (tp, required) in fields.items()}
    for key in ("plugin", "experiment"):
        if values.get(key) is not None and not (values[key].isidentifier() and values[key].isascii()):
            raise ReproError(f"{where}: {key} {values[key]!r} is not a valid name")
    return values


def typed(data, key, tp, where, required=False):
    """data[key] checked to be of type tp (a type or a tuple; an int where float is allowed becomes
    a float; a float must be finite), None where absent and not required; a ReproError naming
    where and key otherwise."""
    if key not in data:
        if required:
            raise ReproError(f"{where}: {key} is required")
        return None
    value = data[key]
    types = tp if isinstance(tp, tuple) else (tp,)
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ReproError(f"{where}: {key} must be {' or '.join(t.__name__ for t in types)}, "
                         f"got {type(value).__name__} {short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ReproError(f"{where}: {key} must be a finite number")
    return value


def short(value, n=40):
    """repr(value), cut to n characters for a message: the one shortening helper."""
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


# ------------------------------------------------------------------ hashing

def hash_read(read, limit=None):
    """(sha256 hex, bytes) of what read(n) gives until EOF, in _CHUNK pieces; with
    limit, at most limit + 1 bytes are read (so a file that grew shows it)."""
    h, n = hashlib.sha256(), 0
    while True:
        chunk = read(_CHUNK if limit is None else min(_CHUNK, limit + 1 - n))
        if not chunk:
            return h.hexdigest(), n
        h.update(chunk)
        n += len(chunk)
        if limit is not None and n > limit:
            return h.hexdigest(), n


_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def sha256_file(path, follow=True):
    """The sha256 of a file, read in chunks: the one implementation of file hashing. follow=False
    for a file a stranger laid out: a link is never followed and anything but a regular file
    (a FIFO, a device) gives None, never a hang."""
    if follow:
        with open(path, "rb") as f:
            return hash_read(f.read)[0]
    fd = os.open(path, _NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return hash_read(lambda n: os.read(fd, n))[0]
    finally:
        os.close(fd)


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def kind_of(mode):
    """What an entry that is not a regular file or a folder is, in words (from its lstat mode)."""
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def open_regular(path, what, max_bytes=None, dir_fd=None):
    """(descriptor, os.fstat) of a file a stranger may have laid out, opened without following a
    link (O_NOFOLLOW, relative to dir_fd when given) and without blocking on a FIFO; it must be
    a regular file with one link, of at most max_bytes. A ReproError otherwise. The caller
    reads from the descriptor it was checked through and closes it."""
    try:
        fd = os.open(path, _NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ReproError(f"{what} not found") from None
    except OSError as e:
        kind = "a link" if e.errno == getattr(os, "ELOOP", 40) else e.strerror
        raise ReproError(f"{what} cannot be read ({kind})") from None
    st = os.fstat(fd)
    problem = ("not a regular file" if not stat.S_ISREG(st.st_mode) else
               f"a file with {st.st_nlink} links (a hard link)" if st.st_nlink != 1 else
               f"{st.st_size:,} bytes, over the {max_bytes:,} such a file may have"
               if max_bytes is not None and st.st_size > max_bytes else "")
    if problem:
        os.close(fd)
        raise ReproError(f"{what} is {problem}")
    return fd, st


def read_start(path, what, max_bytes, line=False):
    """The first max_bytes + 1 bytes (with line, the first line up to that many) of a file opened
    without following a link or blocking on a FIFO; a ReproError where it is not a regular file,
    the OSError of the open as it comes. The caller says what more than max_bytes means."""
    fd = os.open(path, _NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ReproError(f"{what} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.readline(max_bytes + 1) if line else f.read(max_bytes + 1)
    finally:
        os.close(fd)


def read_regular(path, what, max_bytes, dir_fd=None):
    """The bytes of a regular file opened as open_regular does, read from the checked descriptor."""
    fd, st = open_regular(path, what, max_bytes, dir_fd)
    try:
        chunks, n = [], 0
        while True:
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - n))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            n += len(chunk)
            if n > max_bytes:
                raise ReproError(f"{what} grew past the {max_bytes:,} bytes such a file may have while it was read")
    finally:
        os.close(fd)
