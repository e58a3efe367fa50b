"""repro.align.torch_load: PyTorch checkpoints as numpy, with no torch import and no code execution."""
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
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
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
    # builtins.eval via the protocol-0 GLOBAL opcode, and a protocol-4 STACK_GLOBAL
    for i, blob in enumerate([b"cbuiltins\neval\n(S'1+1'\ntR.",
                              pickle.dumps(("x", print), protocol=4)]):
        path = tmp_path / f"evil{i}.pth"
        _torch_like_zip(path, blob)
        with pytest.raises(ReproError, match="refusing to load builtins"):
            load_state_dict(path)


def test_plain_pickle_renamed_pt_is_legacy(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    with pytest.raises(ReproError, match=r"is not a PyTorch zip checkpoint \(legacy non-zip"):
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
    with pytest.raises(ReproError, match="not a PyTorch zip checkpoint"):
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
    for k in want:
        assert got[k].dtype == want[k].dtype
        np.testing.assert_array_equal(got[k], want[k])
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
    for k in want:
        assert got[k].dtype == want[k].dtype
        np.testing.assert_array_equal(got[k], want[k])
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


def test_torch_legacy_and_corrupted_files(tmp_path):
    torch = _torch()
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ReproError, match="legacy non-zip torch.save files are not supported"):
        load_state_dict(legacy)

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
