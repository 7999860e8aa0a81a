"""The CUDA backend against the CPU backend, step by step, in numba's CUDA simulator.

Not collected by a plain ``pytest`` run (the file name does not match test_*.py): tests/test_cuda.py
runs it in its own processes with NUMBA_ENABLE_CUDASIM=1 (which must be set before numba is
imported, so it cannot share a process with the compiled CPU tests) and a tiny MINIREG_CUDA_TPB,
so that a handful of rows already spans several blocks, tiles and row segments. By hand:

    NUMBA_ENABLE_CUDASIM=1 MINIREG_CUDA_TPB=4 python -m pytest -q tests/cuda_sim_cases.py

Sizes are tiny: the simulator runs every CUDA thread as a Python thread.

On a machine with a CUDA GPU the same cases run on the GPU when the simulator is off
(tests/test_cuda.py does this too, when it finds a GPU):

    python -m pytest -q tests/cuda_sim_cases.py                       # default launch geometry
    MINIREG_CUDA_TPB=4 python -m pytest -q tests/cuda_sim_cases.py    # tiny blocks, as in the simulator
"""
import contextlib
import os
import sys
import warnings

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    # spinning BLAS worker threads starve the simulator's Python threads (9x slower on 2 cores);
    # effective only if numpy is not imported yet (tests/test_cuda.py sets them in the environment)
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import nonlinear_data  # noqa: E402

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
if not SIMULATOR:
    from numba import cuda as _cuda
    if not _cuda.is_available():
        pytest.skip("no CUDA GPU here: run with NUMBA_ENABLE_CUDASIM=1 (tests/test_cuda.py does)",
                    allow_module_level=True)



def _make_simulator_thread_safe():
    """Two races in numba's simulator (numba/cuda/simulator), harmless at the default 5 ms GIL
    switch interval only because they are then rare:
    - ``FakeCUDAShared.array`` looks up, then stores, the shared array of a call site without a
      lock: threads of the first block that get there together each get a private "shared" array;
    - ``swapped_cuda_module`` swaps a device function's ``cuda`` global for the fake module on
      every call and restores it on return, so a thread returning from a device function can undo
      the swap under another thread still inside it.
    Patched here with a lock and a per-module reference count (same behaviour otherwise)."""
    import threading
    from contextlib import contextmanager

    from numba.cuda.simulator import kernel as sim_kernel, kernelapi

    lock = threading.RLock()
    shared_array = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype):
        if shape == 0:
            return shared_array(self, shape, dtype)
        import traceback
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                from numba.np import numpy_support
                from numba.core import types
                dt = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype
                res = self._allocations[caller] = np.empty(shape, dt)
        return res

    kernelapi.FakeCUDAShared.array = array
    counts = {}

    @contextmanager
    def swapped(fn, fake):
        from numba import cuda
        globs = fn.__globals__
        key = id(globs)
        with lock:
            n, orig = counts.get(key, (0, None))
            if n == 0:
                orig = {k: v for k, v in globs.items() if v is cuda}
                globs.update({k: fake for k in orig})
            counts[key] = (n + 1, orig)
        try:
            yield
        finally:
            with lock:
                n, orig = counts[key]
                if n == 1:
                    globs.update(orig)
                    del counts[key]
                else:
                    counts[key] = (n - 1, orig)

    sim_kernel.swapped_cuda_module = swapped
    kernelapi.swapped_cuda_module = swapped

    # ``BlockManager.run`` polls every thread in a busy loop to find when all are at a barrier
    # (which also lets threads leave early); minireg's kernels reach every __syncthreads() with
    # the whole block (as CUDA requires), so a plain barrier does, without the polling: ~3x faster.
    BlockThread = sim_kernel.BlockThread

    def run(self, grid_point, *args):
        n = int(np.prod(self._block_dim))
        barrier = threading.Barrier(n, timeout=120)
        threads = []
        for block_point in np.ndindex(*self._block_dim):
            t = BlockThread(lambda: self._f(*args), self, grid_point, block_point, self._debug)
            t.syncthreads = barrier.wait
            threads.append(t)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for t in threads:
            if t.exception:
                barrier.abort()
                raise t.exception[0].with_traceback(t.exception[1])

    sim_kernel.BlockManager.run = run


if SIMULATOR:
    try:
        _make_simulator_thread_safe()
    except (ImportError, AttributeError) as e:  # another simulator layout: run it as it is
        warnings.warn(f"could not patch numba's CUDA simulator ({e}); its thread races may show up as flaky "
                      "failures", stacklevel=2)
    # The simulator's block manager busy-polls its threads; a short GIL switch interval lets the
    # simulated threads run instead of waiting out the default 5 ms slices (about 5x faster here).
    sys.setswitchinterval(1e-5)

import minireg  # noqa: E402
from minireg import datasets  # noqa: E402
from minireg.train import InterruptedWarning  # noqa: E402


def _record_kernel_signatures(path):
    """Write every (module, kernel, argument types) launched in this process to ``path`` (JSON) at
    exit, the types pickled: tests/test_cuda.py compiles exactly those for a real GPU
    (to PTX, which needs no GPU), catching what the simulator, which runs plain Python, cannot:
    code that numba.cuda does not type or lower."""
    import atexit
    import base64
    import json
    import pickle

    import numba
    from minireg.cuda import models, onelaunch, optimizers, reduce

    seen = {}

    def type_of(a):
        a = getattr(a, "_ary", a)  # the simulator's device arrays wrap a numpy array
        ty = numba.typeof(a)
        if isinstance(ty, numba.types.Array) and ty.layout == "C":
            ty = ty.copy(readonly=False)
        return ty

    class Recorder:
        def __init__(self, module, name, kern):
            self.module, self.name, self.kern = module, name, kern

        def __getitem__(self, config):
            launch = self.kern[config]

            def call(*args):
                # the argument types, pickled: Hyper and step-scalar tuples have no signature string
                # (kept once per distinct types: equal types can pickle to different bytes)
                argtypes = tuple(type_of(a) for a in args)
                key = (self.module, self.name, argtypes)
                if key not in seen:
                    seen[key] = base64.b64encode(pickle.dumps(argtypes)).decode()
                return launch(*args)
            return call

    for mod in (models, optimizers, reduce, onelaunch):
        for name, obj in list(vars(mod).items()):
            if type(obj).__name__ == "FakeCUDAKernel" and not obj._device:
                setattr(mod, name, Recorder(mod.__name__, name, obj))
    # one kernel per optimizer module: the step kernels and the one-launch kernels
    for mod, table in ((optimizers, "STEP"), (onelaunch, "KERNELS")):
        kernels = getattr(mod, table)
        for key, obj in list(kernels.items()):
            kernels[key] = Recorder(mod.__name__, f"{table}:{key.__name__}", obj)

    def dump():
        with open(path, "w") as f:
            json.dump(sorted((module, name, sig) for (module, name, _), sig in seen.items()), f, indent=0)
    atexit.register(dump)


if SIMULATOR and os.environ.get("MINIREG_CUDA_SIGNATURES"):
    _record_kernel_signatures(os.environ["MINIREG_CUDA_SIGNATURES"])

F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=2e-5, atol=2e-6)

OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", lr=0.05),
    "sgd_momentum": dict(optimizer="sgd", lr=0.05, momentum=0.9, dampening=0.1),
    "sgd_nesterov": dict(optimizer="sgd", lr=0.05, momentum=0.8, nesterov=True),
    "sgd_wd": dict(optimizer="sgd", lr=0.05, weight_decay=0.1),
    "rmsprop_centered": dict(optimizer="rmsprop", lr=0.01, centered=True),
    "rmsprop_momentum": dict(optimizer="rmsprop", lr=0.01, momentum=0.5, weight_decay=0.01),
    "adam": dict(optimizer="adam", lr=0.02),
    "adam_amsgrad": dict(optimizer="adam", lr=0.02, amsgrad=True, weight_decay=0.05),
    "adamw": dict(optimizer="adamw", lr=0.02, weight_decay=0.1),
    "adagrad": dict(optimizer="adagrad", lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1),
    # the other frameworks' rules (flavor=): scikit-learn's L2 alpha runs on the CPU only, hence l2=0
    "keras_rmsprop": dict(optimizer="rmsprop", flavor="keras", lr=0.01, centered=True, momentum=0.5),
    "keras_adamw": dict(optimizer="adamw", flavor="keras", lr=0.02, amsgrad=True),
    "sklearn_sgd": dict(optimizer="sgd", flavor="sklearn", lr=0.05, l2=0.0),
}
LOSSES = {"mse": dict(loss="mse"), "huber": dict(loss="huber", delta=0.5), "mae": dict(loss="mae")}


def _close(got, want, tol, what):
    np.testing.assert_allclose(got, want, err_msg=what, **tol)


def assert_same_run(rc, rg, tol=F64):
    """Every host-visible output of the CUDA run rg equals the CPU run rc (within tol)."""
    assert rg.config["device"] == "cuda" and rc.config["device"] == "cpu"
    assert rg.n_steps == rc.n_steps
    assert rg.diverged_at == rc.diverged_at
    assert rg.stopped_epoch == rc.stopped_epoch and rg.best_epoch == rc.best_epoch
    assert rg.theta.dtype == rc.theta.dtype
    _close(rg.theta, rc.theta, tol, "final params")
    assert set(rg.history) == set(rc.history)
    for k in rc.history:
        _close(rg.history[k], rc.history[k], tol, f"history[{k!r}]")
    if rc.trace is None:
        assert rg.trace is None
        return
    tc, tg = rc.trace, rg.trace
    assert len(tg) == len(tc)
    np.testing.assert_array_equal(np.asarray(tg.step), np.asarray(tc.step))
    np.testing.assert_array_equal(tg.epoch, tc.epoch)
    np.testing.assert_array_equal(tg.clipped, tc.clipped)
    for col in ("loss", "lr", "grad_norm", "update_norm", "param_norm"):
        _close(getattr(tg, col), getattr(tc, col), tol, f"trace.{col}")
    if tc.params is not None:
        for col in ("params", "grad", "update"):
            _close(getattr(tg, col), getattr(tc, col), tol, f"trace.{col}")
        assert set(tg.state) == set(tc.state)
        for name in tc.state:
            _close(tg.state[name], tc.state[name], tol, f"trace.state[{name!r}]")


# the two CUDA host drivers (minireg/cuda/loop.py, minireg/cuda/onelaunch.py), forced by
# onelaunch.ONE_LAUNCH, which MINIREG_CUDA_ONE_LAUNCH sets and each run reads
PATHS = {"multi-launch": "never", "one-launch": "always"}


@contextlib.contextmanager
def cuda_path(path):
    """Runs in this block take ``path`` ("multi-launch", "one-launch", or "auto": the size rule)."""
    from minireg.cuda import onelaunch
    before = onelaunch.ONE_LAUNCH
    onelaunch.ONE_LAUNCH = PATHS.get(path, path)
    try:
        yield
    finally:
        onelaunch.ONE_LAUNCH = before


def both(X, y, tol=F64, paths=tuple(PATHS), **kw):
    """The CPU run and the CUDA run on each of ``paths``, every output compared; returns the CPU run
    and the CUDA run of the first path."""
    kw.setdefault("trace", True)
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # divergence and overflow warnings
        rc = minireg.train(X, y, device="cpu", **kw)
        for path in paths:
            with cuda_path(path):
                rg = minireg.train(X, y, device="cuda", **kw)
            assert rg.config["cuda_path"] == path, rg.config["cuda_path_why"]
            assert_same_run(rc, rg, tol)
            runs.append(rg)
    return rc, runs[0]


# ------------------------------------------------------------------------------------------------
# every optimizer x every loss (linear model), every activation x every loss (2-hidden-layer MLP)

@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_linear_every_optimizer_and_loss(opt, loss):
    X, y = nonlinear_data(11, 3)
    # batch 4 over 11 rows: a partial last batch of 3; shuffled batches drawn on the host
    both(X, y, epochs=2, batch_size=4, shuffle=True, **OPTIMIZERS[opt], **LOSSES[loss])


_MLP_CASES = [(act, loss) for act in ("relu", "tanh", "sigmoid", "identity") for loss in LOSSES]


@pytest.mark.parametrize("act,loss", _MLP_CASES)
def test_mlp_every_activation_and_loss(act, loss):
    # the 12 cases cycle through the 9 optimizer settings, so each one also runs an MLP
    opt = list(OPTIMIZERS)[_MLP_CASES.index((act, loss)) % len(OPTIMIZERS)]
    X, y = nonlinear_data(7, 3)
    both(X, y, model="mlp", hidden=(5, 3), activation=act, epochs=2, batch_size=4, shuffle=True,
         **OPTIMIZERS[opt], **LOSSES[loss])


def test_layers_wider_than_a_block_tile():
    # d = 9 and widths 9 and 17 exceed a block's BT x BT outputs and grad_one_output's CW columns
    # (8 and 4 at MINIREG_CUDA_TPB=4): every kernel runs blocks at non-zero row/column offsets
    X, y = nonlinear_data(13, 9)
    both(X, y, model="mlp", hidden=(9, 17), activation="tanh", epochs=2, batch_size=6, optimizer="adam", lr=0.02,
         weight_decay=0.01)
    both(X, y, epochs=2, batch_size=6, optimizer="sgd", lr=0.05, momentum=0.9, l1=0.01)


# ------------------------------------------------------------------------------------------------
# batches, controls, schedules

def test_full_batch_rows_split_into_segments_with_l1_and_norm_clipping(monkeypatch):
    # 24 rows in one batch: the weight gradient is summed over row segments, then reduced
    from minireg.cuda import loop
    launches = []
    reduce_segments = loop.M.reduce_segments

    class Counting:
        def __getitem__(self, config):
            launches.append(config)
            return reduce_segments[config]

    monkeypatch.setattr(loop.M, "reduce_segments", Counting())
    X, y = nonlinear_data(24, 3)
    both(X, y, epochs=4, batch_size=None, optimizer="sgd", lr=0.1, l1=0.05, clip_grad_norm=0.5,
         schedule="step", step_size=2, gamma=0.5)
    from minireg.cuda._config import TILE
    if 24 > 4 * TILE:  # a segment is at least 4 row tiles: at the default geometry 24 rows are one
        assert launches  # the split path ran


def test_mlp_value_clipping_invscaling_and_trace_every():
    # batches of 12 and 8 rows: the output layer's weight gradient is split into row segments in
    # the first batch (not in the second), and the hidden layers span several row tiles
    X, y = nonlinear_data(20, 3)
    both(X, y, model="mlp", hidden=(4, 3), activation="tanh", epochs=3, batch_size=12, optimizer="sgd",
         lr=0.2, momentum=0.9, clip_grad_value=0.05, schedule="invscaling", power_t=0.5, trace_every=2)


def test_norms_trace_unshuffled_cosine_and_no_trace():
    X, y = nonlinear_data(10, 3)
    kw = dict(model="mlp", hidden=(3, 2), activation="relu", epochs=3, batch_size=4, shuffle=False,
              optimizer="rmsprop", lr=0.01, clip_grad_norm=0.1, schedule="cosine", T_max=3)
    both(X, y, trace="norms", **kw)
    both(X, y, trace=False, **kw)


def test_validation_early_stopping_and_plateau_run_one_epoch_per_call():
    from minireg.cuda import loop
    binds = []
    orig = loop.Context.bind

    def counting_bind(self, *a, **k):
        binds.append(1)
        return orig(self, *a, **k)

    X, y = nonlinear_data(16, 3)
    loop.Context.bind = counting_bind
    try:
        rc, rg = both(X, y, epochs=8, batch_size=5, optimizer="adam", lr=0.3, validation=0.25,
                      early_stopping=1, schedule="plateau", patience=0, factor=0.5, standardize=True)
    finally:
        loop.Context.bind = orig
    assert "val_loss" in rg.history
    assert len(binds) == 1  # the data went to the device once for the whole run of per-epoch calls
    assert rg.stopped_epoch is not None and rg.n_steps < 8 * 3


def test_step_lrs_one_lr_per_step():
    X, y = nonlinear_data(8, 3)
    both(X, y, epochs=2, batch_size=3, optimizer="adamw", lr=0.01, step_lrs=np.linspace(0.01, 0.1, 6))


# ------------------------------------------------------------------------------------------------
# float32 and divergence

def test_float32_runs_stay_float32():
    X, y = nonlinear_data(9, 3)
    rc, rg = both(X, y, tol=F32, dtype="float32", model="mlp", hidden=(4, 3), activation="sigmoid",
                  epochs=2, batch_size=4, optimizer="adam", lr=0.05, amsgrad=True)
    assert rg.theta.dtype == np.float32 and rg.trace.grad.dtype == np.float32
    both(X, y, tol=F32, dtype="float32", epochs=2, batch_size=4, optimizer="rmsprop", lr=0.01,
         loss="huber", clip_grad_norm=0.3)
    both(X, y, tol=F32, dtype="float32", epochs=2, batch_size=4, optimizer="sgd", lr=0.05, momentum=0.9,
         loss="mae", l1=0.01, clip_grad_value=0.1)


def test_divergence_stops_at_the_same_step(monkeypatch):
    # the seed case: SGD at lr=10 on linear_1d, batch 32 (4 steps per epoch) diverges at step 110
    X, y = datasets.linear_1d()
    rc, rg = both(X, y, optimizer="sgd", lr=10, batch_size=32, epochs=50)
    assert rg.diverged and rg.diverged_at == rc.diverged_at == 110
    assert not np.isfinite(rg.trace.loss[-1]) or not np.isfinite(rg.trace.params[-1] + rg.trace.update[-1]).all()
    assert np.isfinite(rg.trace.params[-1]).all()  # the parameters before the diverging step
    # read the flag every 7 steps instead of once per call (steps launched after the diverging one
    # were no-ops above; here the host stops launching mid-epoch)
    from minireg.cuda import loop
    monkeypatch.setattr(loop, "CHECK_EVERY", 7)
    with pytest.warns(minireg.DivergenceWarning), cuda_path("multi-launch"):
        r = minireg.train(X, y, optimizer="sgd", lr=10, batch_size=32, epochs=50, device="cuda")
    assert r.diverged_at == 110 and r.n_steps == 111
    np.testing.assert_allclose(r.theta, rc.theta, **F64)
    np.testing.assert_allclose(r.history["loss"], rc.history["loss"], **F64)


def test_divergence_on_a_step_that_is_not_recorded():
    # trace_every=7: the diverging step 110 is not a multiple, so its row is written after the fact
    X, y = datasets.linear_1d()
    for trace in ("norms", True):
        rc, rg = both(X, y, optimizer="sgd", lr=10, batch_size=32, epochs=50, trace=trace, trace_every=7)
        assert rg.diverged_at == 110 and int(rg.trace.step[-1]) == 110
    # a full-batch float32 run whose loss overflows: stops at the same step, no trace
    Xs, ys = nonlinear_data(6, 2)
    rc, rg = both(Xs * 1e3, ys * 1e3, tol=F32, dtype="float32", optimizer="sgd", lr=1.0, epochs=40,
                  trace=False)
    assert rg.diverged and rg.diverged_at == rc.diverged_at


# ------------------------------------------------------------------------------------------------
# the one-launch path (minireg/cuda/onelaunch.py): what only it has

class _Counting:
    """Counts the launches of a kernel (and passes them on)."""

    def __init__(self, kern):
        self.kern, self.configs = kern, []

    def __getitem__(self, config):
        self.configs.append(config)
        return self.kern[config]


def _count_one_launch_kernels(monkeypatch):
    from minireg import optim
    from minireg.cuda import onelaunch
    counters = {}
    for module in optim.MODULES:
        counters[module] = _Counting(onelaunch.KERNELS[module])
        monkeypatch.setitem(onelaunch.KERNELS, module, counters[module])
    return lambda: sum(len(c.configs) for c in counters.values()), counters


def test_one_launch_is_one_launch_per_call_and_chosen_by_size(monkeypatch):
    from minireg.cuda import onelaunch
    launches, _ = _count_one_launch_kernels(monkeypatch)
    X, y = nonlinear_data(10, 3)
    kw = dict(model="mlp", hidden=(4,), activation="relu", epochs=3, batch_size=5, optimizer="adam", lr=0.02,
              progress=False)
    rc, rg = both(X, y, paths=("one-launch",), **kw)
    assert launches() == 1  # 3 epochs x 2 batches, trace rows, epoch losses: one launch
    # auto: the size rule; over ONE_LAUNCH_WORK the multi-launch path runs, with the same numbers
    P = rg.config["n_params"]
    with cuda_path("auto"):
        small = minireg.train(X, y, device="cuda", trace=True, **kw)
        monkeypatch.setattr(onelaunch, "ONE_LAUNCH_WORK", 5 * P - 1)  # B·P = 5·P
        large = minireg.train(X, y, device="cuda", trace=True, **kw)
    assert small.config["cuda_path"] == "one-launch" and "shared memory" in small.config["cuda_path_why"]
    assert large.config["cuda_path"] == "multi-launch" and "ONE_LAUNCH_WORK" in large.config["cuda_path_why"]
    assert launches() == 2
    assert_same_run(rc, small)
    assert_same_run(rc, large)


def test_one_launch_working_set_over_the_shared_budget_goes_to_global_memory(monkeypatch):
    from minireg.cuda import onelaunch
    launches, counters = _count_one_launch_kernels(monkeypatch)
    monkeypatch.setattr(onelaunch, "SHARED_BYTES", 64)
    X, y = nonlinear_data(9, 3)
    rc, rg = both(X, y, paths=("one-launch",), model="mlp", hidden=(3, 2), activation="sigmoid", epochs=2,
                  batch_size=4, optimizer="rmsprop", lr=0.01, centered=True, clip_grad_norm=0.2, validation=0.25)
    assert "global memory" in rg.config["cuda_path_why"]
    assert launches() == 2 and all(len(cfg) == 2 for c in counters.values() for cfg in c.configs)  # no shared bytes


def test_one_launch_cut_into_several_launches_mid_epoch(monkeypatch):
    # tables of 2 steps and row orders of 1 epoch per launch: 11 rows in batches of 4 are 3 steps an
    # epoch, so launches start and end inside epochs; validation, clipping, a full trace every 2 steps
    from minireg.cuda import onelaunch
    launches, _ = _count_one_launch_kernels(monkeypatch)
    monkeypatch.setattr(onelaunch, "TABLE_BYTES", 2 * 6 * 8)  # Adam: lr + 5 step scalars
    monkeypatch.setattr(onelaunch, "ORDER_BYTES", 11 * 8)
    X, y = nonlinear_data(14, 3)
    both(X, y, paths=("one-launch",), epochs=3, batch_size=4, optimizer="adam", lr=0.05, amsgrad=True,
         validation=3 / 14, clip_grad_value=0.05, trace_every=2, schedule="invscaling", power_t=0.3, progress=False)
    assert launches() == 6
    monkeypatch.setattr(onelaunch, "TRACE_BYTES", 1)  # trace rows: one a launch (every step recorded)
    both(X, y, paths=("one-launch",), epochs=2, batch_size=4, optimizer="sgd", lr=0.05, momentum=0.5,
         trace="norms", progress=False)
    assert launches() == 6 + 8  # 14 rows in batches of 4: 8 steps


def test_one_launch_divergence_in_a_later_launch(monkeypatch):
    # the seed case (diverges at step 110) in launches of 16 steps; trace_every=7: the diverging
    # step's row is written off the grid; nothing after it changes
    from minireg.cuda import onelaunch
    launches, _ = _count_one_launch_kernels(monkeypatch)
    monkeypatch.setattr(onelaunch, "TABLE_BYTES", 16 * 4 * 8)  # SGD: lr + 3 step scalars
    X, y = datasets.linear_1d()
    rc, rg = both(X, y, paths=("one-launch",), optimizer="sgd", lr=10, batch_size=32, epochs=50, trace_every=7,
                  progress=False)
    assert rg.diverged_at == 110 and int(rg.trace.step[-1]) == 110
    assert launches() == 7  # steps 0..111 in launches of 16: the 7th holds step 110, no launch after it


def test_one_launch_ctrl_c_between_launches_then_resume_mid_epoch(monkeypatch):
    from minireg.cuda import onelaunch
    monkeypatch.setattr(onelaunch, "TABLE_BYTES", 2 * 4 * 8)  # SGD: 2 steps a launch
    stops, fills = [], []
    run, fill = onelaunch.RunSet.run, onelaunch._fill_table

    def run_keeping_stop(self, *a):
        stops.append(a[-1])
        return run(self, *a)

    def fill_then_ctrl_c(*a):
        fills.append(1)
        if len(fills) == 3:  # Ctrl-C while the third launch runs: the host stops before the fourth
            stops[-1][0] = 1
        return fill(*a)

    monkeypatch.setattr(onelaunch.RunSet, "run", run_keeping_stop)
    monkeypatch.setattr(onelaunch, "_fill_table", fill_then_ctrl_c)
    X, y = nonlinear_data(10, 3)
    kw = dict(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=4, trace=True, progress=False)
    with warnings.catch_warnings(), cuda_path("one-launch"):
        warnings.simplefilter("ignore", InterruptedWarning)
        part = minireg.train(X, y, device="cuda", epochs=3, **kw)
    assert part.interrupted and part.n_steps == 6 and part.continuation.epoch == 2
    assert part.continuation.offset == 0  # 3 steps an epoch: 6 steps end at an epoch boundary
    monkeypatch.setattr(onelaunch, "_fill_table", fill)
    # launches of 4 steps: Ctrl-C during the second stops the run after 8 steps, inside epoch 2;
    # resumed on the GPU from there, it ends where an uninterrupted CPU run of 4 epochs does
    fills[:] = [1]  # the next fill counts as the second
    monkeypatch.setattr(onelaunch, "TABLE_BYTES", 4 * 4 * 8)
    monkeypatch.setattr(onelaunch, "_fill_table", fill_then_ctrl_c)
    with warnings.catch_warnings(), cuda_path("one-launch"):
        warnings.simplefilter("ignore", InterruptedWarning)
        part = minireg.train(X, y, device="cuda", epochs=3, **kw)
    assert part.interrupted and part.n_steps == 8 and part.continuation.offset == 8  # row 8 of epoch 2
    monkeypatch.setattr(onelaunch, "_fill_table", fill)
    with cuda_path("one-launch"):
        rest = minireg.train(X, y, resume=part, epochs=2, device="cuda")
    whole = minireg.train(X, y, device="cpu", epochs=4, **kw)
    assert rest.config["cuda_path"] == "one-launch"
    assert_same_run(whole, rest)


# ------------------------------------------------------------------------------------------------
# sweeps on the GPU (minireg/cuda/many.py): runs side by side, one block each, in one launch

def _alone_on_cpu(X, y, params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return minireg.train(X, y, **{**params, "device": "cpu", "progress": False})


def _same_as_alone(X, y, params, rg):
    rc = _alone_on_cpu(X, y, params)
    assert_same_run(rc, rg)
    assert rg.continuation.rng_state == rc.continuation.rng_state  # a resumed run draws the same orders
    assert rg.continuation.epoch == rc.continuation.epoch and rg.continuation.t == rc.continuation.t
    return rc


def test_sweep_on_the_gpu_trains_lr_and_seed_side_by_side_in_one_launch(monkeypatch):
    # shuffled batches (each seed its own orders and init), a full trace, given validation rows, and
    # one lr whose runs diverge in epochs 1 and 2 while the others go on to epoch 5; train() draws the
    # orders of 2 epochs per call here (shrunk): a diverged run's stream stops after its call's epochs
    import importlib
    monkeypatch.setattr(importlib.import_module("minireg.train"), "_MAX_ORDER_ENTRIES", 2 * 12)
    launches, _counters = _count_one_launch_kernels(monkeypatch)
    X, y = nonlinear_data(16, 3)
    fixed = dict(model="mlp", hidden=(3,), activation="relu", epochs=6, batch_size=5, optimizer="sgd", momentum=0.9,
                 trace=True, validation=(X[12:], y[12:]), device="cuda")
    Xt, yt = X[:12], y[:12]
    grid = {"lr": [0.05, 20.0], "seed": [0, 1, 2]}  # lr=20 diverges at steps 7, 5, 7 (epochs 2, 1, 2)
    sw = minireg.sweep(Xt, yt, grid=grid, diagnose=False, **fixed)
    assert launches() == 1 and len(sw) == 6
    diverged = 0
    for cfg, rg in zip(sw.configs, sw.results, strict=True):
        assert rg.config["cuda_path"] == "one-launch" and "6 runs side by side" in rg.config["cuda_path_why"]
        assert 0 < rg.setup_seconds < rg.seconds  # its own checks and buffers, out of its share of the launch
        _same_as_alone(Xt, yt, {**fixed, **cfg}, rg)
        diverged += rg.diverged
    assert diverged == 3 and [r.diverged_at for r in sw.results[3:]] == [7, 5, 7]
    rows = sw.records()
    assert [r["diverged"] for r in rows] == [False, False, False, True, True, True]


def test_sweep_on_the_gpu_groups_what_can_share_a_launch():
    # two batch sizes: two launches; early stopping cannot share one (a decision per epoch on the
    # host): it runs alone through train(); device in the grid: the CPU runs go the CPU way
    X, y = nonlinear_data(10, 2)
    fixed = dict(optimizer="adam", epochs=3, trace="norms")
    sw = minireg.sweep(X, y, grid={"batch_size": [4, None], "lr": [0.01, 0.1]}, device="cuda", diagnose=False,
                       **fixed)
    for cfg, rg in zip(sw.configs, sw.results, strict=True):
        assert "2 runs side by side" in rg.config["cuda_path_why"]
        _same_as_alone(X, y, {**fixed, **cfg}, rg)
    sw = minireg.sweep(X, y, grid={"lr": [0.01, 0.1]}, device="cuda", diagnose=False, validation=0.3,
                       early_stopping=1, **fixed)
    for cfg, rg in zip(sw.configs, sw.results, strict=True):
        assert "side by side" not in rg.config["cuda_path_why"]
        _same_as_alone(X, y, {**fixed, **cfg, "validation": 0.3, "early_stopping": 1}, rg)
    sw = minireg.sweep(X, y, grid={"device": ["cpu", "cuda"], "lr": [0.01, 0.1]}, diagnose=False, n_jobs=1, **fixed)
    assert [r.config["device"] for r in sw.results] == ["cpu", "cpu", "cuda", "cuda"]
    for i in range(2):
        assert_same_run(sw.results[i], sw.results[i + 2])


def test_sweep_on_the_gpu_ctrl_c_returns_resumable_runs(monkeypatch):
    from minireg.cuda import many, onelaunch
    monkeypatch.setattr(onelaunch, "TABLE_BYTES", 2 * 4 * 4 * 8)  # SGD, two lr tables: 4 steps a launch
    stops, run = [], onelaunch.RunSet.run

    def run_then_ctrl_c(self, *a):
        stops.append(a[-1])
        return run(self, *a)

    fills, fill = [], onelaunch._fill_table

    def fill_then_ctrl_c(*a):
        fills.append(1)
        if len(fills) == 3:  # two tables a launch: Ctrl-C while the second launch runs
            stops[-1][0] = 1
        return fill(*a)

    monkeypatch.setattr(onelaunch.RunSet, "run", run_then_ctrl_c)
    monkeypatch.setattr(onelaunch, "_fill_table", fill_then_ctrl_c)
    X, y = nonlinear_data(10, 3)
    fixed = dict(optimizer="sgd", momentum=0.5, batch_size=4, epochs=4, trace=True, device="cuda")
    runs = [dict(fixed, lr=lr, seed=seed) for lr, seed in ((0.01, 0), (0.05, 1))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InterruptedWarning)
        parts = many.train_many(X, y, runs)
    monkeypatch.setattr(onelaunch, "_fill_table", fill)
    for kw, part in zip(runs, parts, strict=True):
        assert part.interrupted and part.n_steps == 8 and part.continuation.offset == 8  # inside epoch 2
        rest = minireg.train(X, y, resume=part, epochs=2)
        _same_as_alone(X, y, kw, rest)
