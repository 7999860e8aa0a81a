"""What a full trace costs in memory traffic on this machine: writing W4-sized trace rows
(5 vectors of P=4929 float64 per step: params, grad, update, exp_avg, exp_avg_sq) into freshly
allocated arrays vs into arrays already touched, next to the untraced W4 step, and traced W4 steps
with and without the helper thread that faults in the trace's pages while the kernel trains
(minireg/_prefault.py; MINIREG_PREFAULT=0 turns it off), alternating.

    python benchmarks/bench_trace_memory.py

A traced run must obtain its trace memory from the OS; on VMs that provision pages lazily the
first touch of fresh pages, not the copying, dominates the trace cost of large-P minibatch runs.
"""
import os
import resource
import time

import numpy as np
from numba import njit

import minireg

P, ROWS, VECTORS = 4929, 1252, 5


@njit(cache=True)
def write_rows(src, out):
    for row in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[row, k, :] = src[k]


def main():
    src = np.random.default_rng(0).random((VECTORS, P))
    write_rows(src, np.empty((1, VECTORS, P)))
    fresh, warm = [], []
    for _ in range(5):
        out = np.empty((ROWS, VECTORS, P))
        t = time.perf_counter()
        write_rows(src, out)
        fresh.append((time.perf_counter() - t) / ROWS * 1e6)
        t = time.perf_counter()
        write_rows(src, out)
        warm.append((time.perf_counter() - t) / ROWS * 1e6)
        del out
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 10))
    y = np.sin(X[:, 0]) + X[:, 1]
    kw = dict(model="mlp", hidden=(64, 64), optimizer="adam", lr=1e-3, batch_size=32, epochs=4)
    minireg.train(X, y, **{**kw, "epochs": 1})
    def timed(trace):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        r = minireg.train(X, y, trace=trace, **kw)
        us = (time.perf_counter() - t0) / r.n_steps * 1e6
        return us, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / r.n_steps

    minireg.train(X, y, **{**kw, "epochs": 1}, trace=True)
    step = min(timed(False)[0] for _ in range(3))
    traced = {"on": [], "off": []}
    for _ in range(3):  # alternate, so that both see the same drift of the machine
        for helper in ("on", "off"):
            os.environ["MINIREG_PREFAULT"] = "1" if helper == "on" else "0"
            traced[helper].append(timed(True))
    os.environ.pop("MINIREG_PREFAULT")
    kb = VECTORS * P * 8 / 1024
    print(f"trace row of W4: {VECTORS} x {P} float64 = {kb:.0f} KiB")
    print(f"write into fresh memory: median {np.median(fresh):.1f} µs/row (min {min(fresh):.1f}, max {max(fresh):.1f})")
    print(f"write into touched memory: median {np.median(warm):.1f} µs/row (min {min(warm):.1f}, max {max(warm):.1f})")
    print(f"untraced W4 step: {step:.1f} µs")
    for helper in ("off", "on"):
        for us, faults in traced[helper]:
            print(f"traced W4 step, prefault helper {helper}: {us:.1f} µs ({us / step:.2f}x), "
                  f"{faults:.1f} page faults per step")


if __name__ == "__main__":
    main()
