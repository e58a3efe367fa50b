"""Alignment toolkit: check a Paddle port against its reference implementation.

diff.py       record named arrays (reprod_log-compatible) and compare them
convert.py    PyTorch state dict -> Paddle model, by the known rules
torch_load.py read .pt/.pth (and .npz, safetensors) without torch and without running code
localize.py   the first layer whose output diverges (forward hooks on both sides)
ladder.py     forward, data, metric, loss, backward, optimizer and lr checks in one run
The CLI is `python -m repro.align` (diff, ladder, convert).
"""
