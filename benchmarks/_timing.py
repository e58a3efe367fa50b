"""What the benchmarks share (a module, not a benchmark): a bare loop and the harness's timed
back to back in alternating order, repeated, so slow drift of the machine cancels out, and
checked to end with the same result; a call's milliseconds after a warm-up."""
import statistics
import sys
import time

import numpy as np


def bare_against_harness(bare, harness, repeats, said):
    """(median bare seconds, median harness seconds, sorted harness/bare per repeat). bare() and
    harness() return (name, value) of the result both must reach; said(seconds, name, value) is
    the rest of each repeat's line."""
    runs = {"bare": bare, "harness": harness}
    times, results = {"bare": [], "harness": []}, {}
    for r in range(repeats):
        for name in (("bare", "harness") if r % 2 == 0 else ("harness", "bare")):
            t0 = time.perf_counter()
            results[name] = runs[name]()
            times[name].append(time.perf_counter() - t0)
            print(f"repeat {r + 1} {name:<8} {times[name][-1]:7.2f} s  {said(times[name][-1], *results[name])}",
                  flush=True)
    if not np.isclose(results["bare"][1], results["harness"][1], rtol=0, atol=1e-9):
        sys.exit(f"the loops disagree: bare {results['bare']} vs harness {results['harness']}")
    ratios = sorted(h / b for h, b in zip(times["harness"], times["bare"]))
    return statistics.median(times["bare"]), statistics.median(times["harness"]), ratios


def ms_per_call(fn, calls, warmup=3):
    """Milliseconds per call of fn, over calls after warmup calls (kernels chosen, caches filled)."""
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e3


def ratio_line(what, times, base, aim):
    """'what: r1, r2, ..., median m (aim)' of times[i] / base[i] per repeat (None with no repeats)."""
    ratios = [a / b for a, b in zip(times, base)]
    if not ratios:
        return None
    return f"{what}: {', '.join(f'{x:.3f}' for x in ratios)}, median {statistics.median(ratios):.3f} ({aim})"
