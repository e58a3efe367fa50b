"""Judging runs: what a run is judged against (protocol.py; contest.py and contest_t2i.py
for a contest's own terms), the checks of its files (compliance.py), the recompute and
replay audit planned and judged here from what the workers hand back (audit.py,
exchange.py), and private evaluation (private.py). Nothing here imports paper code:
repro.verify and repro.review reach it only through repro.boundary's workers."""
