"""Per-step cost of minireg on the GPU (device="cuda") next to minireg on the CPU and PyTorch on the GPU.

    python benchmarks/bench_cuda.py                 # W1..W6, the size sweeps, device peaks (needs a GPU)
    python benchmarks/bench_cuda.py --quick --only W1,W5 --no-sweep
    python benchmarks/bench_cuda.py --sim-smoke     # tiny sizes in numba's CUDA simulator (no GPU):
                                                    # checks that the script runs; timings meaningless

What it prints:
- the device's measured peaks: device-to-device copy bandwidth (GB/s, bytes read + written) and
  matrix-product rate (GFLOP/s: PyTorch/cuBLAS when torch is there, and minireg's own tiled kernel);
- W1..W6 (the workloads of bench_engine.py): µs per optimizer step for minireg CPU, minireg CPU
  traced, minireg CUDA, minireg CUDA traced (trace=True: every step's params, grad, update and state
  copied into the trace on the device, the new rows copied back once per call) and torch CUDA, the
  CPU/CUDA ratio, and for minireg CUDA the achieved GB/s and GFLOP/s with their share of the peaks;
- two size sweeps (linear model over N = 1e2..1e7 rows, full batch; MLP d-w-w-1 over widths
  16..1024) with the CPU/CUDA crossover: the smallest size from which CUDA is faster.

Method: per-step time = (T(e2) − T(e1)) / (steps(e2) − steps(e1)) with e1 < e2 epochs, each T the best
of REPEATS wall-clock runs of a whole train() call (torch: a whole training loop, then
synchronize), after one warm-up run (compilation). The difference removes what a run pays once:
validation, allocation, uploading the data, compiling. e2 is calibrated so that a run takes about
TARGET_S. Achieved rates use a traffic model (X read by the forward pass and again by the weight
gradient; each hidden activation written once and read three times, its delta written and read
once) and the FLOPs of the three products of a step (forward, weight gradient, input deltas).

minireg CUDA launches about 3 kernels per layer plus 3-4 per step (forward, backward, loss and
clipping factor, optimizer, trace), each costing tens of µs of Python launch overhead in numba: small
problems are launch-bound and the CPU wins them by far; the sweep shows where the GPU takes over.
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

    def flops_per_step(self):
        pairs = [self.sizes[k] * self.sizes[k + 1] for k in range(len(self.sizes) - 1)]
        return 2 * self.batch * (2 * sum(pairs) + sum(pairs[1:]))

    def bytes_per_step(self):
        return self.item * self.batch * (2 * self.d + 1 + 5 * sum(self.hidden))


WORKLOADS = (
    Workload("W1", "linear N=100 d=1 full-batch SGD f64", 100, 1, lr=0.1),
    Workload("W2", "MLP 1-10-1 relu Adam N=100 full-batch f64", 100, 1, (10,), "relu", "adam", 0.01),
    Workload("W3a", "linear N=10k d=10 SGD batch 32 f64", 10_000, 10, lr=0.01, batch_size=32, max_epochs=50),
    Workload("W3b", "linear N=10k d=10 SGD batch 1 f64", 10_000, 10, lr=0.01, batch_size=1, max_epochs=3,
             trace=False),
    Workload("W4", "MLP 10-64-64-1 relu Adam batch 32 N=10k f64", 10_000, 10, (64, 64), "relu", "adam", 1e-3,
             batch_size=32, max_epochs=20),
    Workload("W5", "linear N=1M d=100 full-batch SGD f32", 1_000_000, 100, lr=0.1, dtype="float32",
             max_epochs=200),
    Workload("W6", "MLP 20-64-64-1 relu Adam N=200k full-batch f32", 200_000, 20, (64, 64), "relu", "adam",
             1e-3, dtype="float32", max_epochs=200),
)
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

def minireg_runner(wl, X, y, device, trace):
    def run(epochs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = minireg.train(X, y, model=wl.model, hidden=wl.hidden, activation=wl.activation,
                              optimizer=wl.optimizer, lr=wl.lr, epochs=epochs, batch_size=wl.batch_size,
                              dtype=wl.dtype, trace=trace, trace_budget=TRACE_BUDGET, device=device)
        if r.diverged:
            print(f"  ! minireg {device} diverged on {wl.key} at step {r.diverged_at}", file=sys.stderr)
        return r.n_steps
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
    res["cuda"], res["cuda_fixed_s"] = per_step_us(minireg_runner(wl, X, y, "cuda", False), wl, target, repeats)
    if traced and wl.trace:
        res["cpu+trace"] = per_step_us(minireg_runner(wl, X, y, "cpu", True), wl, target, repeats)[0]
        res["cuda+trace"] = per_step_us(minireg_runner(wl, X, y, "cuda", True), wl, target, repeats)[0]
    tr = torch_cuda_runner(wl, X, y) if with_torch else None
    res["torch"] = per_step_us(tr, wl, target, repeats)[0] if tr else None
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


def run_workloads(wls, peaks, target, repeats):
    header = ("workload", "cpu µs", "cpu+trace", "cuda µs", "cuda+trace", "cuda trace cost", "torch-cuda",
              "torch/cuda", "cpu/cuda", "cuda GB/s (of peak)", "cuda GFLOP/s (of peak)", "cuda fixed s")
    rows = []
    for wl in wls:
        print(f"  {wl.key}: {wl.label} ...", file=sys.stderr, flush=True)
        r = measure(wl, target, repeats)
        gbs, gfl = rates(wl, r["cuda"], peaks)
        rows.append((f"{wl.key} {wl.label}", fmt_us(r["cpu"]), fmt_us(r.get("cpu+trace")), fmt_us(r["cuda"]),
                     fmt_us(r.get("cuda+trace")), f"{_ratio(r.get('cuda+trace'), r['cuda']):.2f}x",
                     fmt_us(r["torch"]), f"{_ratio(r['torch'], r['cuda']):.2f}x", f"{_ratio(r['cpu'], r['cuda']):.2f}x",
                     gbs, gfl, f"{r['cuda_fixed_s']:.3f}"))
    print("\nper optimizer step (µs; lower is better; torch/cuda and cpu/cuda > 1: minireg CUDA is faster; "
          "trace cost = cuda+trace ÷ cuda)")
    table(rows, header)


def run_sweep(title, wls, sizes, peaks, target, repeats):
    header = ("size", "cpu µs", "cuda µs", "torch-cuda", "cpu/cuda", "cuda GB/s (of peak)", "cuda GFLOP/s (of peak)")
    rows, crossover = [], None
    for size, wl in zip(sizes, wls, strict=True):
        print(f"  {title} {wl.key} ...", file=sys.stderr, flush=True)
        r = measure(wl, target, repeats, traced=False)
        ratio = _ratio(r["cpu"], r["cuda"])
        if crossover is None and ratio > 1:
            crossover = size
        gbs, gfl = rates(wl, r["cuda"], peaks)
        rows.append((wl.key, fmt_us(r["cpu"]), fmt_us(r["cuda"]), fmt_us(r["torch"]), f"{ratio:.2f}x", gbs, gfl))
    print(f"\n{title}")
    table(rows, header)
    print(f"CPU/CUDA crossover: {'CUDA faster from ' + str(crossover) if crossover else 'CUDA never faster here'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter timings, smaller peaks (noisier)")
    ap.add_argument("--only", help="comma-separated workload keys, e.g. W1,W5")
    ap.add_argument("--no-sweep", action="store_true", help="skip the size sweeps")
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
        keys = {k.strip() for k in args.only.split(",")}
        wls = [w for w in wls if w.key in keys or w.key.rstrip("ab") in keys]
    lin_sizes, mlp_sizes = LINEAR_SWEEP, MLP_SWEEP
    if SIM:
        target = 0.0
        wls = [shrink(w) for w in wls]
        lin_sizes, mlp_sizes = [8, 32], [2, 4]
        print("SIMULATOR SMOKE RUN: numba's CUDA simulator, tiny sizes; the numbers below mean nothing.\n")

    dev = "simulator" if SIM else cuda.get_current_device().name
    dev = dev.decode() if isinstance(dev, bytes) else dev
    print(f"device: {dev}; numba.cuda: {getattr(cuda, 'implementation', 'built-in')}; minireg {minireg.__version__}; "
          f"MINIREG_CUDA_TPB={os.environ.get('MINIREG_CUDA_TPB', '256 (default)')}")
    peaks = device_peaks(args.quick)
    print("measured peaks: " + ", ".join(f"{k} {v:,.1f}" for k, v in peaks.items()))

    if wls:
        run_workloads(wls, peaks, target, repeats)
    if not args.no_sweep:
        lin = [sweep_linear(n) for n in lin_sizes]
        mlp = [sweep_mlp(w) for w in mlp_sizes]
        if SIM:
            lin = [replace(w, max_epochs=2) for w in lin]
            mlp = [replace(w, n=16, max_epochs=2) for w in mlp]
        run_sweep("linear model, d=10, full batch, SGD, float32: rows N", lin, lin_sizes, peaks, target, repeats)
        run_sweep("MLP 20-w-w-1 relu, N=4096 full batch, Adam, float32: width w", mlp, mlp_sizes, peaks, target,
                  repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
