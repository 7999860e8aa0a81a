"""Per-step cost of minireg's compiled training loop next to PyTorch, NumPy and scikit-learn.

Every competitor trains the same workload in this one process; the table reports µs per
optimizer step (best of 3 repeats, wall time around the whole training call divided by the
number of steps) and ratios against minireg. Workloads linear-1M-full and mlp64-200k-full are also compared with a
"floor": one pass over X at the measured memory-copy bandwidth, and the step's FLOPs at the
measured matmul throughput.

    python benchmarks/bench_engine.py                      # full run (a few minutes on 2 cores)
    python benchmarks/bench_engine.py --quick --only linear-full,mlp64-batch32
    python benchmarks/bench_engine.py --markdown benchmarks/RESULTS.md   # also append markdown

The number of epochs per measurement is calibrated per competitor (timeit-style autorange) so
that one measurement takes about TARGET_S seconds (--quick: a fifth of that), within each
workload's [min_epochs, max_epochs] (--quick: min_epochs is 1). The slow linear-1M-full and
mlp64-200k-full runs are bounded below by min_epochs, so they dominate the run time.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:  # an installed minireg or one on PYTHONPATH wins; otherwise the checkout this file lives in
    import minireg
except ImportError:
    sys.path.insert(0, str(REPO))
    import minireg

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
try:
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDRegressor
    from sklearn.neural_network import MLPRegressor
except ImportError:
    sklearn = None
try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None

TARGET_S = 0.5          # wall time of one timed measurement
REPEATS = 3             # timed repeats per measurement; the minimum is reported
TRACE_BUDGET = 2**32    # traced runs record every step; allow up to 4 GiB of trace
COMPETITORS = ("minireg", "minireg+trace", "torch", "numpy", "sklearn")


# --------------------------------------------------------------------------------------------
# workloads

@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    n: int
    d: int
    hidden: tuple = ()          # () is the linear model
    activation: str = "relu"
    optimizer: str = "sgd"
    lr: float = 0.01
    batch_size: int | None = None  # None: full batch
    dtype: str = "float64"
    min_epochs: int = 1
    max_epochs: int = 10**6

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
    def steps_per_epoch(self):
        return -(-self.n // self.batch)

    @property
    def shuffled(self):
        return self.batch < self.n

    def flops_per_step(self):
        """Multiply-adds ×2 of forward (A·W), weight gradients (Aᵀ·Δ) and input deltas (Δ·Wᵀ)."""
        pairs = [self.sizes[k] * self.sizes[k + 1] for k in range(len(self.sizes) - 1)]
        return 2 * self.batch * (2 * sum(pairs) + sum(pairs[1:]))


WORKLOADS = (
    Workload("linear-full", "linear N=100 d=1 full-batch SGD f64", 100, 1, lr=0.1),
    Workload("mlp-relu-full", "MLP 1-10-1 relu Adam N=100 full-batch f64", 100, 1, (10,), "relu", "adam", 0.01),
    Workload("mlp-tanh-full", "MLP 1-10-1 tanh Adam N=100 full-batch f64", 100, 1, (10,), "tanh", "adam", 0.01),
    Workload("linear-batch32", "linear N=10k d=10 SGD batch 32 f64", 10_000, 10, lr=0.01, batch_size=32),
    Workload("linear-batch1", "linear N=10k d=10 SGD batch 1 f64", 10_000, 10, lr=0.01, batch_size=1),
    Workload("mlp64-batch32", "MLP 10-64-64-1 relu Adam batch 32 N=10k f64", 10_000, 10, (64, 64), "relu", "adam",
             1e-3, batch_size=32),
    Workload("linear-1M-full", "linear N=1M d=100 full-batch SGD f32", 1_000_000, 100, lr=0.1, dtype="float32",
             min_epochs=3, max_epochs=20),
    Workload("mlp64-200k-full", "MLP 20-64-64-1 relu Adam N=200k full-batch f32", 200_000, 20, (64, 64), "relu",
             "adam", 1e-3, dtype="float32", min_epochs=2, max_epochs=20),
)
FLOOR_WORKLOADS = ("linear-1M-full", "mlp64-200k-full")


def make_data(wl, seed=0):
    """Standard-normal features; a noisy linear target, or a smooth nonlinear one for MLPs."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((wl.n, wl.d), dtype=np.float32).astype(wl.dtype, copy=False)
    w = rng.standard_normal(wl.d).astype(wl.dtype)
    if wl.hidden:
        y = np.sin(X @ w / np.sqrt(wl.d)) + 0.1 * X[:, 0] ** 2
    else:
        y = X @ w + 1.0
    y = y + 0.1 * rng.standard_normal(wl.n).astype(wl.dtype)
    return np.ascontiguousarray(X), y.astype(wl.dtype)


# --------------------------------------------------------------------------------------------
# competitors: each returns run(epochs) -> number of optimizer steps done, or None if n/a

def minireg_runner(wl, X, y, trace):
    def run(epochs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # divergence is reported below
            r = minireg.train(X, y, model=wl.model, hidden=wl.hidden, activation=wl.activation,
                              optimizer=wl.optimizer, lr=wl.lr, epochs=epochs, batch_size=wl.batch_size,
                              dtype=wl.dtype, trace=trace, trace_budget=TRACE_BUDGET)
        if r.diverged:
            print(f"  ! minireg diverged on {wl.key} at step {r.diverged_at}", file=sys.stderr)
        return r.n_steps
    return run


def torch_runner(wl, X, y):
    if torch is None:
        return None
    dtype = getattr(torch, wl.dtype)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).reshape(-1, 1)
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[wl.activation]
    opt_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[wl.optimizer]

    def run(epochs):
        torch.manual_seed(0)
        layers = []
        for k in range(len(wl.sizes) - 1):
            layers.append(torch.nn.Linear(wl.sizes[k], wl.sizes[k + 1], dtype=dtype))
            if k < len(wl.sizes) - 2:
                layers.append(act())
        model = torch.nn.Sequential(*layers)
        opt = opt_class(model.parameters(), lr=wl.lr)
        n, bs, steps = wl.n, wl.batch, 0
        for _ in range(epochs):
            if wl.shuffled:
                perm = torch.randperm(n)
                Xe, ye = Xt[perm], yt[perm]
            else:
                Xe, ye = Xt, yt
            for i in range(0, n, bs):
                opt.zero_grad()
                loss = F.mse_loss(model(Xe[i:i + bs]), ye[i:i + bs])
                loss.backward()
                opt.step()
                steps += 1
        return steps
    return run


def numpy_runner(wl, X, y):
    """minireg.reference: the same training in plain NumPy (torch init, torch's SGD/Adam, the same
    batches), the readable twin of the compiled loop that tests/test_reference.py checks."""
    from minireg.reference import train_reference

    def run(epochs):
        return train_reference(X, y, model=wl.model, hidden=wl.hidden, activation=wl.activation,
                               optimizer=wl.optimizer, lr=wl.lr, epochs=epochs, batch_size=wl.batch_size,
                               dtype=wl.dtype).n_steps
    return run


def sklearn_runner(wl, X, y):
    """MLPRegressor for MLPs; SGDRegressor for batch-1 linear SGD; n/a otherwise."""
    if sklearn is None:
        return None
    if wl.hidden:
        def fit(epochs):
            est = MLPRegressor(hidden_layer_sizes=wl.hidden, activation=wl.activation,
                               solver="adam" if wl.optimizer == "adam" else "sgd", alpha=0.0,
                               batch_size=wl.batch, learning_rate_init=wl.lr, momentum=0.0,
                               max_iter=epochs, shuffle=wl.shuffled, tol=0.0, n_iter_no_change=10**9,
                               random_state=0)
            return est.fit(X, y).n_iter_ * wl.steps_per_epoch
    elif wl.batch == 1 and wl.optimizer == "sgd":
        def fit(epochs):
            est = SGDRegressor(loss="squared_error", penalty=None, alpha=0.0, learning_rate="constant",
                               eta0=wl.lr, max_iter=epochs, tol=None, shuffle=True, random_state=0)
            return est.fit(X, y).n_iter_ * wl.n
    else:
        return None

    def run(epochs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fit(epochs)
    return run


def runners(wl, X, y):
    return {
        "minireg": minireg_runner(wl, X, y, trace=False),
        "minireg+trace": minireg_runner(wl, X, y, trace=True),
        "torch": torch_runner(wl, X, y),
        "numpy": numpy_runner(wl, X, y),
        "sklearn": sklearn_runner(wl, X, y),
    }


# --------------------------------------------------------------------------------------------
# timing

@dataclass
class Timing:
    us_per_step: float
    steps: int


def time_once(run, epochs):
    t0 = time.perf_counter()
    steps = run(epochs)
    return time.perf_counter() - t0, steps


def measure(run, wl, target_s, min_epochs):
    """One untimed warm-up epoch; autorange the epochs (×10 until a run takes ≥ target/5); then the
    best of REPEATS runs of the calibrated length (the last autorange run counts if it has that length)."""
    run(1)
    epochs = min_epochs
    while True:
        seconds, steps = time_once(run, epochs)
        if seconds >= target_s / 5 or epochs >= wl.max_epochs:
            break
        epochs = min(wl.max_epochs, epochs * 10)
    calibrated = max(min_epochs, min(wl.max_epochs, round(epochs * target_s / seconds)))
    samples = [(seconds, steps)] if calibrated == epochs else []
    samples += [time_once(run, calibrated) for _ in range(REPEATS - len(samples))]
    best, steps = min(samples)
    return Timing(best / steps * 1e6, steps)


def warm_up_minireg():
    """Compile (or load from the on-disk cache) the kernels for both dtypes before any timing."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 2)), rng.standard_normal(16)
    for dtype in ("float64", "float32"):
        for trace in (False, True):
            minireg.train(X, y, model="mlp", hidden=(3,), epochs=2, batch_size=4, dtype=dtype, trace=trace)


def memory_bandwidth(nbytes=2**29, repeats=5):
    """Bytes moved per second (read + write, STREAM-copy convention) by one big numpy copy."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    best = min(time_once(lambda _: np.copyto(dst, src), 0)[0] for _ in range(repeats))
    return 2 * nbytes / best


def matmul_flops(n=2048, repeats=5):
    """FLOP/s of np.dot on n×n float32 matrices (with the BLAS threads currently allowed)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    np.dot(a, a)
    best = min(time_once(lambda _: np.dot(a, a), 0)[0] for _ in range(repeats))
    return 2 * n**3 / best


# --------------------------------------------------------------------------------------------
# report

def environment_lines():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = "n/a"
    if threadpoolctl is not None:
        blas = ", ".join(dict.fromkeys(f"{i['internal_api']} {i['num_threads']} thr"
                                       for i in threadpoolctl.threadpool_info()))
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}",
                f"numba {__import__('numba').__version__}",
                f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else "torch n/a",
                f"sklearn {sklearn.__version__}" if sklearn else "sklearn n/a"]
    src = Path(minireg.__file__).resolve().parent

    def git(*a):
        return subprocess.run(["git", *a], cwd=src, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        commit += " (uncommitted changes in minireg/)" if git("status", "--porcelain", "--", ".") else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "not a git checkout"
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"minireg: {src} @ {commit}",
        f"machine: {cpu}, nproc={os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), {platform.platform()}",
        "versions: " + ", ".join(versions),
        f"threads: minireg 1 (numba njit, no parallel); BLAS: {blas}; "
        f"MINIREG_FASTMATH={os.environ.get('MINIREG_FASTMATH', '0')}",
    ]


NOTES = [
    "µs/step: best of 3 wall-clock runs of the whole training call ÷ optimizer steps; ratio columns "
    "are competitor ÷ minireg (> 1: minireg is faster); trace cost = traced ÷ untraced minireg.",
    "minireg's call also validates and copies X/y, initialises, allocates, and computes the full-set "
    "loss after every epoch (minibatch runs) or once at the end (full batch); the other loops only train.",
    "torch: manual loop (zero_grad, forward, mse_loss, backward, step), per-epoch randperm gather then "
    "slicing; numpy: minireg.reference, the same training in plain NumPy (torch init, torch SGD/Adam formulas).",
    "sklearn semantics differ: MLPRegressor minimises ½·MSE with Glorot init (per step = one "
    "minibatch update); SGDRegressor(squared_error) minimises ½·(y−p)² per sample with its own "
    "intercept update (linear-batch1 only). n/a: no equivalent estimator.",
    "floor (the two large workloads): max(one pass over X at the copy bandwidth, FLOPs/step at the better measured "
    "matmul FLOP/s); % of floor = floor ÷ measured µs/step. minireg is single-threaded; the floor is not.",
]


def fmt_us(t):
    if t is None:
        return "n/a"
    if isinstance(t, str):
        return t
    return f"{t.us_per_step:.3g}" if t.us_per_step < 100 else f"{t.us_per_step:,.0f}"


def ratio(a, b):
    return f"{a.us_per_step / b.us_per_step:.2f}x" if isinstance(a, Timing) and isinstance(b, Timing) else "n/a"


def main_rows(results):
    head = ["W", "workload", "minireg µs/step", "+trace µs/step", "trace cost", "torch µs/step",
            "numpy µs/step", "sklearn µs/step", "torch/minireg", "numpy/minireg", "sklearn/minireg"]
    rows = []
    for wl, res in results:
        m = res["minireg"]
        rows.append([wl.key, wl.label, *(fmt_us(res[c]) for c in COMPETITORS[:2]), ratio(res["minireg+trace"], m),
                     *(fmt_us(res[c]) for c in COMPETITORS[2:]),
                     *(ratio(res[c], m) for c in COMPETITORS[2:])])
    return head, rows


def steps_rows(results):
    head = ["W", *(f"{c} steps" for c in COMPETITORS)]
    return head, [[wl.key, *(str(res[c].steps) if isinstance(res[c], Timing) else "-" for c in COMPETITORS)]
                  for wl, res in results]


def floor_rows(results, bandwidth, flops):
    head = ["W", "X bytes/step", "FLOP/step", "memory floor µs", "compute floor µs",
            *(f"{c} % of floor" for c in COMPETITORS[:4])]
    rows = []
    for wl, res in results:
        if wl.key not in FLOOR_WORKLOADS:
            continue
        xbytes = wl.n * wl.d * np.dtype(wl.dtype).itemsize
        mem_us, cpu_us = xbytes / bandwidth * 1e6, wl.flops_per_step() / flops * 1e6
        floor = max(mem_us, cpu_us)
        rows.append([wl.key, f"{xbytes / 1e6:.0f} MB", f"{wl.flops_per_step() / 1e9:.2f} G",
                     f"{mem_us:,.0f}", f"{cpu_us:,.0f}",
                     *(f"{100 * floor / res[c].us_per_step:.1f}%" if isinstance(res[c], Timing) else "n/a"
                       for c in COMPETITORS[:4])])
    return head, rows


def text_table(head, rows):
    """Fixed-width columns: the first two left-aligned, the numbers right-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


def markdown_table(head, rows):
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
                      *("| " + " | ".join(r) + " |" for r in rows)])


def report(results, env, bandwidth, flops_all, flops_1t, quick):
    flops = max(flops_all, flops_1t or 0)  # the floor uses the better of the two
    extra = [f"copy bandwidth (1 thread, read+write): {bandwidth / 1e9:.1f} GB/s; float32 matmul: "
             f"{flops_all / 1e9:.0f} GFLOP/s (default threads)"
             + (f", {flops_1t / 1e9:.0f} GFLOP/s (1 thread)" if flops_1t else "")
             + (" [--quick]" if quick else "")]
    tables = [("per-step time", main_rows(results)), ("steps timed per repeat", steps_rows(results))]
    if any(wl.key in FLOOR_WORKLOADS for wl, _ in results):
        tables.append(("floor (large workloads)", floor_rows(results, bandwidth, flops)))
    text = "\n".join(env + extra) + "\n"
    md = ("\n## bench_engine " + env[0].split(": ", 1)[1] + "\n\n"
          + "\n".join(f"- {line}" for line in env + extra) + "\n")
    for title, (head, rows) in tables:
        text += f"\n{title}:\n{text_table(head, rows)}\n"
        md += f"\n**{title}**\n\n{markdown_table(head, rows)}\n"
    text += "\nnotes:\n" + "\n".join(f"- {n}" for n in NOTES) + "\n"
    md += "\nNotes:\n\n" + "\n".join(f"- {n}" for n in NOTES) + "\n"
    return text, md


# --------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 5x fewer steps per measurement")
    ap.add_argument("--only", help="comma-separated workload keys, e.g. linear-full,mlp64-batch32")
    ap.add_argument("--markdown", metavar="FILE", help="append the results as markdown to FILE")
    args = ap.parse_args(argv)

    selected = WORKLOADS
    if args.only:
        keys = {k.strip() for k in args.only.split(",") if k.strip()}
        selected = [wl for wl in WORKLOADS if wl.key in keys]
        unknown = keys - {wl.key for wl in WORKLOADS}
        if unknown or not selected:
            ap.error(f"unknown workload(s) {sorted(unknown)}; choose from {[wl.key for wl in WORKLOADS]}")
    target = TARGET_S / 5 if args.quick else TARGET_S

    env = environment_lines()
    warm_up_minireg()
    bandwidth, flops_all = memory_bandwidth(), matmul_flops()
    flops_1t = None
    if threadpoolctl is not None:
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            flops_1t = matmul_flops()

    results = []
    for wl in selected:
        print(f"{wl.key}: {wl.label}", file=sys.stderr, flush=True)
        X, y = make_data(wl)
        res = {}
        for name, run in runners(wl, X, y).items():
            if run is None:
                res[name] = None
                continue
            try:
                res[name] = measure(run, wl, target, 1 if args.quick else wl.min_epochs)
                print(f"  {name:14s} {res[name].us_per_step:12.3f} µs/step ({res[name].steps} steps)",
                      file=sys.stderr, flush=True)
            except Exception as exc:  # one failing competitor must not lose the table
                res[name] = "error"
                print(f"  {name:14s} ERROR {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        results.append((wl, res))
        del X, y

    text, md = report(results, env, bandwidth, flops_all, flops_1t, args.quick)
    print("\n" + text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(md)


if __name__ == "__main__":
    main()
