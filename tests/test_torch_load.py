"""repro.align.torch_load: PyTorch checkpoints as numpy, with no torch import and no code execution."""
import collections
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from repro.align.torch_load import ALLOWED_GLOBALS, load_state_dict
from repro.errors import ReproError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_REASON = "PyTorch is an optional test dependency (pip install torch==2.13.0)"


def _torch():
    return pytest.importorskip("torch", reason=TORCH_REASON)


def _assert_same(arrays, tensors):
    """Every tensor came back exactly: same keys, dtype, shape and bits."""
    torch = _torch()
    assert sorted(arrays) == sorted(tensors)
    for name, t in tensors.items():
        want = (t.float() if t.dtype == torch.bfloat16 else t).detach().numpy()
        got = arrays[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, want.dtype, got.shape)
        np.testing.assert_array_equal(got, want, err_msg=name)


def _small_state_dict():
    torch = _torch()
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(3, 4, kernel_size=3)
            self.bn = torch.nn.BatchNorm1d(4)
            self.gru = torch.nn.GRU(4, 5, batch_first=True, bidirectional=True)
            self.fc = torch.nn.Linear(10, 2)

        def forward(self, x):
            h = self.bn(self.conv(x)).transpose(1, 2)
            out, _ = self.gru(h)
            return self.fc(out[:, -1])

    net = Net()
    net.train()
    with torch.no_grad():
        net(torch.randn(2, 3, 8))  # running stats and num_batches_tracked move off their defaults
    sd = net.state_dict()
    assert sd["bn.num_batches_tracked"].dtype == torch.int64 and int(sd["bn.num_batches_tracked"]) == 1
    base = torch.arange(40, dtype=torch.float32).reshape(5, 8)
    sd["extra.half"] = torch.randn(3, 4).half()
    sd["extra.bf16"] = torch.randn(2, 3).to(torch.bfloat16)
    sd["extra.transposed"] = torch.randn(3, 5).t()  # non-contiguous view, saved as-is
    sd["extra.base"] = base
    sd["extra.slice"] = base[1:4, 2:7:2]  # shares base's storage, offset and strides
    sd["extra.scalar"] = torch.tensor(2.5, dtype=torch.float64)
    sd["extra.flags"] = torch.tensor([True, False, True])
    sd["extra.int8"] = torch.tensor([-3, 0, 7], dtype=torch.int8)
    sd["extra.param"] = torch.nn.Parameter(torch.randn(2, 2))
    sd["extra.empty"] = torch.zeros(0, 3)
    sd["extra.expanded"] = torch.arange(3, dtype=torch.int32).expand(4, 3)  # stride 0
    assert not sd["extra.transposed"].is_contiguous()
    return sd


# -- without torch ----------------------------------------------------------------

def test_module_imports_without_torch():
    code = ("import sys; import repro.align.torch_load as m; "
            "print(callable(m.load_state_dict), 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "False"]


def test_allow_list_is_small_and_data_only():
    assert "collections.OrderedDict" in ALLOWED_GLOBALS
    assert "torch._utils._rebuild_tensor_v2" in ALLOWED_GLOBALS
    assert all(name.startswith(("torch.", "collections.OrderedDict")) for name in ALLOWED_GLOBALS)
    assert not any(bad in ALLOWED_GLOBALS for bad in ("builtins.eval", "posix.system", "os.system",
                                                      "torch.load", "numpy.core.multiarray._reconstruct"))


def _torch_like_zip(path, data_pkl, prefix="archive"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{prefix}/data.pkl", data_pkl)
        zf.writestr(f"{prefix}/byteorder", "little")
        zf.writestr(f"{prefix}/version", "3\n")


class _RunsShell:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    _torch_like_zip(evil, pickle.dumps({"w": _RunsShell(f"touch {marker}")}, protocol=2))
    with pytest.raises(ReproError) as e:
        load_state_dict(evil)
    msg = str(e.value)
    assert "refusing to load" in msg and f"{os.system.__module__}.system" in msg and str(evil) in msg
    assert "\n" not in msg
    assert not marker.exists()


def test_other_globals_are_refused_too(tmp_path):
    # builtins.eval via the protocol-0 GLOBAL opcode, and builtins.len by a protocol-4 STACK_GLOBAL
    # (not print: in a process where Ray ran, builtins.print is Ray's safe_print)
    for i, blob in enumerate([b"cbuiltins\neval\n(S'1+1'\ntR.",
                              pickle.dumps(("x", len), protocol=4)]):
        path = tmp_path / f"evil{i}.pth"
        _torch_like_zip(path, blob)
        with pytest.raises(ReproError, match="refusing to load builtins"):
            load_state_dict(path)


def test_plain_pickle_renamed_pt_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    with pytest.raises(ReproError, match=r"model\.pt is a pickle file but not a torch\.save checkpoint"):
        load_state_dict(path)


_LEGACY_HEADER = (pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + pickle.dumps(1001, protocol=2)
                  + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                                  "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))


def test_malicious_legacy_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _RunsShell(f"touch {marker}")
    blobs = {  # in the object pickle, and in a header pickle
        "object.pth": _LEGACY_HEADER + pickle.dumps({"w": payload}, protocol=2) + pickle.dumps([], protocol=2),
        "header.pth": (pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + pickle.dumps(1001, protocol=2)
                       + pickle.dumps(payload, protocol=2) + pickle.dumps({}, protocol=2)
                       + pickle.dumps([], protocol=2)),
    }
    for name, blob in blobs.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ReproError) as e:
            load_state_dict(path)
        msg = str(e.value)
        assert f"refusing to load {os.system.__module__}.system" in msg and str(path) in msg, msg
        assert "\n" not in msg
        assert not marker.exists()


def test_tar_archive_is_refused(tmp_path):
    import tarfile

    member = tmp_path / "pickle"
    member.write_bytes(pickle.dumps({}, protocol=2))
    path = tmp_path / "old.pth"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(member, arcname="pickle")
    with pytest.raises(ReproError, match=r"old\.pth is a tar archive: the tar-based torch\.save format"):
        load_state_dict(path)


def test_truncated_zip(tmp_path):
    good, bad = tmp_path / "good.pt", tmp_path / "model.pt"
    _torch_like_zip(good, pickle.dumps({}, protocol=2) + b"\0" * 4000)
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReproError, match=r"model\.pt: truncated or damaged zip"):
        load_state_dict(bad)


def test_missing_empty_and_unrecognised_files(tmp_path):
    with pytest.raises(ReproError, match="no such file"):
        load_state_dict(tmp_path / "absent.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ReproError, match="is empty"):
        load_state_dict(tmp_path / "empty.pt")
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(ReproError, match="is not a PyTorch checkpoint, .npz or .safetensors file"):
        load_state_dict(tmp_path / "notes.pt")
    plain_zip = tmp_path / "other.pt"
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ReproError, match="zip file but not a PyTorch checkpoint"):
        load_state_dict(plain_zip)


def test_npz(tmp_path):
    path = tmp_path / "weights.npz"
    want = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, dtype=np.int64)}
    np.savez(path, **want)
    got = load_state_dict(str(path))
    assert sorted(got) == sorted(want)
    for k, value in want.items():
        assert got[k].dtype == value.dtype
        np.testing.assert_array_equal(got[k], value)
    # object arrays need pickle: refused, not executed
    np.savez(tmp_path / "objects.npz", o=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ReproError, match=r"objects\.npz: not a readable \.npz"):
        load_state_dict(tmp_path / "objects.npz")


def test_safetensors(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "weights.safetensors"
    want = {"w": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
            "steps": np.array([7], dtype=np.int64)}
    save_file(want, str(path))
    got = load_state_dict(path)
    assert sorted(got) == sorted(want)
    for k, value in want.items():
        assert got[k].dtype == value.dtype
        np.testing.assert_array_equal(got[k], value)
    (tmp_path / "broken.safetensors").write_bytes(path.read_bytes()[:20])
    with pytest.raises(ReproError, match=r"broken\.safetensors: not a readable \.safetensors"):
        load_state_dict(tmp_path / "broken.safetensors")


def test_safetensors_bfloat16_widens_to_float32(tmp_path):
    # numpy has no bfloat16 (safetensors.numpy cannot read it): written by hand here
    values = np.array([1.5, -2.0, 3.140625], dtype=np.float32)  # exactly representable in bfloat16
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, len(raw)]},
                         "__metadata__": {"format": "pt"}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw)
    got = load_state_dict(path)
    assert got["w"].dtype == np.float32
    np.testing.assert_array_equal(got["w"], values)


# -- with torch -------------------------------------------------------------------

def test_torch_state_dict_matches_exactly(tmp_path):
    torch = _torch()
    sd = _small_state_dict()
    path = tmp_path / "model.pt"
    torch.save(sd, path)
    with zipfile.ZipFile(path) as zf:  # the slice really shares base's storage in the file
        records = [n for n in zf.namelist() if "/data/" in n]
    assert len(records) == len(sd) - 1
    got = load_state_dict(path)
    _assert_same(got, sd)
    assert got["extra.bf16"].dtype == np.float32 and got["bn.num_batches_tracked"].dtype == np.int64
    assert got["extra.slice"].flags.writeable and got["extra.transposed"].flags.owndata
    got["extra.slice"][...] = -1  # copies: not views of each other
    assert got["extra.base"].min() == 0


def test_nested_checkpoints_and_non_state_dicts(tmp_path):
    torch = _torch()
    sd = _small_state_dict()
    for key in ("state_dict", "model"):
        path = tmp_path / f"{key}.pth"
        torch.save({key: sd, "epoch": 3, "best": 0.5, "arch": "net"}, path)
        _assert_same(load_state_dict(path), sd)

    flat_with_junk = tmp_path / "junk.pt"
    torch.save({"w": torch.ones(2), "epoch": 3}, flat_with_junk)
    with pytest.raises(ReproError, match=r"junk\.pt: not a state dict: 1 of 2 .*'epoch'"):
        load_state_dict(flat_with_junk)

    single = tmp_path / "tensor.pt"
    torch.save(torch.ones(2), single)
    with pytest.raises(ReproError, match="holds a single tensor"):
        load_state_dict(single)

    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole)
    with pytest.raises(ReproError, match=r"refusing to load torch\.nn\..*save model\.state_dict\(\)"):
        load_state_dict(whole)


def test_torch_corrupted_zip(tmp_path):
    torch = _torch()
    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(64, dtype=torch.float32)}, good)
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)  # local file header
    data[info.header_offset + 30 + name_len + extra_len + 8] ^= 0xFF  # flip a byte of the tensor
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ReproError, match=r"corrupt\.pt: truncated or damaged zip"):
        load_state_dict(corrupt)


def test_big_endian_byteorder(tmp_path):
    torch = _torch()
    tensors = {"w": torch.randn(3, 4), "b": torch.randn(4)}  # float32 only: every record is <f4
    little, big = tmp_path / "little.pt", tmp_path / "big.pt"
    torch.save(tensors, little)
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in name:
                data = np.frombuffer(data, dtype="<f4").astype(">f4").tobytes()
            dst.writestr(name, data)
    _assert_same(load_state_dict(big), tensors)


# -- legacy (non-zip) torch.save: PyTorch 0.4 - 1.5, e.g. pytorch-fid's Inception weights ---------------

def test_legacy_state_dict_matches_exactly(tmp_path):
    torch = _torch()
    sd = _small_state_dict()
    path = tmp_path / "pt_inception-like.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert path.read_bytes().startswith(pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2))
    got = load_state_dict(path)
    _assert_same(got, sd)
    assert got["bn.num_batches_tracked"].dtype == np.int64 and int(got["bn.num_batches_tracked"]) == 1
    assert got["conv.weight"].dtype == np.float32 and got["extra.bf16"].dtype == np.float32
    np.testing.assert_array_equal(got["extra.slice"], sd["extra.base"].numpy()[1:4, 2:7:2])
    np.testing.assert_array_equal(got["extra.transposed"], sd["extra.transposed"].numpy())
    assert got["extra.transposed"].shape == (5, 3)
    got["extra.slice"][...] = -1  # copies: not views of each other
    assert got["extra.base"].min() == 0


def test_legacy_nested_checkpoint_and_pickle_protocol_4(tmp_path):
    torch = _torch()
    sd = _small_state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": sd, "epoch": 3, "arch": "net"}, path,
               _use_new_zipfile_serialization=False, pickle_protocol=4)
    _assert_same(load_state_dict(path), sd)

    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole, _use_new_zipfile_serialization=False)
    with pytest.raises(ReproError, match=r"refusing to load torch\.nn\..*save model\.state_dict\(\)"):
        load_state_dict(whole)


def _hand_written_legacy_file(path, tensors, storages):
    """A legacy torch.save file written the way PyTorch < 1.0 did, storage views included.

    ``storages``: {key: (torch storage class, numpy array)}; ``tensors``: {name: (key, view, offset,
    size, stride)} with view None or (view_key, view_offset, view_numel)."""
    import torch

    class Storage:
        def __init__(self, key, view):
            self.key, self.view = key, view

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, self.args)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                kind, array = storages[obj.key]
                return ("storage", kind, obj.key, "cpu", array.size, obj.view)
            return None

    obj = collections.OrderedDict(
        (name, Tensor(Storage(key, view), offset, size, stride))
        for name, (key, view, offset, size, stride) in tensors.items())
    with open(path, "wb") as f:
        f.write(_LEGACY_HEADER)
        Pickler(f, protocol=2).dump(obj)
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            array = storages[key][1]
            f.write(struct.pack("<q", array.size) + array.tobytes())


def test_legacy_storage_views_as_old_pytorch_wrote_them(tmp_path):
    torch = _torch()
    base = np.arange(24, dtype="<f4")
    steps = np.array([5, 7], dtype="<i8")
    path = tmp_path / "old.pth"
    _hand_written_legacy_file(path, {
        "whole": ("1", None, 0, (4, 6), (6, 1)),
        "view": ("1", ("2", 6, 12), 1, (2, 3), (1, 2)),  # a view of elements 6..17, transposed
        "same_view": ("1", ("2", 6, 12), 0, (12,), (1,)),
        "steps": ("3", None, 1, (), ()),
    }, {"1": (torch.FloatStorage, base), "3": (torch.LongStorage, steps)})
    got = load_state_dict(path)
    want = torch.load(path, weights_only=False)  # torch reads the same file the same way
    _assert_same(got, dict(want))
    np.testing.assert_array_equal(got["view"], base[6:18][1:][np.array([[0, 2, 4], [1, 3, 5]])])
    np.testing.assert_array_equal(got["same_view"], base[6:18])
    assert got["steps"].dtype == np.int64 and got["steps"].shape == () and int(got["steps"]) == 7

    bad = tmp_path / "bad_view.pth"  # a view reaching past its root storage
    _hand_written_legacy_file(bad, {"v": ("1", ("2", 20, 12), 0, (12,), (1,))},
                              {"1": (torch.FloatStorage, base)})
    with pytest.raises(ReproError, match=r"bad_view\.pth: damaged legacy checkpoint: storage view 2"):
        load_state_dict(bad)


def test_legacy_storage_counts_are_checked(tmp_path):
    torch = _torch()
    path = tmp_path / "model.pth"
    torch.save({"w": torch.arange(6, dtype=torch.float32)}, path, _use_new_zipfile_serialization=False)
    data = bytearray(path.read_bytes())
    count_at = len(data) - 6 * 4 - 8
    assert struct.unpack_from("<q", data, count_at) == (6,)
    struct.pack_into("<q", data, count_at, 5)
    path.write_bytes(bytes(data))
    with pytest.raises(ReproError, match="damaged legacy checkpoint: storage .* holds 5 elements, the tensors expect 6"):
        load_state_dict(path)


def test_truncated_legacy_file(tmp_path):
    torch = _torch()
    good = tmp_path / "good.pth"
    torch.save(collections.OrderedDict(w=torch.randn(3, 4), n=torch.tensor(5)), good,
               _use_new_zipfile_serialization=False)
    data = good.read_bytes()
    bad = tmp_path / "model.pth"
    for cut in range(1, len(data)):  # inside every pickle and every storage
        bad.write_bytes(data[:cut])
        with pytest.raises(ReproError) as e:
            load_state_dict(bad)
        msg = str(e.value)
        assert msg.startswith(f"{bad}: truncated legacy checkpoint: ") and "\n" not in msg, (cut, msg)
