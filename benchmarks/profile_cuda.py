"""Where the time of a minireg CUDA step goes: GPU time per kernel (CUPTI, through torch.profiler)
next to the wall-clock time per step, for the workloads of bench_cuda.py, and the same for the
PyTorch CUDA loop of that script.

    python benchmarks/profile_cuda.py                 # W4, W5, W6
    python benchmarks/profile_cuda.py --only W6 --steps 20
    python benchmarks/profile_cuda.py --only '' --host W4    # cProfile of the host side of W4

A step is launch-bound when its wall time is well above the sum of its kernels' GPU times (the
host spends the difference in numba's launch path), and kernel-bound when the two are close.
Needs a GPU and torch (for the profiler); prints a table per workload.
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cuda as B  # noqa: E402
import minireg  # noqa: E402


def _train(wl, X, y, epochs, trace=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return minireg.train(X, y, model=wl.model, hidden=wl.hidden, activation=wl.activation,
                             optimizer=wl.optimizer, lr=wl.lr, epochs=epochs, batch_size=wl.batch_size,
                             dtype=wl.dtype, trace=trace, trace_budget=B.TRACE_BUDGET, device="cuda")


def kernel_table(prof, steps):
    rows = []
    for ev in prof.key_averages():
        dev_us = getattr(ev, "self_device_time_total", None)
        if dev_us is None:
            dev_us = getattr(ev, "self_cuda_time_total", 0)
        if dev_us and dev_us > 0:
            rows.append((ev.key[:60], ev.count, dev_us))
    rows.sort(key=lambda r: -r[2])
    total = sum(r[2] for r in rows)
    print(f"    {'kernel':60s} {'calls':>7s} {'GPU µs/step':>12s}")
    for name, n, us in rows[:14]:
        print(f"    {name:60s} {n:7d} {us / steps:12.1f}")
    print(f"    {'TOTAL GPU time':60s} {'':7s} {total / steps:12.1f}")
    return total / steps


def profile(wl, steps_wanted):
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile
    X, y = B.make_data(wl)
    spe = -(-wl.n // wl.batch)
    epochs = max(2, -(-steps_wanted // spe))
    print(f"\n== {wl.key} {wl.label}: {epochs} epochs, {epochs * spe} steps")
    for trace in ((False, True) if wl.trace else (False,)):
        _train(wl, X, y, 1, trace)  # compile
        t0 = time.perf_counter()
        r1 = _train(wl, X, y, 1, trace)
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = _train(wl, X, y, epochs, trace)
        t2 = time.perf_counter() - t0
        wall = (t2 - t1) / (r.n_steps - r1.n_steps) * 1e6
        with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
            r = _train(wl, X, y, epochs, trace)
            torch.cuda.synchronize()
        print(f"  minireg cuda trace={trace}: wall {wall:,.1f} µs/step (difference of 1 and {epochs} epochs)")
        kernel_table(prof, r.n_steps)
    tr = B.torch_cuda_runner(wl, X, y)
    if tr is not None:
        tr(1)
        t0 = time.perf_counter()
        s1 = tr(1)
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        s2 = tr(epochs)
        t2 = time.perf_counter() - t0
        wall = (t2 - t1) / (s2 - s1) * 1e6
        with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
            s = tr(epochs)
        print(f"  torch cuda: wall {wall:,.1f} µs/step")
        kernel_table(prof, s)


def host_profile(wl, epochs, trace):
    """Where the host's time goes in a run (cProfile, top functions by own time): numba's launch
    path, copies, the trace's allocation and norms."""
    import cProfile
    import pstats
    X, y = B.make_data(wl)
    _train(wl, X, y, 1, trace)  # compile
    pr = cProfile.Profile()
    pr.enable()
    r = _train(wl, X, y, epochs, trace)
    pr.disable()
    print(f"\n== host profile {wl.key} trace={trace}: {r.n_steps} steps, {r.seconds:.3f} s "
          f"({r.seconds / r.n_steps * 1e6:,.1f} µs/step)")
    pstats.Stats(pr).sort_stats("tottime").print_stats(14)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="W4,W5,W6")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--host", help="workload whose host side to profile with cProfile (traced and not)")
    a = ap.parse_args()
    keys = {k.strip() for k in a.only.split(",")}
    for wl in B.WORKLOADS:
        if wl.key in keys:
            profile(wl, a.steps)
        if wl.key == a.host:
            host_profile(wl, 2, False)
            host_profile(wl, 2, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
