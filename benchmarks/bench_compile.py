"""How long a process's first run takes to compile minireg's kernels, with no on-disk cache.

    python benchmarks/bench_compile.py            # a float64 linear run, an MLP run, a float32 run
    python benchmarks/bench_compile.py --repeats 2
    python benchmarks/bench_compile.py --only "linear float64 large"

Each case runs in a fresh subprocess with an empty NUMBA_CACHE_DIR (so nothing is loaded from
disk) and reports train()'s own ``compile_seconds`` next to the wall time of the first call and
of a second, identical call in the same process (which compiles nothing). Then the same again
with the cache the first subprocess filled: the cost of a later process's first run.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
t0 = time.perf_counter()
import numpy as np, minireg
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
kw = {kw}
n, d = kw.pop("shape", (200, 3))
X = rng.standard_normal((n, d)); y = X @ np.ones(d)
t0 = time.perf_counter(); r = minireg.train(X, y, epochs=2, **kw); first = time.perf_counter() - t0
t0 = time.perf_counter(); minireg.train(X, y, epochs=2, **kw); second = time.perf_counter() - t0
print(f"RESULT {{t_import:.2f}} {{first:.2f}} {{r.compile_seconds:.2f}} {{second:.3f}}")
"""

CASES = {
    "linear float64": "dict()",
    "mlp float64 adam": "dict(model='mlp', hidden=(8,), optimizer='adam', batch_size=32)",
    "linear float32": "dict(dtype='float32')",
    # 2**20 values or more: the one-pass check of X, and the loop with the large-batch path
    "linear float64 large": "dict(shape=(20000, 60))",
    # W6's network on full batches of 20,000 rows: the MLP tiles of the large path (kernels/gemm.py)
    "mlp float32 large": "dict(shape=(20000, 20), model='mlp', hidden=(64, 64), optimizer='adam', dtype='float32')",
}


def run(kw, cache):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "MINIREG_NUMBA_CACHE": "1"}
    env.pop("NUMBA_DISABLE_JIT", None)
    p = subprocess.run([sys.executable, "-c", SCRIPT.format(repo=str(REPO), kw=kw)], env=env,
                       capture_output=True, text=True, timeout=900)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    if p.returncode != 0 or not line:
        raise RuntimeError(p.stdout[-2000:] + p.stderr[-2000:])
    return [float(v) for v in line[0].split()[1:]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", help="comma-separated case names")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(CASES)
    print("| case | cache | import s | first train() s | compile_seconds | second train() s |")
    print("|---|---|---|---|---|---|")
    for name in names:
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                for label in ("empty", "filled"):
                    imp, first, comp, second = run(CASES[name], cache)
                    print(f"| {name} | {label} | {imp:.2f} | {first:.2f} | {comp:.2f} | {second:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
