"""Per-step cost of minireg on the GPU (device="cuda") next to minireg on the CPU and PyTorch on the GPU,
and the throughput of a GPU sweep next to a sweep on every CPU core.

    python benchmarks/bench_cuda.py                 # the workloads, the size sweeps, the sweep throughput
    python benchmarks/bench_cuda.py --quick --only linear-full,mlp-relu-full --no-sizes
    python benchmarks/bench_cuda.py --only none --no-sizes --sweep-runs 1000   # the sweep throughput only
    python benchmarks/bench_cuda.py --sim-smoke     # tiny sizes in numba's CUDA simulator (no GPU):
                                                    # checks that the script runs; timings meaningless

What it prints:
- the device's measured peaks: device-to-device copy bandwidth (GB/s, bytes read + written) and
  matrix-product rate (GFLOP/s: PyTorch/cuBLAS when torch is there, and minireg's own tiled kernel);
- the workloads of bench_engine.py (linear-full, mlp-relu-full, linear-batch32, linear-batch1,
  mlp64-batch32, linear-1M-full, mlp64-200k-full): µs per optimizer step for minireg CPU, minireg
  CPU traced, minireg CUDA on each of its two paths — one-launch (minireg/cuda/onelaunch.py: the
  whole run in one kernel launch, one block; measured where a step's B·P is at most
  ONE_LAUNCH_MAX_WORK) and multi-launch (minireg/cuda/loop.py: ~12 launches a step) — minireg CUDA
  traced (trace=True, on the path the size rule picks) and torch CUDA; the ratios to the best CUDA
  path; which path MINIREG_CUDA_ONE_LAUNCH=auto picks; for the best path the achieved GB/s and
  GFLOP/s with their share of the peaks;
- two size sweeps (linear model over N = 1e2..1e7 rows, full batch; MLP d-w-w-1 over widths
  16..1024) with both CUDA paths, the CPU/CUDA crossover and where the one-launch path stops
  beating the multi-launch one (what ONE_LAUNCH_WORK, the auto rule's B·P threshold, should be);
- a sweep of SWEEP_RUNS (1,000) runs of mlp-relu-full (10 lrs x 100 seeds, SWEEP_EPOCHS epochs each):
  runs per second with minireg.sweep(device="cuda") (the runs side by side, one block each, in one
  launch) and with minireg.sweep(device="cpu", n_jobs=-1) (joblib, every core), no diagnosis, only
  histories kept; for the GPU also the seconds spent in the launches and transfers (the rest is
  train()'s preparation of every run on the host).

Method: per-step time = (T(e2) − T(e1)) / (steps(e2) − steps(e1)) with e1 < e2 epochs, each T the best
of REPEATS wall-clock runs of a whole train() call (torch: a whole training loop, then
synchronize), after one warm-up run (compilation). The difference removes what a run pays once:
validation, allocation, uploading the data, compiling. e2 is calibrated so that a run takes about
TARGET_S. Achieved rates use a traffic model (X read by the forward pass and again by the weight
gradient; each hidden activation written once and read three times, its delta written and read
once) and the FLOPs of the three products of a step (forward, weight gradient, input deltas).
The sweeps are timed once each, after a small warm-up sweep (compilation, the worker pool).
"""
import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

SIM = "--sim-smoke" in sys.argv
if SIM:  # must be set before numba is imported
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    os.environ.setdefault("MINIREG_CUDA_TPB", "16")
    for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, "1")  # spinning BLAS threads starve the simulator's threads

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
try:  # an installed minireg or one on PYTHONPATH wins; otherwise the checkout this file lives in
    import minireg
except ImportError:
    sys.path.insert(0, str(REPO))
    import minireg

TARGET_S = 0.5
REPEATS = 3
TRACE_BUDGET = 2**33
# the one-launch path runs a step on one block: timed only up to this B·P (beyond, a step takes
# seconds on one SM, and the auto rule never picks it there)
ONE_LAUNCH_MAX_WORK = 1 << 24
SWEEP_RUNS = 1000
SWEEP_EPOCHS = 200


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    n: int
    d: int
    hidden: tuple = ()
    activation: str = "relu"
    optimizer: str = "sgd"
    lr: float = 0.01
    batch_size: int | None = None
    dtype: str = "float64"
    max_epochs: int = 10**6
    trace: bool = True  # also time trace=True

    @property
    def model(self):
        return "mlp" if self.hidden else "linear"

    @property
    def sizes(self):
        return (self.d, *self.hidden, 1)

    @property
    def batch(self):
        return self.n if self.batch_size is None else min(self.batch_size, self.n)

    @property
    def shuffled(self):
        return self.batch < self.n

    @property
    def item(self):
        return np.dtype(self.dtype).itemsize

    @property
    def n_params(self):
        return sum(self.sizes[k] * self.sizes[k + 1] + self.sizes[k + 1] for k in range(len(self.sizes) - 1))

    @property
    def work(self):
        """B·P: what the one-launch path's size rule compares with ONE_LAUNCH_WORK."""
        return self.batch * self.n_params

    def flops_per_step(self):
        pairs = [self.sizes[k] * self.sizes[k + 1] for k in range(len(self.sizes) - 1)]
        return 2 * self.batch * (2 * sum(pairs) + sum(pairs[1:]))

    def bytes_per_step(self):
        return self.item * self.batch * (2 * self.d + 1 + 5 * sum(self.hidden))


WORKLOADS = (  # bench_engine.py's, by the same names
    Workload("linear-full", "linear N=100 d=1 full-batch SGD f64", 100, 1, lr=0.1),
    Workload("mlp-relu-full", "MLP 1-10-1 relu Adam N=100 full-batch f64", 100, 1, (10,), "relu", "adam", 0.01),
    Workload("linear-batch32", "linear N=10k d=10 SGD batch 32 f64", 10_000, 10, lr=0.01, batch_size=32,
             max_epochs=50),
    Workload("linear-batch1", "linear N=10k d=10 SGD batch 1 f64", 10_000, 10, lr=0.01, batch_size=1, max_epochs=3,
             trace=False),
    Workload("mlp64-batch32", "MLP 10-64-64-1 relu Adam batch 32 N=10k f64", 10_000, 10, (64, 64), "relu", "adam",
             1e-3, batch_size=32, max_epochs=20),
    Workload("linear-1M-full", "linear N=1M d=100 full-batch SGD f32", 1_000_000, 100, lr=0.1, dtype="float32",
             max_epochs=200),
    Workload("mlp64-200k-full", "MLP 20-64-64-1 relu Adam N=200k full-batch f32", 200_000, 20, (64, 64), "relu",
             "adam", 1e-3, dtype="float32", max_epochs=200),
)
# the keys of earlier RESULTS.md tables
OLD_KEYS = {"W1": "linear-full", "W2": "mlp-relu-full", "W3a": "linear-batch32", "W3b": "linear-batch1",
            "W3": "linear-batch32,linear-batch1", "W4": "mlp64-batch32", "W5": "linear-1M-full",
            "W6": "mlp64-200k-full"}
LINEAR_SWEEP = [10**k for k in range(2, 8)]  # rows, d=10, full batch, SGD, float32
MLP_SWEEP = [16, 32, 64, 128, 256, 512, 1024]  # widths of d=20 → w → w → 1, N=4096 full batch, Adam, f32


def sweep_linear(n):
    return Workload(f"lin N={n:.0e}", f"linear N={n} d=10 full batch f32", n, 10, lr=0.05, dtype="float32",
                    max_epochs=500, trace=False)


def sweep_mlp(w):
    return Workload(f"mlp w={w}", f"MLP 20-{w}-{w}-1 N=4096 full batch f32", 4096, 20, (w, w), "relu", "adam",
                    1e-3, dtype="float32", max_epochs=500, trace=False)


def shrink(wl):
    """--sim-smoke: the same configuration on a handful of rows and units."""
    return replace(wl, label=wl.label + " (shrunk)", n=min(wl.n, 24), d=min(wl.d, 3),
                   hidden=tuple(min(h, 4) for h in wl.hidden),
                   batch_size=None if wl.batch_size is None else min(wl.batch_size, 8), max_epochs=2)


def make_data(wl, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((wl.n, wl.d), dtype=np.float32).astype(wl.dtype, copy=False)
    w = rng.standard_normal(wl.d).astype(wl.dtype)
    y = np.sin(X @ w / np.sqrt(wl.d)) if wl.hidden else X @ w + 1.0
    y = y + 0.1 * rng.standard_normal(wl.n).astype(wl.dtype)
    return np.ascontiguousarray(X), y.astype(wl.dtype)


# --------------------------------------------------------------------------------------------
# runners: run(epochs) -> optimizer steps done

def cuda_path(path):
    """MINIREG_CUDA_ONE_LAUNCH for the runs that follow: "always" (one-launch), "never" (multi-launch)
    or "auto" (the size rule)."""
    from minireg.cuda import onelaunch
    onelaunch.ONE_LAUNCH = path


def minireg_runner(wl, X, y, device, trace, path="auto"):
    def run(epochs):
        if device == "cuda":
            cuda_path(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = minireg.train(X, y, model=wl.model, hidden=wl.hidden, activation=wl.activation,
                              optimizer=wl.optimizer, lr=wl.lr, epochs=epochs, batch_size=wl.batch_size,
                              dtype=wl.dtype, trace=trace, trace_budget=TRACE_BUDGET, device=device, progress=False)
        if device == "cuda":
            cuda_path("auto")
            run.path = r.config["cuda_path"]
        if r.diverged:
            print(f"  ! minireg {device} diverged on {wl.key} at step {r.diverged_at}", file=sys.stderr)
        return r.n_steps
    run.path = None
    return run


def torch_cuda_runner(wl, X, y):
    try:
        import torch
    except ImportError:
        return None
    if SIM or not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    dtype = getattr(torch, wl.dtype)
    Xt = torch.from_numpy(X).to(dev)
    yt = torch.from_numpy(y).reshape(-1, 1).to(dev)
    opt_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[wl.optimizer]

    def run(epochs):
        torch.manual_seed(0)
        layers = []
        for k in range(len(wl.sizes) - 1):
            layers.append(torch.nn.Linear(wl.sizes[k], wl.sizes[k + 1], dtype=dtype, device=dev))
            if k < len(wl.sizes) - 2:
                layers.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[wl.activation]())
        model = torch.nn.Sequential(*layers)
        opt = opt_class(model.parameters(), lr=wl.lr)
        n, bs, steps = wl.n, wl.batch, 0
        for _ in range(epochs):
            perm = torch.randperm(n, device=dev) if wl.shuffled else None
            for i in range(0, n, bs):
                rows = perm[i:i + bs] if perm is not None else slice(i, i + bs)
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(model(Xt[rows]), yt[rows])
                loss.backward()
                opt.step()
                steps += 1
        torch.cuda.synchronize()
        return steps
    return run


def timed(run, epochs, repeats):
    best, steps = math.inf, 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        steps = run(epochs)
        best = min(best, time.perf_counter() - t0)
    return best, steps


def per_step_us(run, wl, target, repeats):
    """(µs per step, fixed cost in s) by the difference of a short and a calibrated long run."""
    if not SIM:
        run(1)  # warm-up: compile, first allocations
    t1, s1 = timed(run, 1, repeats)
    # calibrate on the time of one more epoch, not of a whole 1-epoch run: the fixed cost (W5
    # uploads 400 MB per call) would otherwise make e2 too small for the difference to show
    per_epoch = max(timed(run, 2, 1)[0] - t1, t1 / 100, 1e-6)
    e2 = int(min(wl.max_epochs, max(2, 1 + math.ceil(target / per_epoch))))
    t2, s2 = timed(run, e2, repeats)
    if s2 <= s1:
        return math.nan, t1
    step = max(t2 - t1, 0.0) / (s2 - s1)
    return step * 1e6, t1 - step * s1


# --------------------------------------------------------------------------------------------
# device peaks

def device_peaks(quick):
    from numba import cuda
    out = {}
    n = (1 << 16) if SIM else (1 << 26 if not quick else 1 << 24)  # float32 elements (256 MiB)
    a = cuda.to_device(np.ones(n, np.float32))
    b = cuda.device_array(n, np.float32)
    b.copy_to_device(a)
    cuda.synchronize()
    reps = 2 if SIM else 20
    t0 = time.perf_counter()
    for _ in range(reps):
        b.copy_to_device(a)
    cuda.synchronize()
    out["copy_GBps"] = 2 * n * 4 * reps / (time.perf_counter() - t0) / 1e9
    try:
        import torch
        if not SIM and torch.cuda.is_available():
            # the same copy through torch (cudaMemcpyAsync D2D): the larger of the two is the peak
            ta = torch.ones(n, device="cuda")
            tb = torch.empty_like(ta)
            tb.copy_(ta)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(reps):
                tb.copy_(ta)
            torch.cuda.synchronize()
            out["copy_GBps"] = max(out["copy_GBps"], 2 * n * 4 * reps / (time.perf_counter() - t0) / 1e9)
            for dt in ("float32", "float64"):
                m = 4096
                A = torch.randn(m, m, device="cuda", dtype=getattr(torch, dt))
                A @ A
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(10):
                    A @ A
                torch.cuda.synchronize()
                out[f"torch_matmul_{dt}_GFLOPs"] = 10 * 2 * m**3 / (time.perf_counter() - t0) / 1e9
    except ImportError:
        pass
    out.update(minireg_matmul_rate(quick))
    return out


def minireg_matmul_rate(quick):
    """minireg's tiled forward kernel (Z = act(A·W + b)) on one big layer, float32 and float64."""
    from numba import cuda
    from minireg.cuda import models
    from minireg.cuda._config import TILE
    out = {}
    B, fi, fo = (64, 8, 8) if SIM else ((2048, 1024, 1024) if quick else (8192, 1024, 1024))
    for dt in ("float32", "float64"):
        rng = np.random.default_rng(0)
        X = cuda.to_device(rng.standard_normal((B, fi)).astype(dt))
        theta = cuda.to_device(rng.standard_normal(fi * fo + fo).astype(dt))
        acts = cuda.device_array(B * fo, dt)
        idx = cuda.to_device(np.arange(B, dtype=np.int64))
        flag = cuda.to_device(np.full(1, -1, np.int64))
        c = cuda.to_device(np.array([0, 0.5, 1, 2, 1, 1e-6], dt))
        grid = (-(-B // TILE), -(-fo // TILE))
        args = (flag, 0, X, idx, 0, B, acts, -1, 0, theta, 0, fi * fo, fi, fo, 1, c)

        def launch(grid=grid, args=args):  # this iteration's grid and arrays, bound at definition
            models.forward_hidden[grid, (TILE, TILE)](*args)
        launch()
        cuda.synchronize()
        reps = 1 if SIM else 10
        t0 = time.perf_counter()
        for _ in range(reps):
            launch()
        cuda.synchronize()
        out[f"minireg_matmul_{dt}_GFLOPs"] = reps * 2 * B * fi * fo / (time.perf_counter() - t0) / 1e9
    return out


# --------------------------------------------------------------------------------------------

def fmt_us(v):
    if v is None or not np.isfinite(v):
        return "—"
    return f"{v:,.1f}" if v < 1e4 else f"{v:,.0f}"


def measure(wl, target, repeats, with_torch=True, traced=True):
    X, y = make_data(wl)
    res = {}
    res["cpu"] = per_step_us(minireg_runner(wl, X, y, "cpu", False), wl, target, repeats)[0]
    res["one"] = res["one_fixed_s"] = None
    if wl.work <= ONE_LAUNCH_MAX_WORK:
        res["one"], res["one_fixed_s"] = per_step_us(minireg_runner(wl, X, y, "cuda", False, "always"), wl, target,
                                                     repeats)
    res["multi"], res["multi_fixed_s"] = per_step_us(minireg_runner(wl, X, y, "cuda", False, "never"), wl, target,
                                                     repeats)
    from minireg.cuda import onelaunch
    res["auto"] = onelaunch.plan(wl.sizes, wl.batch, wl.item)[0]
    if traced and wl.trace:
        res["cpu+trace"] = per_step_us(minireg_runner(wl, X, y, "cpu", True), wl, target, repeats)[0]
        res["cuda+trace"] = per_step_us(minireg_runner(wl, X, y, "cuda", True, "auto"), wl, target, repeats)[0]
    tr = torch_cuda_runner(wl, X, y) if with_torch else None
    res["torch"] = per_step_us(tr, wl, target, repeats)[0] if tr else None
    finite = [v for v in (res["one"], res["multi"]) if v is not None and np.isfinite(v)]
    res["cuda"] = min(finite) if finite else math.nan
    res["best"] = ("one" if res["one"] is not None and res["one"] == res["cuda"] else "multi")
    res["cuda_fixed_s"] = res[f"{res['best']}_fixed_s"]
    return res


def rates(wl, us, peaks):
    if not us or not np.isfinite(us) or us <= 0:
        return "—", "—"
    gbs = wl.bytes_per_step() / (us * 1e-6) / 1e9
    gfl = wl.flops_per_step() / (us * 1e-6) / 1e9
    bw = peaks.get("copy_GBps")
    mm = peaks.get(f"torch_matmul_{wl.dtype}_GFLOPs") or peaks.get(f"minireg_matmul_{wl.dtype}_GFLOPs")
    return (f"{gbs:,.1f} ({100 * gbs / bw:.0f}%)" if bw else f"{gbs:,.1f}",
            f"{gfl:,.1f} ({100 * gfl / mm:.0f}%)" if mm else f"{gfl:,.1f}")


def table(rows, header):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).rjust(w) if i else str(v).ljust(w)  # noqa: E731
                               for i, (v, w) in enumerate(zip(r, widths, strict=True)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def _ratio(a, b):
    return a / b if a and b and np.isfinite(a) and np.isfinite(b) and b > 0 else math.nan


def _x(v):
    return f"{v:.2f}x" if np.isfinite(v) else "—"


def run_workloads(wls, peaks, target, repeats):
    header = ("workload", "cpu µs", "cpu+trace", "cuda 1-launch", "cuda multi", "multi/1-launch", "auto picks",
              "cuda+trace", "torch-cuda", "torch/cuda", "cpu/cuda", "cuda GB/s (of peak)", "cuda GFLOP/s (of peak)",
              "cuda fixed s")
    rows = []
    for wl in wls:
        print(f"  {wl.key}: {wl.label} ...", file=sys.stderr, flush=True)
        r = measure(wl, target, repeats)
        gbs, gfl = rates(wl, r["cuda"], peaks)
        rows.append((f"{wl.key} {wl.label}", fmt_us(r["cpu"]), fmt_us(r.get("cpu+trace")), fmt_us(r["one"]),
                     fmt_us(r["multi"]), _x(_ratio(r["multi"], r["one"])), r["auto"], fmt_us(r.get("cuda+trace")),
                     fmt_us(r["torch"]), _x(_ratio(r["torch"], r["cuda"])), _x(_ratio(r["cpu"], r["cuda"])),
                     gbs, gfl, f"{r['cuda_fixed_s']:.3f}" if r["cuda_fixed_s"] is not None else "—"))
    print("\nper optimizer step (µs; lower is better). cuda = the faster CUDA path; torch/cuda and cpu/cuda > 1: "
          "minireg CUDA is faster; multi/1-launch > 1: the one-launch path is faster; — : not measured (one-launch "
          f"beyond B·P = {ONE_LAUNCH_MAX_WORK:,}, torch without a GPU)")
    table(rows, header)


def run_size_sweep(title, wls, sizes, peaks, target, repeats):
    header = ("size", "B·P", "cpu µs", "cuda 1-launch", "cuda multi", "multi/1-launch", "auto picks", "torch-cuda",
              "cpu/cuda", "cuda GB/s (of peak)", "cuda GFLOP/s (of peak)")
    rows, crossover, one_last = [], None, None
    for size, wl in zip(sizes, wls, strict=True):
        print(f"  {title} {wl.key} ...", file=sys.stderr, flush=True)
        r = measure(wl, target, repeats, traced=False)
        ratio = _ratio(r["cpu"], r["cuda"])
        if crossover is None and ratio > 1:
            crossover = size
        if _ratio(r["multi"], r["one"]) > 1:
            one_last = wl.work
        gbs, gfl = rates(wl, r["cuda"], peaks)
        rows.append((wl.key, f"{wl.work:.1e}", fmt_us(r["cpu"]), fmt_us(r["one"]), fmt_us(r["multi"]),
                     _x(_ratio(r["multi"], r["one"])), r["auto"], fmt_us(r["torch"]), _x(ratio), gbs, gfl))
    print(f"\n{title}")
    table(rows, header)
    print(f"CPU/CUDA crossover: {'CUDA faster from ' + str(crossover) if crossover else 'CUDA never faster here'}")
    print("one-launch vs multi-launch: " + (f"one-launch faster up to B·P = {one_last:.1e} here (ONE_LAUNCH_WORK "
                                            "should sit between that and the next size)" if one_last else
                                            "one-launch never faster here"))


def run_sweep_throughput(runs, epochs):
    """Runs per second of a sweep of mlp-relu-full on the GPU and on every CPU core."""
    import minireg.sweep  # noqa: F401  (the module, for timing its GPU route)
    from minireg.cuda import onelaunch
    wl = next(w for w in WORKLOADS if w.key == "mlp-relu-full")
    if SIM:
        wl = shrink(wl)
    X, y = make_data(wl)
    n_lr = 10 if runs >= 10 else 2
    grid = {"lr": [float(v) for v in np.geomspace(1e-3, 1e-1, n_lr)], "seed": list(range(max(1, runs // n_lr)))}
    total = len(grid["lr"]) * len(grid["seed"])
    fixed = dict(model=wl.model, hidden=wl.hidden, activation=wl.activation, optimizer=wl.optimizer,
                 dtype=wl.dtype, batch_size=wl.batch_size, epochs=epochs)
    launched = [0.0]
    run = onelaunch.RunSet.run

    def timed_run(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return run(self, *a, **k)
        finally:
            launched[0] += time.perf_counter() - t0

    onelaunch.RunSet.run = timed_run
    out = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            small = {"lr": grid["lr"][:2], "seed": [0]}
            minireg.sweep(X, y, grid=small, device="cuda", diagnose=False, keep="history", **fixed)  # compile
            launched[0] = 0.0
            t0 = time.perf_counter()
            sw = minireg.sweep(X, y, grid=grid, device="cuda", diagnose=False, keep="history", **fixed)
            out["gpu_s"], out["gpu_launch_s"] = time.perf_counter() - t0, launched[0]
            out["gpu_diverged"] = sum(r["diverged"] for r in sw.records())
            n_jobs = 2 if SIM else -1
            minireg.sweep(X, y, grid=small, n_jobs=n_jobs, diagnose=False, keep="history", **fixed)  # the pool
            t0 = time.perf_counter()
            sw_cpu = minireg.sweep(X, y, grid=grid, n_jobs=n_jobs, diagnose=False, keep="history", **fixed)
            out["cpu_s"] = time.perf_counter() - t0
    finally:
        onelaunch.RunSet.run = run
    worst = max(abs(a["final_loss"] - b["final_loss"]) / max(abs(b["final_loss"]), 1e-300)
                for a, b in zip(sw.records(), sw_cpu.records(), strict=True)
                if np.isfinite(a["final_loss"]) and np.isfinite(b["final_loss"]))
    cores = os.cpu_count()
    steps = total * epochs * -(-wl.n // wl.batch)
    print(f"\nsweep of {total} runs of {wl.key} ({wl.label}), {epochs} epochs each ({steps:,} steps in all), grid "
          f"{n_lr} lrs x {len(grid['seed'])} seeds; no diagnosis, histories kept")
    table([("minireg.sweep(device='cuda')", f"{out['gpu_s']:.3f}", f"{total / out['gpu_s']:,.0f}",
            f"{out['gpu_launch_s']:.3f}", f"{out['gpu_s'] - out['gpu_launch_s']:.3f}"),
           (f"minireg.sweep(device='cpu', n_jobs={'2' if SIM else '-1'}) on {cores} cores", f"{out['cpu_s']:.3f}",
            f"{total / out['cpu_s']:,.0f}", "—", "—")],
          ("", "seconds", "runs/s", "launches + transfers s", "host preparation + results s"))
    print(f"GPU/CPU runs per second: {_x(out['cpu_s'] / out['gpu_s'])}; largest relative difference of the final "
          f"losses GPU vs CPU: {worst:.1e}; diverged runs: {out['gpu_diverged']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter timings, smaller peaks (noisier)")
    ap.add_argument("--only", help="comma-separated workload keys, e.g. linear-full,mlp64-batch32 ('none': no "
                                   "workload)")
    ap.add_argument("--no-sizes", "--no-sweep", dest="no_sizes", action="store_true", help="skip the size sweeps")
    ap.add_argument("--sweep-runs", type=int, default=SWEEP_RUNS,
                    help=f"runs of the sweep-throughput part (default {SWEEP_RUNS}; 0 skips it)")
    ap.add_argument("--sweep-epochs", type=int, default=SWEEP_EPOCHS,
                    help=f"epochs of each run of that sweep (default {SWEEP_EPOCHS})")
    ap.add_argument("--sim-smoke", action="store_true",
                    help="run every part on tiny sizes in numba's CUDA simulator (no GPU; timings meaningless)")
    args = ap.parse_args(argv)

    from numba import cuda
    if not SIM and not cuda.is_available():
        err = ""
        try:
            err = f" (numba: {' '.join(str(cuda.cuda_error()).split())})"
        except Exception:
            pass
        sys.exit("bench_cuda.py needs an NVIDIA GPU with a working CUDA driver, and none was found"
                 f"{err}. On a GPU machine: pip install -e \".[cuda]\" (numba-cuda) and run again. To check "
                 "that this script runs at all, without a GPU: python benchmarks/bench_cuda.py --sim-smoke")

    target = TARGET_S / 5 if args.quick else TARGET_S
    repeats = 1 if (args.quick or SIM) else REPEATS
    wls = list(WORKLOADS)
    if args.only:
        keys = set()
        for k in args.only.split(","):
            keys.update(OLD_KEYS.get(k.strip(), k.strip()).split(","))
        wls = [w for w in wls if w.key in keys]
    lin_sizes, mlp_sizes = LINEAR_SWEEP, MLP_SWEEP
    sweep_runs, sweep_epochs = args.sweep_runs, args.sweep_epochs
    if SIM:
        target = 0.0
        wls = [shrink(w) for w in wls]
        lin_sizes, mlp_sizes = [8, 32], [2, 4]
        sweep_runs, sweep_epochs = min(sweep_runs, 8), min(sweep_epochs, 2)
        print("SIMULATOR SMOKE RUN: numba's CUDA simulator, tiny sizes; the numbers below mean nothing.\n")

    dev = "simulator" if SIM else cuda.get_current_device().name
    dev = dev.decode() if isinstance(dev, bytes) else dev
    from minireg.cuda import onelaunch
    print(f"device: {dev}; numba.cuda: {getattr(cuda, 'implementation', 'built-in')}; minireg {minireg.__version__}; "
          f"MINIREG_CUDA_TPB={os.environ.get('MINIREG_CUDA_TPB', '256 (default)')}; ONE_LAUNCH_WORK (auto rule) = "
          f"{onelaunch.ONE_LAUNCH_WORK}; cpu cores: {os.cpu_count()}")
    peaks = device_peaks(args.quick)
    print("measured peaks: " + ", ".join(f"{k} {v:,.1f}" for k, v in peaks.items()))

    if wls:
        run_workloads(wls, peaks, target, repeats)
    if not args.no_sizes:
        lin = [sweep_linear(n) for n in lin_sizes]
        mlp = [sweep_mlp(w) for w in mlp_sizes]
        if SIM:
            lin = [replace(w, max_epochs=2) for w in lin]
            mlp = [replace(w, n=16, max_epochs=2) for w in mlp]
        run_size_sweep("linear model, d=10, full batch, SGD, float32: rows N", lin, lin_sizes, peaks, target, repeats)
        run_size_sweep("MLP 20-w-w-1 relu, N=4096 full batch, Adam, float32: width w", mlp, mlp_sizes, peaks, target,
                       repeats)
    if sweep_runs > 0:
        run_sweep_throughput(sweep_runs, sweep_epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
