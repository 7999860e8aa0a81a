"""minireg on real-sized data (issue #16): fixed costs, the large-batch path, batch-1 SGD, traces.

    python benchmarks/bench_scale.py                  # everything (a few minutes on 2 cores)
    python benchmarks/bench_scale.py --only fixed,W5  # parts: fixed, W5, W6, W3b, threshold
    python benchmarks/bench_scale.py --markdown FILE  # also append the tables as markdown

- fixed: on the 1M x 100 float32 array, train()'s work before its first step (result.setup_seconds:
  the checks, scaling and buffers; compiling aside), and train(X, y, epochs=1) minus one step (that
  plus the final whole-set loss), against one read of X (X.sum(), NumPy's single-threaded read, and
  a read on all threads); and the one-pass check of X alone.
- W5 (linear N=1M d=100, full batch, SGD, float32) and W6 (MLP 20-64-64-1 relu, N=200k, full
  batch, Adam, float32): per step = (t(1+k epochs) - t(1 epoch)) / k for minireg (all threads, and
  1 thread), PyTorch CPU (its default threads) and, for minireg, trace="norms"; against the
  floors: one read of X on all threads (W5), the step's FLOPs at the float32 matmul rate of
  NumPy's BLAS (W6), each timed as a run of reads or matmuls as long as the k steps (the best of a
  single short read would be the VM's best moment, set against the best of runs of seconds). All
  of them, floor included, are timed in turn in each of 7 rounds (k = 6) and the best of each
  taken (side_by_side): on the shared VM a slow spell then slows all of them, not one.
- W3b: linear d=10, batch 1, SGD, float64, per sample, next to scikit-learn's SGDRegressor; and
  what an epoch spends per sample on its steps, on the data set's loss after it and on the next
  epoch's row order.
- threshold: the tiled step against the row loop over batch sizes (where STEP_WORK should be).

Ratios are measured side by side in one process; on the shared VM single figures move by 20-50%.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_engine as E  # noqa: E402  (minireg, torch and sklearn imports, workloads, competitors)

minireg = E.minireg
torch = E.torch
REPEATS = 3
# the names for the parts, and bench_engine's keys of their workloads (renamed there in 856d061)
KEYS = {"W5": "linear-1M-full", "W6": "mlp64-200k-full", "W3b": "linear-batch1"}


def workload(part):
    return next(w for w in E.WORKLOADS if w.key == KEYS.get(part, part))


def best(fn, repeats=REPEATS):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def per_step(run, k, repeats=REPEATS):
    """(t(1+k epochs) - t(1 epoch)) / k and t(1 epoch), each the best of ``repeats``; full batch: one step an epoch."""
    run(1)
    t1 = best(lambda: run(1), repeats)
    tk = best(lambda: run(1 + k), repeats)
    return (tk - t1) / k, t1


def reader(X):
    """A read of X on all of numba's threads, to be timed: per block of rows, column sums (vectorized
    over the columns, so the loads and not the adds set the pace)."""
    import numba

    @numba.njit(parallel=True, cache=False)
    def colsums(A, out):
        n = A.shape[0]
        for b in numba.prange(out.shape[0]):
            acc = out[b]
            for j in range(A.shape[1]):
                acc[j] = 0
            for r in range(b * 4096, min(n, (b + 1) * 4096)):
                row = A[r]
                for j in range(A.shape[1]):
                    acc[j] += row[j]
    out = np.zeros((-(-X.shape[0] // 4096), X.shape[1]), X.dtype)
    colsums(X, out)
    return lambda: colsums(X, out)


def read_bandwidth(X):
    """Bytes per second of a read of X on all of numba's threads (``reader``), best of 5."""
    return X.nbytes / best(reader(X), 5)


def multiplier(dtype="float32", n=2048):
    """A matrix product of n × n by n × n (``dtype``) on NumPy's BLAS (all threads), to be timed, and its FLOPs."""
    a = np.ones((n, n), dtype)
    a @ a
    return lambda: a @ a, 2 * n**3


def side_by_side(runs, k, rounds, floors):
    """Per step of each run (name → run(epochs)): (t(1+k epochs) - t(1 epoch)) / k with the best t of
    ``rounds``, and the best time of each of ``floors`` (name → fn). Every round times all of them
    in turn, so that a slow spell of the shared VM falls on all and not on the one timed then."""
    for r in runs.values():
        r(1)
    t1, tk = {n: [] for n in runs}, {n: [] for n in runs}
    tf = {n: [] for n in floors}
    for _ in range(rounds):
        for n, fn in floors.items():
            t0 = time.perf_counter()
            fn()
            tf[n].append(time.perf_counter() - t0)
        for n, r in runs.items():
            for e, out in ((1, t1), (1 + k, tk)):
                t0 = time.perf_counter()
                r(e)
                out[n].append(time.perf_counter() - t0)
    return {n: (min(tk[n]) - min(t1[n])) / k for n in runs}, {n: min(v) for n, v in tf.items()}


def minireg_result(wl, X, y, epochs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return minireg.train(X, y, model=wl.model, hidden=wl.hidden, activation=wl.activation,
                             optimizer=wl.optimizer, lr=wl.lr, epochs=epochs, batch_size=wl.batch_size,
                             dtype=wl.dtype, progress=False, **kw)


def minireg_run(wl, X, y, **kw):
    return lambda epochs: minireg_result(wl, X, y, epochs, **kw)


def fixed_costs(rows):
    wl = workload("W5")
    X, y = E.make_data(wl)
    run = minireg_run(wl, X, y)
    step, t1 = per_step(run, 4)
    xsum = best(lambda: X.sum(), 5)
    bw = read_bandwidth(X)
    tread = X.nbytes / bw
    fixed = t1 - step
    setup = min(minireg_result(wl, X, y, 1).setup_seconds for _ in range(REPEATS))
    from minireg.kernels import data
    check = best(lambda: data.bad_values(X.reshape(-1), np.float32(np.finfo(np.float32).max)), 5)
    rows.append(("fixed", "before the first step (result.setup_seconds), 1M x 100 float32", f"{setup * 1e3:,.1f} ms",
                 f"X.sum() {xsum * 1e3:,.1f} ms: {setup / xsum:.2f}x; all-thread read {tread * 1e3:,.1f} ms: "
                 f"{setup / tread:.2f}x", "the checks, scaling and buffers of train()"))
    rows.append(("fixed", "of which the one-pass check of X (kernels/data.py bad_values)", f"{check * 1e3:,.1f} ms",
                 f"all-thread read {tread * 1e3:,.1f} ms: {check / tread:.2f}x", ""))
    rows.append(("fixed", "train(epochs=1) - one step, 1M x 100 float32", f"{fixed * 1e3:,.1f} ms",
                 f"X.sum() {xsum * 1e3:,.1f} ms: {fixed / xsum:.2f}x; all-thread read {tread * 1e3:,.1f} ms: "
                 f"{fixed / tread:.2f}x", f"epochs=1 {t1 * 1e3:,.1f} ms, step {step * 1e3:,.1f} ms; adds the "
                 "final whole-set loss (one more read)"))
    Xd = X.astype(np.float64)
    stepd, t1d = per_step(minireg_run(wl, Xd, y), 2, 2)
    rows.append(("fixed", "the same from a float64 X (one converting pass)", f"{(t1d - stepd) * 1e3:,.1f} ms",
                 f"{(t1d - stepd) / xsum:.2f}x X.sum() of the float32 X", ""))


def large(key, rows, rounds=7):
    """W5 or W6: minireg (all threads, 1 thread, trace="norms") and PyTorch, and the workload's
    floor (a read of X for W5, a float32 matmul for W6), timed side by side round after round."""
    wl = workload(key)
    X, y = E.make_data(wl)
    k = 6
    runs = {"minireg": minireg_run(wl, X, y), "minireg 1 thread": minireg_run(wl, X, y, threads=1),
            "minireg norms": minireg_run(wl, X, y, trace="norms")}
    if torch is not None:
        runs["torch"] = E.torch_runner(wl, X, y)
    # the floor is timed for as long as the k steps it is set against (k reads of X; as many
    # matmuls as the k steps' FLOPs): the best of a short burst would be the best moment of the VM
    if key == "W5":
        floor_op, reps = reader(X), k
    else:
        floor_op, mm_flops = multiplier()
        reps = max(1, round(k * wl.flops_per_step() / mm_flops))

    def floor_work():
        for _ in range(reps):
            floor_op()
    res, tf = side_by_side(runs, k, rounds, {"floor": floor_work})
    if key == "W5":
        floor = tf["floor"] / reps
        what = f"read of X {floor * 1e3:,.1f} ms ({X.nbytes / floor / 1e9:.1f} GB/s, {reps} in a row)"
    else:
        rate = reps * mm_flops / tf["floor"]
        floor = wl.flops_per_step() / rate
        what = (f"{wl.flops_per_step() / 1e9:.1f} GFLOP at {rate / 1e9:.0f} GFLOP/s ({reps} 2048² matmuls in a row) "
                f"{floor * 1e3:,.1f} ms")
    m = res["minireg"]
    detail = (f"1 thread {res['minireg 1 thread'] * 1e3:,.1f} ms; trace='norms' {res['minireg norms'] * 1e3:,.1f} ms "
              f"({res['minireg norms'] / m:.2f}x); best of {rounds} rounds")
    vs = f"torch {res['torch'] * 1e3:,.1f} ms: {res['torch'] / m:.2f}x faster" if "torch" in res else "torch n/a"
    rows.append((key, wl.label, f"{m * 1e3:,.1f} ms/step", f"{vs}; floor: {what}: {m / floor:.2f}x floor", detail))


def batch1(rows):
    wl = workload("W3b")
    X, y = E.make_data(wl)
    k = 20
    m = per_step(minireg_run(wl, X, y), k)[0] / wl.n
    sk = E.sklearn_runner(wl, X, y)
    s = per_step(sk, k)[0] / wl.n if sk is not None else float("nan")
    rows.append(("W3b", wl.label, f"{m * 1e6:.3f} µs/sample", f"SGDRegressor {s * 1e6:.3f} µs/sample: "
                 f"minireg/sklearn {m / s:.2f}x", "per sample = (t(1+k epochs) - t(1 epoch)) / (k·N)"))
    # where an epoch's time goes: its steps (the batch-1 loop alone), the loss over the data set
    # after it (the history), and the drawing of the next epoch's row order
    from minireg.kernels.constants import run_constants
    from minireg.kernels.loop import linear_dataset_loss, sgd1_rows
    from minireg.optim import sgd
    n, d = X.shape
    theta, c, scratch = np.zeros(d + 1), run_constants(1.0, np.float64), np.zeros(8)
    woff, boff, stop = np.array([0]), np.array([d]), np.zeros(1, np.int64)
    h = sgd.hyper("sgd", {**sgd.DEFAULTS["sgd"]})
    idx = np.random.default_rng(0).permutation(n)
    rng = np.random.default_rng(1)
    parts = {"its steps (loop.sgd1_rows)": lambda: sgd1_rows(X, y, idx, 0, theta, woff, boff, h, wl.lr, 0, c, scratch,
                                                             stop),
             "the data set's loss after the epoch": lambda: linear_dataset_loss(X, y, theta, woff, boff, 0, c, scratch),
             "the next epoch's order (Generator.permutation)": lambda: rng.permutation(n)}
    for what, fn in parts.items():
        t = best(fn, 50) / n
        rows.append(("W3b", f"of which {what}", f"{t * 1e6:.3f} µs/sample", f"{t / s:.2f}x SGDRegressor's sample",
                     "best of 50"))


def threshold(rows):
    """Tiled step (all threads) vs the row loop, per batch size, linear d=100 and MLP 20-64-64-1; the
    tiled path forced (STEP_WORK = LOSS_WORK = 1) down to one tile (MIN_TILES = 1)."""
    from minireg import _parallel
    rng = np.random.default_rng(0)
    for d, hidden, sizes in ((100, (), (256, 1024, 4096, 16384)), (20, (64, 64), (128, 256, 512, 1024, 4096, 16384))):
        for B in sizes:
            X = rng.standard_normal((B * 8, d)).astype(np.float32)
            y = rng.standard_normal(B * 8).astype(np.float32)
            kw = dict(model="mlp" if hidden else "linear", hidden=hidden or (10,), batch_size=B, shuffle=False,
                      dtype="float32", lr=1e-3, progress=False)
            P = minireg.layout.Layout((d, *hidden, 1)).size
            old = _parallel.STEP_WORK, _parallel.LOSS_WORK, _parallel.MIN_TILES
            try:
                _parallel.STEP_WORK, _parallel.LOSS_WORK = 1 << 62, 1 << 62
                def run(e, X=X, y=y, kw=kw):
                    minireg.train(X, y, epochs=e, **kw)
                row = per_step(run, 4)[0] / 8
                _parallel.STEP_WORK, _parallel.LOSS_WORK, _parallel.MIN_TILES = 1, 1, 1
                tiled = per_step(run, 4)[0] / 8
            finally:
                _parallel.STEP_WORK, _parallel.LOSS_WORK, _parallel.MIN_TILES = old
            rows.append(("threshold", f"d={d} hidden={hidden} B={B} (B·P={B * P:,})", f"row {row * 1e6:,.0f} µs",
                         f"tiled {tiled * 1e6:,.0f} µs: {row / tiled:.2f}x", ""))


def header():
    import numba
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return (f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}\n"
            f"- minireg: {os.path.dirname(minireg.__file__)} @ {commit}\n"
            f"- machine: {platform.processor() or platform.machine()}, nproc={os.cpu_count()}, "
            f"numba threads {numba.config.NUMBA_NUM_THREADS}\n"
            f"- versions: numpy {np.__version__}, numba {numba.__version__}, "
            f"torch {torch.__version__ if torch else 'n/a'} ({torch.get_num_threads() if torch else 0} threads)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="fixed,W5,W6,W3b", help="comma-separated parts: fixed, W5, W6, W3b, threshold")
    ap.add_argument("--markdown", help="append the results as markdown to this file")
    args = ap.parse_args()
    parts = args.only.split(",")
    E.warm_up_minireg()
    rows = []
    if "fixed" in parts:
        fixed_costs(rows)
    for key in ("W5", "W6"):
        if key in parts:
            large(key, rows)
    if "W3b" in parts:
        batch1(rows)
    if "threshold" in parts:
        threshold(rows)
    head = header()
    table = ["| part | what | minireg | against | notes |", "|---|---|---|---|---|"]
    table += [f"| {' | '.join(r)} |" for r in rows]
    text = head + "\n\n" + "\n".join(table) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n## bench_scale run\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
