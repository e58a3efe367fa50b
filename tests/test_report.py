import os
import shutil
import subprocess

import pytest

from conftest import cli
from repro import report


def test_report_page_and_summary(lite_run, tmp_path, capsys):
    out = str(tmp_path / "review.html")
    code, stdout, _ = cli(report.main, [lite_run, "--out", out], capsys)
    assert code == 0 and "NOT REPRODUCED" in stdout
    page = open(out, encoding="utf-8").read()
    md = open(str(tmp_path / "review.md"), encoding="utf-8").read()
    assert page.count("data:image/png;base64,") == 1  # the curves, embedded
    assert "<h2>Targets</h2>" in page and "mnist1d/cnn" in page and "94.00" in page
    assert "a --lite smoke run" in page  # the reason it does not count
    assert "train.steps" in page and "paddlepaddle" in page  # config differences, environment
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "| mnist1d/cnn | test_acc | 94.00 |" in md and "**NOT REPRODUCED**" in md


def test_report_flags_nan_and_dirty_tree(lite_run, tmp_path):
    import json
    from repro.compliance import check_run, load_run
    from repro.runlog import GENESIS, line_hash

    run_dir = str(tmp_path / "run")
    shutil.copytree(lite_run, run_dir)
    path = os.path.join(run_dir, "events.jsonl")
    events = [json.loads(line) for line in open(path)]
    events[0]["code"]["paper"]["git_dirty"] = True
    events[1]["loss"] = "nan"
    prev = GENESIS
    with open(path, "w") as f:
        for ev in events:
            line = json.dumps({**ev, "prev": prev})
            f.write(line + "\n")
            prev = line_hash(line)
    warnings = report.run_warnings(check_run(load_run(run_dir)))
    assert any("NaN" in w for w in warnings)
    assert any("uncommitted changes" in w for w in warnings)


def test_report_renders_in_headless_chromium(lite_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None and shutil.which("apt-get") and os.geteuid() == 0:  # Debian's chromium, as the issue asks
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900, env=env)
        browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("Debian's chromium is not installed and could not be installed here")
    page = str(tmp_path / "review.html")
    html, md, _ = report.build([lite_run])
    open(page, "w", encoding="utf-8").write(html)
    shot = str(tmp_path / "shot.png")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600",
                    f"--screenshot={shot}", f"file://{page}"], capture_output=True, timeout=120)
    assert os.path.getsize(shot) > 20_000  # a rendered page with a plot, not a blank image
    from PIL import Image
    img = Image.open(shot).convert("RGB")
    colors = len(set(img.resize((320, 400)).getdata()))
    assert colors > 50, "the screenshot looks blank"


def test_report_shows_alignment_results(lite_run, tmp_path):
    import numpy as np
    from repro.align.diff import compare

    run_dir = str(tmp_path / "run")
    shutil.copytree(lite_run, run_dir)
    compare({"logits": np.ones(3)}, {"logits": np.ones(3) + 0.5}, "mean", 1e-6,
            title="forward vs reference").write(os.path.join(run_dir, "align", "forward.txt"))
    page, _, _ = report.build([run_dir])
    assert "<h2>Alignment (repro.align)</h2>" in page and "forward vs reference" in page
    assert "mean 5.00e-01 vs 1e-06" in page
