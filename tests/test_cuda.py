"""The CUDA backend (device="cuda").

numba runs CUDA kernels without a GPU only in its simulator, which must be switched on
(NUMBA_ENABLE_CUDASIM=1) before numba is first imported: it cannot share a process with the
compiled CPU tests. So the step-by-step comparisons with the CPU backend live in
tests/cuda_sim_cases.py (not collected by default) and run here in subprocesses, two at a time
(one per core), with MINIREG_CUDA_TPB=4 so that a few rows already span several blocks, tiles and
row segments. The same processes record every kernel signature they launch; a third process,
without the simulator, compiles exactly those for a real GPU (PTX needs no GPU, only NVVM), which
checks the numba.cuda typing and lowering that the simulator (plain Python) never exercises.
Where a CUDA GPU is present, the same cases also run on it, without the simulator.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "cuda_sim_cases.py"
# the divergence runs take as long as all the others together: one process each
SPLITS = ("divergence", "not divergence")
# OpenBLAS/OpenMP worker threads spin on 2 cores and starve the simulator's Python threads (9x slower)
QUIET_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_ENABLE_CUDASIM", "MINIREG_CUDA_TPB", "MINIREG_CUDA_CHECK_EVERY",
                        "MINIREG_CUDA_ONE_LAUNCH", "MINIREG_CUDA_ONE_LAUNCH_WORK")}
    env.update(QUIET_THREADS)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def simulator_runs(tmp_path_factory):
    """Run tests/cuda_sim_cases.py in the simulator, split over two concurrent processes;
    returns [(selection, returncode, output)] and the signature files they wrote."""
    tmp = tmp_path_factory.mktemp("cuda_sim")
    procs, sigs = [], []
    for i, sel in enumerate(SPLITS):
        sig = tmp / f"signatures{i}.json"
        sigs.append(sig)
        env = _clean_env(NUMBA_ENABLE_CUDASIM="1", MINIREG_CUDA_TPB="4", MINIREG_CUDA_SIGNATURES=str(sig))
        log = open(tmp / f"log{i}.txt", "w+")
        procs.append((sel, log, subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", sel, str(CASES)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)))
    runs = []
    for sel, log, p in procs:
        try:
            rc = p.wait(timeout=900)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "timeout"
        log.seek(0)
        runs.append((sel, rc, log.read()))
        log.close()
    return runs, sigs


def test_cuda_backend_matches_cpu_step_by_step_in_the_simulator(simulator_runs):
    runs, _ = simulator_runs
    for sel, rc, out in runs:
        assert rc == 0, f"simulator tests (-k {sel!r}) failed (exit {rc}):\n{out[-20000:]}"
        assert " passed" in out and "no tests ran" not in out, out[-5000:]


_COMPILE = r"""
import base64, json, pickle, sys, types
import numba.cuda.dispatcher as dispatcher
from numba.core import types as nbtypes
from numba import cuda
# device functions ask the driver for the compute capability; there is no driver here
dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(8, 0))
import importlib
done = set()
for path in sys.argv[1:]:
    for module, name, sig in json.load(open(path)):
        argtypes = pickle.loads(base64.b64decode(sig))
        if (module, name, argtypes) in done:  # equal types may pickle to different bytes
            continue
        done.add((module, name, argtypes))
        mod = importlib.import_module(module)
        if ":" in name:  # STEP:<optim module>, KERNELS:<optim module>: a kernel per optimizer
            table, key = name.split(":")
            kern = getattr(mod, table)[importlib.import_module(key)]
        else:
            kern = getattr(mod, name)
        try:
            ptx, _ = cuda.compile_ptx(kern.py_func, nbtypes.void(*argtypes), cc=(8, 0))
        except Exception as e:
            print(f"FAILED {module}.{name}{argtypes}: {type(e).__name__}: {e}")
            sys.exit(1)
def label(name):
    if ":" not in name:
        return name
    table, key = name.split(":")
    return key.rsplit(".", 1)[-1] + ("_step" if table == "STEP" else "_runs")


print("compiled", len(done), "kernel signatures:", sorted({label(n) for _, n, _ in done}))
"""


def _nvvm_available():
    probe = ("from numba.cuda.cudadrv import nvvm; nvvm.NVVM(); "
             "from numba import cuda; cuda.compile_ptx(lambda a: None, 'void(float64[::1])', cc=(8, 0))")
    r = subprocess.run([sys.executable, "-c", probe], env=_clean_env(), capture_output=True, text=True,
                       timeout=300)
    return r.returncode == 0


def test_every_launched_kernel_compiles_for_a_real_gpu(simulator_runs):
    runs, sigs = simulator_runs
    if any(rc != 0 for _, rc, _ in runs):
        pytest.skip("the simulator runs failed (see the test above)")
    if not _nvvm_available():
        pytest.skip("NVVM (CUDA toolkit's libnvvm) not found: cannot compile CUDA kernels to PTX here")
    found = [str(s) for s in sigs if s.exists()]
    assert found, "the simulator runs wrote no kernel signatures"
    n = sum(len(json.load(open(s))) for s in found)
    assert n >= 20, f"only {n} kernel signatures recorded"
    r = subprocess.run([sys.executable, "-c", _COMPILE, *found], cwd=ROOT, env=_clean_env(),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-10000:] + r.stderr[-10000:]
    for kernel in ("forward_hidden", "forward_out", "grad_weights", "grad_one_output", "reduce_segments", "delta_prev",
                   "sgd_step", "rmsprop_step", "adam_step", "adagrad_step", "loss_and_clip", "mean_loss",
                   "record_scalars", "record_vectors", "sgd_runs", "rmsprop_runs", "adam_runs", "adagrad_runs"):
        assert kernel in r.stdout, f"{kernel} was never launched by the simulator tests: {r.stdout}"


def _gpu_available():
    r = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"], cwd=ROOT,
                       env=_clean_env(), capture_output=True, text=True, timeout=300)
    return r.stdout.strip() == "True"


@pytest.mark.parametrize("tpb", ["256", "4"])
def test_cuda_backend_matches_cpu_step_by_step_on_a_real_gpu(tpb):
    """The simulator's cases on the GPU itself (real compiled kernels, NVVM's FMA contraction, real
    concurrency), at the default launch geometry and at 4 threads per block; skipped without a GPU
    (CI has none)."""
    if not _gpu_available():
        pytest.skip("no CUDA GPU here (the simulator test above covers the kernels' logic)")
    env = _clean_env() if tpb == "256" else _clean_env(MINIREG_CUDA_TPB=tpb)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=1800)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"GPU run (MINIREG_CUDA_TPB={tpb}) failed (exit {r.returncode}):\n{out[-20000:]}"
    assert " passed" in out and " skipped" not in out, out[-5000:]


def _run_without_simulator(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_clean_env(), capture_output=True,
                          text=True, timeout=300)


_TRAIN_ON_CUDA = (
    "import minireg\n"
    "from minireg import datasets\n"
    "X, y = datasets.linear_1d()\n"
    "try:\n"
    "    minireg.train(X, y, device='cuda')\n"
    "except ValueError as e:\n"
    "    print('VALUEERROR', e)\n"
)


def _cuda_train_error(prelude=""):
    """The ValueError that train(device='cuda') raises in a fresh process without the simulator,
    after running ``prelude`` there."""
    r = _run_without_simulator(prelude + _TRAIN_ON_CUDA)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("VALUEERROR"), r.stdout + r.stderr
    return r.stdout


def test_importing_minireg_does_not_import_numba_cuda():
    r = _run_without_simulator("import sys, minireg; print('numba.cuda' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_cuda_without_a_gpu_or_the_simulator_says_what_to_do():
    r = _run_without_simulator("from numba import cuda; print(cuda.is_available())")
    if r.stdout.strip() == "True":
        pytest.skip("a CUDA GPU is available here")
    msg = _cuda_train_error()
    for needle in ("GPU", "NUMBA_ENABLE_CUDASIM=1", 'pip install -e ".[cuda]"', "numba-cuda", "device='cpu'"):
        assert needle in msg, f"{needle!r} missing from: {msg}"


def test_a_cuda_target_that_cannot_load_with_this_numpy_says_what_to_do():
    # numba-cuda 0.30.4 with NumPy 2.5 (seen on a GPU machine): the target's first compile imports
    # numba.cuda.cudaimpl, which fails on np.row_stack; train() must say so before compiling
    msg = _cuda_train_error(
        "import builtins\n"
        "from numba import cuda\n"
        "cuda.is_available = lambda: True\n"
        "real_import = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name == 'numba.cuda.cudaimpl':\n"
        "        raise AttributeError(\"module 'numpy' has no attribute 'row_stack'\")\n"
        "    return real_import(name, *a, **k)\n"
        "builtins.__import__ = fake\n")
    for needle in ("row_stack", "NumPy", 'pip install "numpy<2.5"', "numba-cuda", "device='cpu'"):
        assert needle in msg, f"{needle!r} missing from: {msg}"


def test_threads_per_block_beyond_what_the_kernels_fit_is_refused():
    for bad in ("512", "96", "0"):
        r = subprocess.run([sys.executable, "-c", "import minireg.cuda._config"], cwd=ROOT,
                           env=_clean_env(MINIREG_CUDA_TPB=bad), capture_output=True, text=True, timeout=300)
        assert r.returncode != 0 and "MINIREG_CUDA_TPB" in r.stderr and "between 1 and 256" in r.stderr, r.stderr


def test_a_bad_one_launch_setting_is_refused_before_any_work():
    for env, needle in ((dict(MINIREG_CUDA_ONE_LAUNCH="sometimes"), "must be one of auto, always, never"),
                        (dict(MINIREG_CUDA_ONE_LAUNCH_WORK="lots"), "MINIREG_CUDA_ONE_LAUNCH_WORK='lots'")):
        r = subprocess.run([sys.executable, "-c", _TRAIN_ON_CUDA], cwd=ROOT,
                           env=_clean_env(NUMBA_ENABLE_CUDASIM="1", **env), capture_output=True, text=True, timeout=300)
        assert r.stdout.startswith("VALUEERROR") and needle in r.stdout, r.stdout + r.stderr


def test_unknown_device_is_refused():
    import minireg
    from minireg import datasets
    X, y = datasets.linear_1d()
    with pytest.raises(ValueError, match="device"):
        minireg.train(X, y, device="gpu")
