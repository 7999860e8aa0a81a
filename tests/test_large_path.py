"""The large-batch path (kernels/tiled.py) and train()'s data preparation on big arrays.

- against PyTorch on 10,000 rows (tests/fixtures/make_large_fixture.py), within 1e-10 relative;
- bit-identical results on 1 and 2 threads;
- the whole-set loss on tiles is the row loop's, bit for bit;
- no copy of X when it already has the run's dtype and C order.
"""
import json
import pathlib

import numba
import numpy as np
import pytest

import minireg
from minireg import _parallel

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "torch_large.npz"
_data = np.load(FIXTURE)
CASES = json.loads(str(_data["cases"]))
TOL = 1e-10


@pytest.fixture
def large_everywhere(monkeypatch):
    """Every batch and data set of a few rows takes the tiled path."""
    monkeypatch.setattr(_parallel, "STEP_WORK", 1)
    monkeypatch.setattr(_parallel, "LOSS_WORK", 1)


@pytest.fixture
def row_loop_only(monkeypatch):
    monkeypatch.setattr(_parallel, "STEP_WORK", 1 << 62)
    monkeypatch.setattr(_parallel, "LOSS_WORK", 1 << 62)


def _run(case, **kw):
    init = {k.split("/")[-1]: _data[k] for k in _data.files if k.startswith(f"{case['id']}/init/")}
    return minireg.train(_data["X"], _data["y"], model=case["model"], hidden=tuple(case["hidden"]) or (10,),
                         activation=case["activation"] or "relu", loss=case["loss"], delta=case["delta"],
                         optimizer=case["optimizer"], epochs=case["epochs"], batch_size=case["batch_size"],
                         shuffle=False, init=init, trace=True, **case["hparams"], **kw)


def _close(got, want, what):
    scale = np.abs(want).max()
    err = np.abs(np.asarray(got) - want).max() / scale
    assert err <= TOL, f"{what}: max deviation {err:.3g} of max |value| (tolerance {TOL})"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_tiled_path_matches_pytorch(case, large_everywhere):
    ref = {k.split("/", 1)[1]: _data[k] for k in _data.files if k.startswith(f"{case['id']}/")}
    r = _run(case, threads=2)
    assert r.n_steps == case["steps"]
    _close(r.trace.params, ref["params"], "params")
    _close(r.trace.loss, ref["loss"], "loss")
    _close(r.trace.grad, ref["grad"], "grad")
    _close(r.history["loss"], ref["epoch_loss"], "epoch loss")
    _close(r.theta, ref["final"], "final params")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_tiled_path_does_not_depend_on_the_thread_count(case, large_everywhere):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here")
    a, b = _run(case, threads=1), _run(case, threads=2)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.trace.grad, b.trace.grad)
    np.testing.assert_array_equal(a.trace.loss, b.trace.loss)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])


def test_tiled_path_is_taken_and_sums_per_tile(large_everywhere, monkeypatch):
    """The tiled gradient differs from the row loop's only in the last bits (its sums run per tile)."""
    case = CASES[0]
    tiled = _run(case)
    monkeypatch.setattr(_parallel, "STEP_WORK", 1 << 62)
    monkeypatch.setattr(_parallel, "LOSS_WORK", 1 << 62)
    rows = _run(case)
    assert not np.array_equal(tiled.trace.grad, rows.trace.grad)
    np.testing.assert_allclose(tiled.trace.grad, rows.trace.grad, rtol=1e-12, atol=1e-15)
    # the first step's loss: the same up to the order of the sums (the linear tiles vectorize the
    # dot products too)
    np.testing.assert_allclose(tiled.trace.loss[0], rows.trace.loss[0], rtol=1e-14)


def test_whole_set_loss_on_tiles_is_the_row_loops_bit_for_bit(monkeypatch):
    """Minibatch steps (row loop) with the per-epoch and validation losses on tiles."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(3000, 4)), rng.normal(size=3000)
    kw = dict(model="mlp", hidden=(8,), optimizer="adam", lr=0.01, epochs=3, batch_size=64, validation=0.3)
    monkeypatch.setattr(_parallel, "LOSS_WORK", 1 << 62)
    ref = minireg.train(X, y, **kw)
    monkeypatch.setattr(_parallel, "LOSS_WORK", 1)
    for threads in (1, 2):
        r = minireg.train(X, y, threads=threads, **kw)
        np.testing.assert_array_equal(r.history["loss"], ref.history["loss"])
        np.testing.assert_array_equal(r.history["val_loss"], ref.history["val_loss"])
        np.testing.assert_array_equal(r.theta, ref.theta)


def test_small_runs_plan_no_large_path():
    from minireg.layout import Layout
    big, threads = _parallel.plan(Layout((10, 64, 64, 1)), 10_000, 0, 32, None, np.float64)
    assert big is not None and big[8] > 32 and threads == _parallel.max_threads()  # only the epoch loss
    big, threads = _parallel.plan(Layout((1, 1)), 100, 0, 100, None, np.float64)
    assert big is None and threads == 1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_X_in_the_run_dtype_is_not_copied(dtype):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3)).astype(dtype)
    y = rng.normal(size=500)
    r = minireg.train(X, y, dtype=dtype, epochs=2)
    assert r.data[0] is X
    Xf = np.asfortranarray(X)  # another order: one converted copy, the same run
    r2 = minireg.train(Xf, y, dtype=dtype, epochs=2)
    assert r2.data[0] is not Xf and r2.data[0].flags.c_contiguous
    np.testing.assert_array_equal(r.theta, r2.theta)
    r3 = minireg.train(X, y, dtype=dtype, epochs=2, standardize=True)
    assert not np.shares_memory(r3.data[0], X)


def test_one_pass_validation_names_bad_values():
    X = np.ones((5000, 3), np.float32)
    X[4000, 2] = np.nan
    with pytest.raises(ValueError, match=r"X has 1 NaN/inf value\(s\) in 1 row\(s\) \(first rows \[4000\]\)"):
        minireg.train(X, np.zeros(5000), dtype="float32")
    X64 = np.ones((5000, 3))
    X64[7, 1] = 1e39
    with pytest.raises(ValueError, match="beyond the float32 range"):
        minireg.train(X64, np.zeros(5000), dtype="float32")
    r = minireg.train(X64, np.zeros(5000), epochs=1)  # fine in float64
    assert r.data[0] is X64


def test_one_pass_kernels_count_every_bad_value():
    """kernels/data.py's checks, which train() runs on X of 2^20 values or more: every NaN, ±inf, and
    (converting float64 to float32) every value beyond float32's range, counted in any block and
    column of the kernels' rows, and in the last values, after the last whole row."""
    from minireg.kernels import data
    rng = np.random.default_rng(3)
    x = rng.normal(size=3 * data.ROWS * data.WIDTH + data.WIDTH + 5)
    bad = [(0, np.nan), (data.ROWS * data.WIDTH + 7, np.inf), (2 * data.ROWS * data.WIDTH + 1, -np.inf),
           (x.size - 1, 1e39), (x.size - 6, np.nan), (x.size - 7, 1e39)]
    for i, v in bad:
        x[i] = v
    f64max = np.float64(np.finfo(np.float64).max)
    assert data.bad_values(x, f64max) == 4  # 1e39 is a float64
    out = np.empty(x.shape, np.float32)
    assert data.convert_bad_values(x, out, np.float64(np.finfo(np.float32).max)) == 6
    fine = np.isfinite(x) & (np.abs(x) < 1e38)
    np.testing.assert_array_equal(out[fine], x[fine].astype(np.float32))
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)  # 1e39 becomes inf
    assert data.bad_values(x32, np.float32(np.finfo(np.float32).max)) == 6
    for n in (1, data.WIDTH - 1, data.WIDTH + 1):
        assert data.bad_values(np.ones(n), f64max) == 0


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("width", [1, 3, 100])
def test_one_pass_validation_of_a_large_X_names_bad_values(order, width):
    n = (1 << 20) // width + 3
    X = np.ones((n, width), order=order)
    X[n - 2, width - 1] = 1e39
    with pytest.raises(ValueError, match="beyond the float32 range"):
        minireg.train(X, np.zeros(n), dtype="float32", epochs=1)
    X[n - 2, width - 1] = np.nan
    with pytest.raises(ValueError, match=rf"X has 1 NaN/inf value\(s\) in 1 row\(s\) \(first rows \[{n - 2}\]\)"):
        minireg.train(X.astype(np.float32, order=order), np.zeros(n), dtype="float32", epochs=1)
    X[n - 2, width - 1] = 2.0
    r = minireg.train(X, np.zeros(n), dtype="float32", epochs=1, lr=1e-3)
    assert r.data[0].dtype == np.float32 and r.data[0].flags.c_contiguous and r.data[0][n - 2, width - 1] == 2.0


def test_threads_argument_is_checked():
    with pytest.raises(ValueError, match="threads"):
        minireg.train(np.ones((4, 1)), np.ones(4), threads=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_shuffled_minibatches_on_tiles(dtype, model, large_everywhere, monkeypatch):
    """Shuffled batches of 700 rows (gathered through the epoch's order) on tiles: the same bits on 1
    and 2 threads, and the row loop's run up to rounding."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2500, 6)).astype(dtype)
    y = np.sin(X[:, 0]) + X[:, 1]
    kw = dict(model=model, hidden=(12,), optimizer="adam", lr=0.01, epochs=3, batch_size=700, dtype=dtype,
              clip_grad_norm=5.0, validation=0.2, trace="norms")
    a, b = minireg.train(X, y, threads=1, **kw), minireg.train(X, y, threads=2, **kw)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.trace.loss, b.trace.loss)
    np.testing.assert_array_equal(a.history["val_loss"], b.history["val_loss"])
    monkeypatch.setattr(_parallel, "STEP_WORK", 1 << 62)
    monkeypatch.setattr(_parallel, "LOSS_WORK", 1 << 62)
    rows = minireg.train(X, y, **kw)
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(a.theta, rows.theta, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.trace.loss, rows.trace.loss, rtol=tol)
