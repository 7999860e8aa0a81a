"""The large path's MLP tiles as matrix products (kernels/gemm.py, kernels/tiled.py::_mlp_block).

- ``product`` against NumPy, for widths and lengths that are not multiples of its blocks, with and
  without continuing C's sums, leaving everything outside C's block alone;
- every entry is one sum over k in order with fused multiply-adds: the same bits whichever block
  computes it, and a sum continued by a second product is the product of all the terms;
- an MLP step on tiles against the row loop's step (float32 and float64, odd batch sizes with a short
  last tile, layer widths that are not multiples of the blocks, every activation);
- the same bits on 1 and 2 threads, shuffled batches included;
- a diverging MLP on tiles still returns a result.
"""
import itertools
import warnings
from fractions import Fraction

import numba
import numpy as np
import pytest
from llvmlite import binding as llvm

import minireg
from minireg import _parallel
from minireg.kernels.activations import kernel_arg
from minireg.kernels.constants import run_constants
from minireg.kernels.gemm import RELU_OUT, STORE, TIMES_RELU_GRAD, product
from minireg.kernels.losses import CODES as LOSSES
from minireg.kernels.tiled import tiled_loss_grad
from minireg.layout import Layout, init_params

SHAPES = list(itertools.product((1, 3, 4, 5, 9), (1, 3, 8, 9, 17, 33, 65, 70), (1, 2, 64, 65, 130)))


def _operands(rng, dtype, P, Q, K, a_rows):
    """A (P × K, rows of A contiguous when ``a_rows``, else its columns), B (K × Q) and C (P × Q) at
    offsets inside larger buffers, with their strides."""
    sap, sak = (K + 1, 1) if a_rows else (1, P + 2)
    A = rng.standard_normal(3 + P * sap + K * sak).astype(dtype)
    sbk, scp = Q + 3, Q + 1
    B = rng.standard_normal(2 + K * sbk).astype(dtype)
    C = rng.standard_normal(5 + P * scp + 4).astype(dtype)
    Am = np.array([[A[3 + p * sap + k * sak] for k in range(K)] for p in range(P)]).reshape(P, K)
    Bm = np.array([[B[2 + k * sbk + q] for q in range(Q)] for k in range(K)]).reshape(K, Q)
    return A, sap, sak, B, sbk, C, scp, Am, Bm


def _block(C, scp, P, Q):
    return np.array([C[5 + p * scp:5 + p * scp + Q] for p in range(P)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_product_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for (P, Q, K), a_rows, acc in itertools.product(SHAPES, (True, False), (False, True)):
        A, sap, sak, B, sbk, C, scp, Am, Bm = _operands(rng, dtype, P, Q, K, a_rows)
        before = C.copy()
        product(A, 3, sap, sak, B, 2, sbk, K, C, 5, scp, P, Q, acc, STORE, C)
        want = Am.astype(np.float64) @ Bm + (_block(before, scp, P, Q) if acc else 0)
        got = _block(C, scp, P, Q)
        assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()), (P, Q, K, a_rows, acc, False)
        outside = np.ones(C.size, bool)
        for p in range(P):
            outside[5 + p * scp:5 + p * scp + Q] = False
        np.testing.assert_array_equal(C[outside], before[outside])


def test_product_entries_are_sums_in_order_with_fused_multiply_adds():
    """float64: each entry is fma(a_k, b_k, s) for k = 0, 1, … in order, rounded once per term (a CPU
    with FMA); the same bits whichever block computes the entry; a continued sum is the whole sum."""
    if not llvm.get_host_cpu_features().get("fma", False):
        pytest.skip("a CPU without FMA: a multiply and an add per term")
    rng = np.random.default_rng(1)
    P, Q, K = 9, 37, 70
    A, sap, sak, B, sbk, C, scp, Am, Bm = _operands(rng, np.float64, P, Q, K, True)
    product(A, 3, sap, sak, B, 2, sbk, K, C, 5, scp, P, Q, False, STORE, C)
    full = _block(C, scp, P, Q)
    for p, q in ((0, 0), (3, 16), (8, 36), (4, 33)):
        s = Fraction(0)
        for k in range(K):
            s = Fraction(float(Fraction(float(Am[p, k])) * Fraction(float(Bm[k, q])) + s))
        assert full[p, q] == float(s), (p, q)
    # one row, one column, or one entry at a time: the same bits as the whole block
    for p in range(P):
        row = np.zeros(Q)
        product(A, 3 + p * sap, sap, sak, B, 2, sbk, K, row, 0, 0, 1, Q, False, STORE, row)
        np.testing.assert_array_equal(row, full[p])
    for q in range(Q):
        col = np.zeros(P)
        product(A, 3, sap, sak, B, 2 + q, sbk, K, col, 0, 1, P, 1, False, STORE, col)
        np.testing.assert_array_equal(col, full[:, q])
    # the first 23 terms, then the other 47 continuing those sums: the product of all 70
    part = np.zeros(P * Q)
    product(A, 3, sap, sak, B, 2, sbk, 23, part, 0, Q, P, Q, False, STORE, part)
    product(A, 3 + 23 * sak, sap, sak, B, 2 + 23 * sbk, sbk, K - 23, part, 0, Q, P, Q, True, STORE, part)
    np.testing.assert_array_equal(part.reshape(P, Q), full)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_product_epilogues_are_relu_and_its_derivative(dtype):
    """What a product stores after the last chunk of a long sum, bit for bit as activations.py's
    loops would make it: RELU_OUT 0 where the sum is <= 0 (-0 included), the sum elsewhere, NaN
    kept; TIMES_RELU_GRAD the sum times (0 where M <= 0, else 1), M read at C's offsets."""
    rng = np.random.default_rng(4)
    for P, Q, K in ((9, 70, 130), (5, 17, 3), (4, 1, 65)):
        A, sap, sak, B, sbk, C, scp, Am, Bm = _operands(rng, dtype, P, Q, K, True)
        A[3 + 2 * sap] = np.nan  # row 2 is NaN throughout
        A[3 + 1 * sap:3 + 1 * sap + K] = 0  # row 1: sums of zeros
        M = rng.standard_normal(C.size).astype(dtype)
        M[5 + 3 * scp] = -0.0
        plain, rect, gated = C.copy(), C.copy(), C.copy()
        product(A, 3, sap, sak, B, 2, sbk, K, plain, 5, scp, P, Q, False, STORE, plain)
        product(A, 3, sap, sak, B, 2, sbk, K, rect, 5, scp, P, Q, False, RELU_OUT, rect)
        product(A, 3, sap, sak, B, 2, sbk, K, gated, 5, scp, P, Q, False, TIMES_RELU_GRAD, M)
        sums = _block(plain, scp, P, Q)
        got = _block(rect, scp, P, Q)
        np.testing.assert_array_equal(got, np.where(sums <= 0, dtype(0), sums))
        assert np.isnan(got[2]).all() and not np.signbit(got[1]).any()
        with np.errstate(invalid="ignore"):
            want = sums * np.where(_block(M, scp, P, Q) <= 0, dtype(0), dtype(1))
        np.testing.assert_array_equal(_block(gated, scp, P, Q), want)
        np.testing.assert_array_equal(np.signbit(_block(gated, scp, P, Q)), np.signbit(want))


@pytest.fixture
def large_everywhere(monkeypatch):
    monkeypatch.setattr(_parallel, "STEP_WORK", 1)
    monkeypatch.setattr(_parallel, "LOSS_WORK", 1)


def _data(n, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = (np.sin(X[:, 0]) + X[:, 1] * X[:, -1] + 0.1 * rng.normal(size=n)).astype(dtype)
    return X, y


CASES = [  # (d, hidden, activation, loss, batch)
    (5, (7, 13), "relu", "mse", 700),        # widths below one vector; a last tile of 188 rows
    (20, (64, 64), "relu", "huber", 1000),   # W6's shape; the bias row of [gW; gb] is a row block of its own
    (3, (33,), "tanh", "mae", 513),          # 33 = 4 vectors + 1 column; a last tile of one row
    (9, (17, 9, 5), "sigmoid", "mse", 777),
    (4, (16, 16), "identity", "squared_error", 600),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{'-'.join(map(str, c[1]))}-{c[2]}-{c[3]}-B{c[4]}")
def test_mlp_tiles_match_the_row_loop(case, dtype, large_everywhere, monkeypatch):
    """The first step's loss and gradient, and three epochs, on tiles and in the row loop: equal up to
    the order of the sums and the fused multiply-adds."""
    d, hidden, activation, loss, batch = case
    X, y = _data(1800, d, dtype)
    kw = dict(model="mlp", hidden=hidden, activation=activation, loss=loss, optimizer="adam", lr=1e-3, epochs=3,
              batch_size=batch, shuffle=False, dtype=dtype, trace=True)
    tiled = minireg.train(X, y, **kw)
    monkeypatch.setattr(_parallel, "STEP_WORK", 1 << 62)
    monkeypatch.setattr(_parallel, "LOSS_WORK", 1 << 62)
    rows = minireg.train(X, y, **kw)
    tol = 2e-5 if dtype == "float32" else 1e-12
    g, gr = tiled.trace.grad, rows.trace.grad
    assert np.abs(g - gr).max() <= tol * np.abs(gr).max()
    np.testing.assert_allclose(tiled.trace.loss, rows.trace.loss, rtol=tol)
    np.testing.assert_allclose(tiled.theta, rows.theta, rtol=50 * tol, atol=50 * tol)


def _step(X, y, idx, layout, activation, loss, dtype, threads, B, start=0, block=None):
    theta = init_params(layout, "torch", np.random.default_rng(0), dtype)
    sizes, woff, boff, aoff, _ = layout.kernel_arrays(1)
    model = (sizes, woff, boff, aoff, kernel_arg(activation))
    big, _ = _parallel.plan(layout, X.shape[0], 0, B, threads, dtype, block=block)
    g = np.full(layout.size, np.nan, dtype)
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        loss = tiled_loss_grad(X, y, idx, start, B, theta, model, LOSSES[loss], run_constants(1.0, dtype), big, g)
    finally:
        numba.set_num_threads(before)
    return loss, g


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_tiles_are_the_same_bits_on_1_and_2_threads(dtype):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here")
    X, y = _data(3000, 6, dtype, seed=2)
    rng = np.random.default_rng(3)
    for hidden, act, loss, B, shuffled in (((64, 64), "relu", "mse", 2999, False),
                                           ((13, 7), "tanh", "huber", 1537, True),
                                           ((40,), "relu", "mae", 1025, True)):
        layout = Layout((6, *hidden, 1))
        idx = rng.permutation(3000).astype(np.int64) if shuffled else np.arange(3000, dtype=np.int64)
        one = _step(X, y, idx, layout, act, loss, dtype, 1, B, start=1)
        two = _step(X, y, idx, layout, act, loss, dtype, 2, B, start=1)
        assert one[0] == two[0]
        np.testing.assert_array_equal(one[1], two[1])
        assert np.isfinite(one[1]).all()


def test_partials_hold_the_tiles_of_every_batch_up_to_the_batch_size():
    """_parallel.plan sizes ``partials`` by tiled.max_tiles(bs): a run's batches are bs rows and
    shorter (the last one, a resumed epoch's), and numba does not check the tiles' row index, so
    every B <= bs must be cut into at most that many tiles; and the bound is met, not loose."""
    from minireg.kernels.tiled import max_tiles, tile_rows
    for unit in (1, 3, 256):
        most = 0
        for B in range(1, 70_000):
            most = max(most, -(-B // tile_rows(B, unit)))
            assert most <= max_tiles(B, unit), (unit, B)
            if B % 997 == 0:
                assert most == max_tiles(B, unit), (unit, B)


def test_tiles_of_several_blocks_are_the_same_bits_whatever_the_block(large_everywhere):
    """A batch of 9,001 rows is 18 tiles (tiled.tile_rows: two units of 256 rows each, the last one
    short), each gone through a block of rows at a time, the later blocks continuing the earlier
    ones' sums: the same bits with blocks of 256 rows, of 100 (six blocks a tile, the last of 12
    rows), of a whole tile, and on 1 and 2 threads; and the step of a reference in NumPy up to
    rounding."""
    from minireg import reference as R
    from minireg.kernels.tiled import tile_rows
    assert tile_rows(9001, 256) == 512
    X, y = _data(9001, 5, np.float64, seed=4)
    layout = Layout((5, 33, 9, 1))
    idx = np.random.default_rng(5).permutation(9001).astype(np.int64)
    runs = [_step(X, y, idx, layout, "tanh", "huber", np.float64, threads, 9001, block=block)
            for threads, block in ((1, None), (1, 100), (1, 512), (2, None), (2, 100))]
    for loss, g in runs[1:]:
        assert loss == runs[0][0]
        np.testing.assert_array_equal(g, runs[0][1])
    theta = init_params(layout, "torch", np.random.default_rng(0), np.float64)
    layers = R.layers_of(theta, layout.sizes)
    acts = R.forward(layers, X[idx], "tanh")
    want_loss, dpred = R.loss_and_dpred("huber", acts[-1][:, 0], y[idx])
    want = R.flat(R.backward(layers, acts, dpred, "tanh"))
    assert abs(runs[0][0] - want_loss) <= 1e-13 * abs(want_loss)
    np.testing.assert_allclose(runs[0][1], want, rtol=0, atol=1e-13 * np.abs(want).max())


def test_diverging_mlp_on_tiles_is_still_a_result(large_everywhere):
    X, y = _data(1200, 4, np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = minireg.train(X, y * 1e4, model="mlp", hidden=(32, 32), optimizer="sgd", lr=1e3, epochs=50,
                          batch_size=600, dtype="float32", trace=True, threads=2)
    assert r.diverged and r.diverged_at is not None
    assert [w.category for w in caught] == [minireg.DivergenceWarning]
    assert r.n_steps == r.diverged_at + 1
    assert np.isfinite(r.trace.params).all()
    assert not (np.isfinite(r.trace.loss[-1]) and np.isfinite(r.theta).all())
