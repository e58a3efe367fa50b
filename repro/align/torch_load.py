"""Read a PyTorch checkpoint as a plain ``dict[str, numpy.ndarray]``, without
importing torch and without ever running code from the file.

``load_state_dict(path)`` accepts:

* the zip format ``torch.save`` has written by default since PyTorch 1.6
  (``.pt``, ``.pth``, ``.bin``, ``.ckpt`` ...): ``<prefix>/data.pkl`` is
  unpickled by an unpickler whose ``find_class`` knows only the names in
  ``ALLOWED_GLOBALS`` (an OrderedDict, the tensor/parameter rebuild functions,
  storage types and dtypes); any other global - ``os.system``, a model class,
  ``argparse.Namespace`` - is refused before it is imported. Tensor bytes are
  read from ``<prefix>/data/<key>`` as numpy arrays; bfloat16 becomes float32
  (exact: bfloat16 is the top half of a float32);
* the legacy non-zip format of PyTorch 0.4 - 1.5 (and of
  ``torch.save(..., _use_new_zipfile_serialization=False)``): a run of pickles
  in one file - the magic number, the protocol version (1001), a sys_info
  dict, the object itself (read by the same strict unpickler, its storages
  named by ``('storage', <type>, key, location, numel, view)`` persistent ids),
  the sorted list of storage keys, then each storage's raw bytes (an 8-byte
  little-endian element count, then the little-endian elements). The object
  pickle is read twice: once to learn every storage's type and size, so the
  raw storages behind it can be located and checked, then again to build the
  tensors from them. The older tar format (PyTorch < 0.4) is refused;
* ``.npz`` (``numpy.load(allow_pickle=False)``);
* ``.safetensors`` (``safetensors.numpy.load_file``; bfloat16 files, which
  numpy cannot represent, are read by a small parser here and widened to
  float32).

A training checkpoint ``{"state_dict": {...}, "epoch": 3, ...}`` (or
``{"model": {...}}``) gives the nested state dict. Bad input of any kind
raises ``ReproError`` with one line naming the file and the problem.
"""
import collections
import operator
import os
import pickle
import struct
import zipfile

import numpy as np
from numpy.lib.stride_tricks import as_strided

from repro.align.tensor_files import read_npz, read_safetensors
from repro.errors import ReproError

__all__ = ["ALLOWED_GLOBALS", "load_state_dict"]

# torch storage class -> little-endian numpy dtype of one element. BFloat16 is
# read as its raw uint16 bits and widened afterwards.
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",  # raw bytes; tensors on it are uint8, as in torch
}
_DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")

# Every global data.pkl may name: "module.name" -> what it becomes.
_REBUILDERS = {
    "torch._utils._rebuild_tensor_v2": "_rebuild_tensor_v2",
    "torch._utils._rebuild_tensor": "_rebuild_tensor",
    "torch._utils._rebuild_parameter": "_rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state": "_rebuild_parameter_with_state",
}
_STORAGE_GLOBALS = {f"torch.{name}": name for name in _STORAGE_DTYPES}
_STORAGE_GLOBALS.update({f"torch.cuda.{name}": name for name in _STORAGE_DTYPES if name != "UntypedStorage"})
_STORAGE_GLOBALS["torch.storage.UntypedStorage"] = "UntypedStorage"
_DTYPE_GLOBALS = {f"torch.{name}": name for name in _DTYPE_NAMES}
ALLOWED_GLOBALS = tuple(sorted(["collections.OrderedDict", *_REBUILDERS, *_STORAGE_GLOBALS, *_DTYPE_GLOBALS]))

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c  # the first pickle of a legacy torch.save file
_LEGACY_PROTOCOL = 1001
_LEGACY_PROTO0_HEAD = b"L%d" % _LEGACY_MAGIC  # the magic number pickled with protocol 0 or 1


class _Refused(pickle.UnpicklingError):
    def __init__(self, module, name):
        super().__init__(f"refusing to load {module}.{name}")
        self.module, self.name = module, name


class _Named:
    """A stand-in for a torch object known only by its name; a fresh one per reference, so a
    pickle cannot alter state shared with other loads."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


class _StorageType(_Named):
    """Stands in for torch.<X>Storage."""
    __slots__ = ()


class _DType(_Named):
    """Stands in for torch.float32 etc. (they only appear as metadata)."""
    __slots__ = ()


class _Storage:
    __slots__ = ("array", "bf16")

    def __init__(self, array, bf16):
        self.array, self.bf16 = array, bf16


class _Damaged(Exception):
    """Internal: the file is structurally wrong; the message says how."""


class _CheckpointUnpickler(pickle.Unpickler):
    """Knows only ``ALLOWED_GLOBALS``; subclasses say where storages come from.

    With ``_scan`` set, tensors are checked against their storage's size but
    not built (the legacy format's storage bytes follow the pickle)."""
    _scan = False

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._storages = {}

    def find_class(self, module, name):
        full = f"{module}.{name}"
        if full == "collections.OrderedDict":
            return collections.OrderedDict
        if full in _REBUILDERS:
            # a bound method: attributes cannot be set on it, so a BUILD opcode
            # cannot tamper with the rebuild functions
            return getattr(self, _REBUILDERS[full])
        if full in _STORAGE_GLOBALS:
            return _StorageType(_STORAGE_GLOBALS[full])
        if full in _DTYPE_GLOBALS:
            return _DType(_DTYPE_GLOBALS[full])
        raise _Refused(module, name)

    def persistent_load(self, pid):
        raise _Damaged(f"unexpected persistent id {pid!r:.80}")

    # -- the allowed callables -------------------------------------------------
    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        if not isinstance(storage, _Storage):
            raise _Damaged("a tensor is not backed by a storage record")
        offset = operator.index(storage_offset)
        size = tuple(operator.index(n) for n in size)
        stride = tuple(operator.index(s) for s in stride)
        if len(size) != len(stride) or offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
            raise _Damaged(f"bad tensor geometry: offset {offset}, size {size}, stride {stride}")
        base = storage.array
        if 0 in size:
            out = np.empty(size, dtype=base.dtype)
        else:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= base.size:
                raise _Damaged(f"a tensor (offset {offset}, size {size}, stride {stride}) "
                               f"reaches past the end of its storage ({base.size} elements)")
            if self._scan:
                return np.empty((0,), dtype=base.dtype)
            step = base.dtype.itemsize
            out = as_strided(base[offset:], shape=size, strides=tuple(s * step for s in stride),
                             writeable=False).copy()
        if storage.bf16:
            wide = out.astype(np.uint32)
            wide <<= 16
            out = wide.view(np.float32)
        return out

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        return self._rebuild_tensor(storage, storage_offset, size, stride)

    def _rebuild_parameter(self, data, requires_grad=False, backward_hooks=None):
        if not isinstance(data, np.ndarray):
            raise _Damaged("a parameter does not wrap a tensor")
        return data

    def _rebuild_parameter_with_state(self, data, requires_grad=False, backward_hooks=None, state=None):
        return self._rebuild_parameter(data, requires_grad, backward_hooks)


def _storage_id(pid, fields, name=lambda v: v):
    """(storage type, key, numel, the fields after numel) of a persistent id ("storage", type, key,
    location, numel, ...) of `fields` entries, for both formats; name: how a string comes back."""
    if not (isinstance(pid, tuple) and len(pid) == fields and name(pid[0]) == "storage"):
        raise _Damaged(f"unexpected persistent id {pid!r:.80}")
    storage_type, key = pid[1], name(pid[2])
    if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
        raise _Damaged(f"unexpected persistent id {pid!r:.80}")
    return storage_type, key, operator.index(pid[4]), pid[5:]


class _ZipUnpickler(_CheckpointUnpickler):
    def __init__(self, file, zf, prefix, big_endian):
        super().__init__(file)
        self._zf, self._prefix, self._big_endian = zf, prefix, big_endian

    def persistent_load(self, pid):
        storage_type, key, numel, _ = _storage_id(pid, 5)
        cached = self._storages.get(key)
        if cached is not None:
            return cached
        record = f"{self._prefix}/data/{key}"
        try:
            raw = self._zf.read(record)
        except KeyError:
            raise _Damaged(f"storage record {record} is missing") from None
        dtype = np.dtype(_STORAGE_DTYPES[storage_type.name])
        if numel < 0 or len(raw) < numel * dtype.itemsize:
            raise _Damaged(f"storage record {record} holds {len(raw)} bytes, "
                           f"{max(numel, 0) * dtype.itemsize} expected")
        if self._big_endian and dtype.itemsize > 1:
            array = np.frombuffer(raw, dtype=dtype.newbyteorder(">"), count=numel).astype(dtype)
        else:
            array = np.frombuffer(raw, dtype=dtype, count=numel)
        storage = _Storage(array, storage_type.name == "BFloat16Storage")
        self._storages[key] = storage
        return storage


def _ascii(value):
    """A name pickled by Python 2 may come back as bytes (torch's _maybe_decode_ascii)."""
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


class _LegacyUnpickler(_CheckpointUnpickler):
    """The object pickle of a legacy (non-zip) torch.save file.

    ``data=None``: the scan pass; storages are stand-ins of the right size and
    ``roots`` collects ``{key: (storage type name, numel)}``. Otherwise
    ``data`` is ``{key: numpy array}`` read from behind the pickle."""

    def __init__(self, file, data=None):
        super().__init__(file, encoding="utf-8")  # torch.load's default for Python 2 strings
        self._data, self._scan = data, data is None
        self._views = {}
        self.roots = {}

    def persistent_load(self, pid):
        storage_type, key, numel, (view,) = _storage_id(pid, 6, _ascii)
        root = self._storages.get(key)
        if root is None:  # as in torch, a key's first reference fixes its type and size
            if numel < 0:
                raise _Damaged(f"storage {key} has a negative size ({numel})")
            dtype = np.dtype(_STORAGE_DTYPES[storage_type.name])
            if self._scan:
                self.roots[key] = (storage_type.name, numel)
                array = np.broadcast_to(np.zeros((), dtype=dtype), (numel,))  # no memory, never read
            else:
                array = self._data.get(key)
                if array is None or array.size != numel or array.dtype != dtype:
                    raise _Damaged(f"storage {key} changed between reads")
            root = _Storage(array, storage_type.name == "BFloat16Storage")
            self._storages[key] = root
        if view is None:
            return root
        # (view_key, offset, numel): a storage view, written by PyTorch < 1.0
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _Damaged(f"unexpected storage view {view!r:.80}")
        view_key, offset, size = _ascii(view[0]), operator.index(view[1]), operator.index(view[2])
        cached = self._views.get(view_key)
        if cached is not None:
            return cached
        if offset < 0 or size < 0 or offset + size > root.array.size:
            raise _Damaged(f"storage view {view_key} (offset {offset}, {size} elements) does not fit "
                           f"storage {key} ({root.array.size} elements)")
        cached = _Storage(root.array[offset:offset + size], root.bf16)
        self._views[view_key] = cached
        return cached


class _PlainUnpickler(pickle.Unpickler):
    """The small header and key-list pickles of the legacy format: no globals at all."""

    def find_class(self, module, name):
        raise _Refused(module, name)

    def persistent_load(self, pid):
        raise _Damaged(f"unexpected persistent id {pid!r:.80}")


def _refusal(label, e):
    hint = ""
    if e.module.startswith(("torch.nn", "__main__", "__torch__")):
        hint = "; it seems to pickle a whole model object: save model.state_dict() instead"
    return ReproError(f"{label}: {e} (the file wants to run code; only tensors, dicts, lists and "
                      f"numbers are allowed{hint})")


# -- torch zip -----------------------------------------------------------------

def _read_torch_zip(path, label):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ReproError(f"{label}: truncated or damaged zip ({e})") from None
    with zf:
        names = zf.namelist()
        pickles = sorted(n for n in names if n.count("/") == 1 and n.endswith("/data.pkl"))
        if not pickles:
            if names and all(n.endswith(".npy") for n in names):
                return None  # an .npz under another name: the caller reads it as one
            raise ReproError(f"{label} is a zip file but not a PyTorch checkpoint (no <folder>/data.pkl inside)")
        first_top = names[0].split("/", 1)[0]
        pkl = f"{first_top}/data.pkl" if f"{first_top}/data.pkl" in pickles else pickles[0]
        prefix = pkl[: -len("/data.pkl")]
        if any(n.startswith(f"{prefix}/code/") for n in names) or f"{prefix}/constants.pkl" in names:
            raise ReproError(f"{label} is a TorchScript archive (torch.jit.save), not a torch.save checkpoint: "
                             "save model.state_dict() with torch.save instead")
        try:
            big_endian = False
            if f"{prefix}/byteorder" in names:
                order = zf.read(f"{prefix}/byteorder").strip()
                if order not in (b"little", b"big"):
                    raise _Damaged(f"unknown byteorder {order[:20]!r}")
                big_endian = order == b"big"
            with zf.open(pkl) as f:
                obj = _ZipUnpickler(f, zf, prefix, big_endian).load()
        except _Refused as e:
            raise _refusal(label, e) from None
        except _Damaged as e:
            raise ReproError(f"{label}: damaged checkpoint: {e}") from None
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise ReproError(f"{label}: truncated or damaged zip ({e or type(e).__name__})") from None
        except Exception as e:  # noqa: BLE001 - a malformed pickle can raise almost anything
            raise ReproError(f"{label}: damaged checkpoint: data.pkl does not unpickle "
                             f"({type(e).__name__}: {e})") from None
    return obj


# -- legacy torch.save (PyTorch 0.4 - 1.5) -------------------------------------

def _one_line(e):
    return " ".join(str(e).split()) or type(e).__name__


def _read_legacy_storages(f, roots, file_size):
    """After the object pickle: the key list, then each storage's count and bytes.
    Returns ``{key: numpy array}``."""
    keys = _PlainUnpickler(f, encoding="utf-8").load()
    if not isinstance(keys, list):
        raise _Damaged(f"the storage key list is a {type(keys).__name__}, not a list")
    keys = [_ascii(k) for k in keys]
    unused = [k for k in keys if k not in roots]
    if unused:
        raise _Damaged(f"storage {unused[0]!r:.40} in the key list is not used by any tensor")
    if len(set(keys)) != len(keys):
        raise _Damaged("the storage key list repeats a key")
    listed = set(keys)
    missing = [k for k in roots if k not in listed]
    if missing:
        raise _Damaged(f"storage {missing[0]!r:.40} has no data in the file")
    data = {}
    for key in keys:
        name, numel = roots[key]
        dtype = np.dtype(_STORAGE_DTYPES[name])
        head = f.read(8)
        if len(head) < 8:
            raise EOFError(f"the file ends before storage {key} ({len(data)} of {len(keys)} read)")
        (count,) = struct.unpack("<q", head)
        if count != numel:
            raise _Damaged(f"storage {key} holds {count} elements, the tensors expect {numel}")
        nbytes = count * dtype.itemsize
        if f.tell() + nbytes > file_size:
            raise EOFError(f"storage {key} needs {nbytes} bytes, {file_size - f.tell()} are left "
                           f"({len(data)} of {len(keys)} storages read)")
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise EOFError(f"storage {key} is cut short")
        data[key] = np.frombuffer(raw, dtype=dtype, count=numel)
    return data


def _read_torch_legacy(path, label):
    stage = "the magic number"
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            magic = _PlainUnpickler(f, encoding="utf-8").load()
            if type(magic) is not int or magic != _LEGACY_MAGIC:
                raise ReproError(f"{label} is a pickle file but not a torch.save checkpoint "
                                 "(it does not start with torch's magic number)")
            stage = "the header"
            version = _PlainUnpickler(f, encoding="utf-8").load()
            if version != _LEGACY_PROTOCOL:
                raise _Damaged(f"unknown legacy protocol version {version!r:.40} ({_LEGACY_PROTOCOL} expected)")
            sys_info = _PlainUnpickler(f, encoding="utf-8").load()
            if not isinstance(sys_info, dict):
                raise _Damaged(f"the sys_info header is a {type(sys_info).__name__}, not a dict")
            # storage bytes are written little-endian whatever sys_info["little_endian"] says
            stage = "the object pickle"
            start = f.tell()
            scan = _LegacyUnpickler(f)
            scan.load()  # refuses any global outside ALLOWED_GLOBALS before the storages are touched
            stage = "the storages"
            data = _read_legacy_storages(f, scan.roots, file_size)
            stage = "the object pickle"
            f.seek(start)
            return _LegacyUnpickler(f, data).load()
    except ReproError:
        raise
    except _Refused as e:
        raise _refusal(label, e) from None
    except _Damaged as e:
        raise ReproError(f"{label}: damaged legacy checkpoint: {_one_line(e)}") from None
    except OSError as e:
        raise ReproError(f"{label}: cannot read ({_one_line(e.strerror or e)})") from None
    except (EOFError, pickle.UnpicklingError) as e:
        what = "truncated" if isinstance(e, EOFError) or "truncated" in str(e) else "damaged"
        raise ReproError(f"{label}: {what} legacy checkpoint: {_one_line(e)} (while reading {stage})") from None
    except Exception as e:  # noqa: BLE001 - a malformed pickle can raise almost anything
        raise ReproError(f"{label}: damaged legacy checkpoint: {stage} does not unpickle "
                         f"({type(e).__name__}: {_one_line(e)})") from None


def _is_tensor_dict(obj):
    return isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())


def _pick_state_dict(obj, label):
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if _is_tensor_dict(obj.get(key)):
                return dict(obj[key])
        if _is_tensor_dict(obj):
            return dict(obj)
        bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, np.ndarray))]
        shown = ", ".join(repr(k) for k in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise ReproError(f"{label}: not a state dict: {len(bad)} of {len(obj)} top-level entries are not "
                         f"tensors ({shown}) and there is no nested 'state_dict' or 'model' dict of tensors")
    kind = "a single tensor" if isinstance(obj, np.ndarray) else f"a {type(obj).__name__}"
    raise ReproError(f"{label}: the file holds {kind}, not a dict of tensors")


def _checked_state_dict(obj, label):
    state = _pick_state_dict(obj, label)
    odd = [k for k, v in state.items() if v.dtype.kind not in "biuf"]
    if odd:
        raise ReproError(f"{label}: tensor {odd[0]!r} has unsupported dtype {state[odd[0]].dtype}")
    return state



# -- the entry point -----------------------------------------------------------

def load_state_dict(path):
    """The tensors of a checkpoint file as ``{name: numpy.ndarray}``.

    ``path``: a ``torch.save`` checkpoint (.pt/.pth/..., zip or legacy
    non-zip format), ``.npz`` or ``.safetensors``. Nothing in the file is
    executed and torch is not imported. Raises ``ReproError`` (one line: the
    file and the problem) for a missing, damaged, tar-format or code-carrying
    file.
    """
    label = os.fspath(path)
    if not os.path.exists(label):
        raise ReproError(f"{label}: no such file")
    if os.path.isdir(label):
        raise ReproError(f"{label} is a directory, not a checkpoint file")
    suffix = os.path.splitext(label)[1].lower()
    if suffix == ".npz":
        return read_npz(label, label)
    if suffix == ".safetensors":
        return read_safetensors(label, label)
    try:
        with open(label, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise ReproError(f"{label}: cannot read ({e.strerror or e})") from None
    if not head:
        raise ReproError(f"{label} is empty")
    if head.startswith(_ZIP_MAGIC):
        obj = _read_torch_zip(label, label)
        if obj is None:
            return read_npz(label, label)
        return _checked_state_dict(obj, label)
    if head.startswith((b"\x80", _LEGACY_PROTO0_HEAD)):
        return _checked_state_dict(_read_torch_legacy(label, label), label)
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise ReproError(f"{label} is a tar archive: the tar-based torch.save format of early PyTorch "
                         "releases is not supported (load it with torch and re-save it with torch.save)")
    if suffix not in _TORCH_SUFFIXES and len(head) >= 9 and head[8:9] == b"{":
        return read_safetensors(label, label)
    raise ReproError(f"{label} is not a PyTorch checkpoint, .npz or .safetensors file "
                     f"(unrecognised contents {head[:8]!r})")
