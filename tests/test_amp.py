"""Mixed precision on the CPU: the code paths run, the log records the setting,
and float16's loss-scaler state survives a resume."""
import json
import os

import pytest

from conftest import cli, final_checkpoint
from repro import train
from conftest import events as read_events


@pytest.mark.parametrize("level, dtype", [("O1", "bfloat16"), ("O2", "bfloat16"), ("O1", "float16")])
def test_amp_runs_and_is_recorded(level, dtype, tmp_path, capsys):
    out = str(tmp_path / "run")
    code, _, err = cli(train.main, ["--paper", "lenet5", "--lite", "--out", out, "-o", "train.visualdl=false",
                                    "-o", "train.amp.enabled=true", "-o", f"train.amp.level={level}",
                                    "-o", f"train.amp.dtype={dtype}"], capsys)
    assert code == 0, err
    events = read_events(out)
    assert events[0]["config"]["train"]["amp"] == {"enabled": True, "level": level, "dtype": dtype}
    assert events[-1]["status"] == "success"
    _, meta = final_checkpoint(out)
    import paddle
    if dtype == "float16" and paddle.device.get_device() != "cpu":
        assert json.loads(meta["amp_scaler"])["scale"] > 0  # loss-scaling state, for an exact resume
    else:  # bfloat16 needs no scaling, and Paddle's scaler does nothing on the CPU
        assert "amp_scaler" not in meta


def test_bad_amp_settings_name_the_key(capsys):
    code, _, err = cli(train.main, ["--paper", "lenet5", "--lite", "-o", "train.amp.level=O3"], capsys)
    assert code == 2 and "train.amp.level must be one of O1, O2" in err


def test_data_dir_flag_reaches_the_loader(tmp_path, capsys):
    code, _, err = cli(train.main, ["--paper", "lenet5", "--data-dir", str(tmp_path), "--out",
                                    str(tmp_path / "run"), "-o", "train.steps=1"], capsys)
    assert code == 2
    assert f"{tmp_path}/mnist/train-images-idx3-ubyte.gz" in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "run" / "events.jsonl")
