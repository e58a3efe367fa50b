"""Dataset files: where they live, md5 checks, atomic downloads, archive members.

Used by the readers of official dataset files (MNIST, CIFAR-10, SST-2,
ChnSentiCorp): a file that is present must have the official md5; a missing
one is downloaded into a temporary file next to its place, checked, and only
then renamed into place, so a failed or interrupted download never leaves a
partial file. A file inside a .zip or .tar.gz is read from the archive by its
exact name (no extraction onto disk, so no path in an archive can point
anywhere), within a size limit, and checked against its own md5. Every failure
is one ReproError line naming the file.
"""
import hashlib
import os
from dataclasses import dataclass
import tempfile
import urllib.error
import urllib.request

from repro.errors import ReproError

DOWNLOAD_TIMEOUT_S = 15
ENV = "REPRO_DATA_DIR"


def add_data_dir_option(ap, purpose="where downloaded datasets live"):
    """The --data-dir option of every command that reads datasets."""
    ap.add_argument("--data-dir", metavar="DIR",
                    help=f"{purpose} (sets ${ENV}: DIR/mnist, DIR/sst2, DIR/chnsenticorp, ...)")


def use_data_dir(args):
    """--data-dir for this process and the processes (and sandboxed workers) it starts."""
    if getattr(args, "data_dir", None):
        os.environ[ENV] = os.path.abspath(os.path.expanduser(args.data_dir))


def resolve_data_dir(data_dir, subdir):
    """``data_dir``, else ``$REPRO_DATA_DIR/<subdir>``, else ``~/.cache/repro/<subdir>``."""
    if data_dir:
        return os.path.abspath(os.path.expanduser(str(data_dir)))
    env = os.environ.get(ENV)
    if env:
        return os.path.abspath(os.path.join(os.path.expanduser(env), subdir))
    return os.path.join(os.path.expanduser("~"), ".cache", "repro", subdir)


def check_split(split, splits, dataset):
    """A ReproError unless split is one of a dataset's splits (two are named 'a' or 'b')."""
    if split not in splits:
        names = " or ".join(map(repr, splits)) if len(splits) == 2 else f"one of {', '.join(splits)}"
        raise ReproError(f"{dataset} split must be {names}, not {split!r}")


@dataclass(frozen=True)
class Archive:
    """A dataset a zip archive ships: where it is downloaded from and its md5, {split: (member,
    md5)}, its folder under the data directory, and the folder its members sit in (loose: a
    split's file may also be kept unpacked in the dataset's folder, by its member name)."""
    dataset: str
    url: str
    name: str
    md5: str
    files: dict
    subdir: str
    prefix: str = ""
    loose: bool = False


def split_bytes(archive, split, data_dir=None, download=True):
    """(bytes, where) of one split of an Archive: the loose file where it is kept and allowed,
    else the archive's member, each md5-checked (the archive downloaded when allowed)."""
    check_split(split, archive.files, archive.dataset)
    folder = resolve_data_dir(data_dir, archive.subdir)
    name, md5 = archive.files[split]
    path = os.path.join(folder, name)
    if archive.loose and os.path.isfile(path):
        ensure_file(path, archive.url, md5, f"{archive.dataset} {split}", False, True, archive.subdir)
        with open(path, "rb") as f:
            return f.read(), path
    zipped = os.path.join(folder, archive.name)
    ensure_file(zipped, archive.url, archive.md5, f"the {archive.dataset} archive", download, True, archive.subdir)
    member = archive.prefix + name
    return read_member(zipped, member, md5), (path if archive.loose else f"{zipped}: {member}")


def ensure_file(path, url, md5, what, download, verify_md5, subdir):
    """Make ``path`` exist with the official md5, downloading it if allowed; else ReproError."""
    if os.path.isfile(path):
        if verify_md5:
            got = md5_file(path)
            if got != md5:
                raise ReproError(f"{path}: md5 {got} is not the official {md5} (a damaged or "
                                 "different file); delete it to download again")
        return
    hint = f"put the official file there or pass --data-dir / set REPRO_DATA_DIR " \
           f"(files in $REPRO_DATA_DIR/{subdir}/)"
    if os.path.exists(path):
        raise ReproError(f"{what}: {path} is not a regular file; {hint}")
    if not download:
        raise ReproError(f"{what} not found: {path} (downloading is off; the official file is {url}); {hint}")
    failure = _download(url, path, md5)
    if failure:
        raise ReproError(f"{what} not found: {path}, and downloading {url} failed ({failure}); {hint}")


MAX_MEMBER = 1 << 30  # bytes: far more than any member these readers ask for


def _member(lookup, archive, member):
    """lookup(member): a zip's getinfo or a tar's getmember, which both raise KeyError for a name not there."""
    try:
        return lookup(member)
    except KeyError:
        raise ReproError(f"{archive}: no {member} in the archive") from None


def read_member(archive, member, md5=None):
    """The bytes of `member` (its exact name) in a .zip or .tar.gz, checked against md5."""
    import tarfile
    import zipfile
    import zlib
    try:
        if archive.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                info = _member(z.getinfo, archive, member)
                if info.file_size > MAX_MEMBER:
                    raise ReproError(f"{archive}: {member} is {info.file_size:,} bytes, over {MAX_MEMBER:,}")
                data = z.read(member)
        else:
            with tarfile.open(archive, mode="r:*") as tar:
                info = _member(tar.getmember, archive, member)
                if not info.isfile() or info.size > MAX_MEMBER:
                    raise ReproError(f"{archive}: {member} is not a regular file of at most {MAX_MEMBER:,} bytes")
                data = tar.extractfile(info).read()
    except ReproError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error, RuntimeError) as e:
        raise ReproError(f"{archive}: not a readable archive ({one_line(e)})") from None
    if md5 and hashlib.md5(data).hexdigest() != md5:
        raise ReproError(f"{archive}: {member} has md5 {hashlib.md5(data).hexdigest()}, not the official {md5}")
    return data


def md5_file(path):
    h = hashlib.md5()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise ReproError(f"{path}: cannot read ({e.strerror or one_line(e)})") from None
    return h.hexdigest()


def _download(url, path, md5):
    """Download ``url`` to ``path`` atomically; None on success, else the reason (one line).

    The bytes go to a temporary file next to ``path``; only a complete file with
    the official md5 is renamed into place. Folders made for it are removed again
    when the download fails.
    """
    folder = os.path.dirname(path)
    created = []
    tmp = None
    ok = False
    try:
        probe = folder
        while probe and not os.path.isdir(probe):
            created.append(probe)
            probe = os.path.dirname(probe)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part", dir=folder)
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as f:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r:
                while chunk := r.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        got = h.hexdigest()
        if got != md5:
            return f"the downloaded file's md5 {got} is not the official {md5}"
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from the sandboxed worker (another user)
        os.replace(tmp, path)
        tmp = None
        ok = True
        return None
    except urllib.error.HTTPError as e:
        return one_line(e)
    except urllib.error.URLError as e:
        return one_line(e.reason)
    except Exception as e:  # refused, timed out, disk full, a broken reply: the download failed
        return one_line(e)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if not ok:
            for d in created:  # deepest first
                try:
                    os.rmdir(d)
                except OSError:
                    break


def one_line(e):
    """An exception (or reason) as one line of text."""
    text = " ".join(str(e).split())
    if isinstance(e, Exception) and not isinstance(e, OSError):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text or type(e).__name__
