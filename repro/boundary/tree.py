"""A stranger's tree, listed without trusting it: every entry from lstat alone (nothing is
followed or opened), what a submission may not hold named with its reason, and its small
files read through the one no-follow open (repro.strict.open_regular)."""
import os
import stat

from repro import strict

MAX_ENTRIES = 200_000          # files and folders a submission may hold


MAX_FILE_BYTES = 16 << 30      # any one file of a submission (from its size: never read to find out)



def printable(text):
    """Text on one line with nothing a terminal or a page would act on: other characters
    (new lines, controls, bytes that are not UTF-8) written as escapes."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else
                   (f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else repr(c)[1:-1]) for c in text)


def scan_tree(repo):
    """(entries, problems): {relative path: (kind, size)} of everything under repo except
    the top .git folder, from lstat alone (nothing is followed or opened); kind is 'file',
    'dir' or what else it is. problems: {path: reason} of what a submission may not hold."""
    entries, problems, stack = {}, {}, [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(repo, rel) if rel else repo) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems[rel or "."] = f"{rel or 'the repository'} cannot be listed ({e.strerror or e})"
            continue
        for item in items:
            path = f"{rel}/{item.name}" if rel else item.name
            if path == ".git":
                continue
            if len(entries) >= MAX_ENTRIES:
                problems["."] = f"the repository holds more than {MAX_ENTRIES:,} files and folders: not read further"
                return entries, problems
            shown = printable(path)
            try:
                st = item.stat(follow_symlinks=False)
            except OSError as e:
                problems[path] = f"{shown} cannot be read ({e.strerror or e})"
                continue
            if stat.S_ISDIR(st.st_mode):
                entries[path] = ("dir", 0)
                stack.append(path)
            elif stat.S_ISREG(st.st_mode):
                entries[path] = ("file", st.st_size)
                if st.st_size > MAX_FILE_BYTES:
                    problems[path] = (f"{shown} is {st.st_size:,} bytes, over the {MAX_FILE_BYTES >> 30} GiB a file of "
                                      f"a submission may have (not read)")
            else:
                kind = strict.kind_of(st.st_mode)
                entries[path] = (kind, 0)
                problems[path] = (f"{shown} is {kind}: a submission holds regular files and folders only "
                                  f"(never followed or opened)")
    return entries, problems


def read_at_most(path, max_bytes):
    """The bytes of a regular file a stranger laid out, opened by the one no-follow open
    (repro.strict.open_regular: never a link, a FIFO or a hard link), or None where it holds more
    than max_bytes. A ReproError where it cannot be opened."""
    fd, _ = strict.open_regular(path, path)
    try:
        chunks, n = [], 0
        while n <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - n)
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
        return None if n > max_bytes else b"".join(chunks)
    finally:
        os.close(fd)
