"""Instructions per optimizer step of minireg's CPU loop, counted by valgrind's callgrind.

    python benchmarks/count_instructions.py              # linear-full, mlp-relu-full, linear-batch1, mlp64-batch32
    python benchmarks/count_instructions.py --only mlp-relu-full
    python benchmarks/count_instructions.py --trace      # the same runs with trace=True
    python benchmarks/count_instructions.py --only linear-100k-full,mlp64-20k-full --trace norms
                                                         # what trace="norms" adds to a large step

Wall-clock timings on a shared VM move by 20-50% between runs; instruction counts do not (the same
binary on the same input executes the same instructions), so this is the measure to compare two
versions of a kernel by. It does not see memory stalls, page faults or branch mispredictions: a
change that saves instructions is not always faster, which bench_engine.py then has to show.

Method: the workload runs under `valgrind --tool=callgrind` twice, for E1 and E2 epochs; the
difference of the two totals divided by the difference in steps is the count per step (Python's
start-up, imports, validation and the loading of the compiled kernels cancel out). The kernels are
compiled once outside valgrind first; under valgrind numba sees another CPU, so the first run
compiles a second cache entry, which the warm-up run under valgrind does.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (key, train() keyword arguments, rows, features, epochs E1, E2)
WORKLOADS = {
    "linear-full": (dict(optimizer="sgd", lr=0.1), 100, 1, 10, 20_010),
    "mlp-relu-full": (dict(model="mlp", hidden=(10,), activation="relu", optimizer="adam", lr=0.01), 100, 1, 10,
                      20_010),
    # from 2 epochs, so that with --trace both runs are big enough (> 4 MB of trace) to start the
    # page-faulting helper thread: its one-off start-up then cancels out too
    "linear-batch1": (dict(optimizer="sgd", lr=0.01, batch_size=1), 10_000, 10, 2, 4),
    "mlp64-batch32": (dict(model="mlp", hidden=(64, 64), activation="relu", optimizer="adam", lr=1e-3, batch_size=32),
           10_000, 10, 1, 3),
    # W5's and W6's large-batch steps (bench_scale.py) at a tenth of their rows, on one thread (the
    # same work as on two: the tiles do not depend on the threads): not in the default set
    "linear-100k-full": (dict(optimizer="sgd", lr=0.1, dtype="float32", threads=1), 100_000, 100, 2, 6),
    "mlp64-20k-full": (dict(model="mlp", hidden=(64, 64), activation="relu", optimizer="adam", lr=1e-3,
                            dtype="float32", threads=1), 20_000, 20, 2, 6),
}
DEFAULT = ("linear-full", "mlp-relu-full", "linear-batch1", "mlp64-batch32")

RUN = """
import sys
import numpy as np
sys.path.insert(0, {repo!r})
import minireg
kw, n, d, epochs = {kw!r}, {n}, {d}, int(sys.argv[1])
kw["trace"] = {trace!r}
rng = np.random.default_rng(0)
X = rng.standard_normal((n, d))
y = np.sin(X @ rng.standard_normal(d) / np.sqrt(d))
r = minireg.train(X, y, epochs=epochs, progress=False, **kw)
print("STEPS", r.n_steps)
"""


# Python randomizes str hashes per process, which moves the instructions of its start-up and
# imports by millions from run to run: linear-batch1's per-step figure moved by over 100 between two runs of
# one commit. A fixed seed gives every run the same start-up work.
# BLAS thread pools spin while they wait for work, and under valgrind how long they spin is up to
# its thread scheduling: linear-batch1's figure moved between 1,028 and 3,721 across runs of one commit with
# them. One thread each removes them.
_ENV = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1"}


def count(script, epochs):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c",
                            script, str(epochs)], capture_output=True, text=True, timeout=3600, env=_ENV)
    m = re.search(r"Collected : (\d+)", p.stderr)
    steps = re.search(r"STEPS (\d+)", p.stdout)
    if p.returncode != 0 or not m or not steps:
        raise RuntimeError(f"callgrind run failed (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return int(m.group(1)), int(steps.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help=f"comma-separated workload keys (default: {','.join(DEFAULT)}; also "
                    f"{','.join(k for k in WORKLOADS if k not in DEFAULT)})")
    ap.add_argument("--trace", nargs="?", const=True, default=False, choices=[True, "norms"],
                    help="count traced runs: trace=True, or with --trace norms trace='norms'")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("count_instructions.py needs valgrind (Debian: apt-get install valgrind)")
    keys = args.only.split(",") if args.only else list(DEFAULT)
    print(f"{'W':4s} {'instructions/step':>18s} {'steps':>10s}")
    for key in keys:
        kw, n, d, e1, e2 = WORKLOADS[key]
        script = RUN.format(repo=str(REPO), kw=kw, n=n, d=d, trace=args.trace)
        subprocess.run([sys.executable, "-c", script, "1"], check=True, capture_output=True)  # compile
        count(script, 1)  # numba under valgrind sees another CPU: compiles (and caches) once more
        i1, s1 = count(script, e1)
        i2, s2 = count(script, e2)
        print(f"{key:4s} {(i2 - i1) / (s2 - s1):18,.0f} {s2 - s1:10,d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
