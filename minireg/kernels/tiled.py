"""The large-batch path: a batch's forward and backward passes over fixed tiles of rows, in parallel.

A batch of B rows is cut into tiles of consecutive batch positions (the last one shorter), of
``tile_rows(B)`` rows: about 16 tiles, each a whole number of units of 256 rows and at most 8 of
them. Each tile computes its rows' forward and backward passes and writes its own partial gradient
and partial loss sum into its row of ``partials``. The tiles are spread over numba's threads
(``prange``), and afterwards the partials are added up over the tiles in tile order. What a tile
computes does not depend on which thread computes it, and the final sums always run in the same
order, so the results are bit-identical whatever the number of threads. (Tiles of 2048 rows
rather than 256: W6's step went from 782 partial gradients to 98, which are written and read
back in a fraction of the memory traffic; benchmarks/RESULTS.md, sixth session.)

An MLP's tile goes through its worker's buffers a block of ``block`` rows (256) at a time
(``_mlp_block``), each block's sums over its rows continuing the ones before it, so a tile's sums
are the same bits however many blocks it takes. A block runs its layers as matrix products
(kernels/gemm.py): per layer Z = [A, 1]·[W; b], [gW; gb] = [A, 1]ᵀ·Δ and Δ_prev = Δ·Wᵀ, each entry
one sum in order (over the layer's inputs and then the bias; over the tile's rows in row order; over
the layer's outputs) with a fused multiply-add per term where the CPU has FMA. So it differs from
the row loop (kernels/loop.py with one forward/backward over the whole batch, plain multiplies and
adds) in the last bits of every value, per-row values (predictions, residuals, deltas) included, and
in the sums over the batch's rows: the row loop adds every row's term into one running sum per
gradient entry (and one for the loss), in row order; here each tile adds its rows' terms in row
order, and the tiles' sums are then added in tile order. The linear model's tiles (``_linear_tile``)
make one pass over each row for the prediction, the loss and the gradient terms, with the compiler
free to reassociate (vectorize) the dot products and the sums within a tile, so there the
predictions may also differ between CPUs of different vector widths (never between thread counts).

The loss over a whole data set (``tiled_dataset_loss``, the per-epoch history) keeps the row
loop's order exactly for an MLP: blocks of rows are forwarded by the row loop's kernels
(models.forward) and write every row's loss term into ``rowloss`` in parallel, and those are added
in row order afterwards, so that figure is the row loop's bit for bit. For the linear model it is
computed as its steps compute it (one vectorized pass per tile, the tiles' sums added in tile
order): a read of X at memory speed, where the row loop's dot products take several times longer.

``big`` = (unit, aoff_t, partials, acts_t, deltas_t, wT, rowloss, sc_t, step_rows, loss_rows, goff, block):
``unit`` the rows a tile has a whole number of (tile_rows), ``aoff_t`` the row loop's activation
offsets for a block (the whole-set loss), ``partials`` (max_tiles, P+1), per-worker activation
and delta buffers of ``block`` rows (one row per worker, one worker per thread of the run:
numba.get_num_threads() in here would keep numba from caching the kernel), ``wT`` the
step's transposed weight matrices, ``rowloss`` one entry per data row, ``sc_t`` run-dtype scratch,
the smallest batch (``step_rows``) and data set (``loss_rows``) that take this path, and ``goff``
where an MLP block's layers start in a worker's buffers (``_mlp_block``; None for the linear model).
"""
from numba import prange

from ._jit import element, kernel, parallel_kernel, reassociating_kernel
from .activations import (IDENTITY, RELU, SIGMOID, TANH, activate, by_model, code_of, constants,
                          derivative_from_output)
from .constants import DELTA, ONE, ZERO
from .gemm import RELU_OUT, STORE, TIMES_RELU_GRAD, product
from .losses import dloss_of_residual, loss_of_residual
from .models import forward

_REDUCE_BLOCK = 512  # gradient entries per block of the final (parallel, per-entry) reduction
_PARALLEL_SUM = 1 << 18  # tiles × entries from which that reduction runs on the threads
# a batch is cut into about _TILES tiles of whole units of rows, at most _UNITS_MAX units each
# (tile_rows: W6's 200k rows are 98 tiles of 2048 rows)
_TILES = 16
_UNITS_MAX = 8


@element
def tile_rows(B, unit):
    """Rows per tile of a batch of B rows: ``unit`` times B // (_TILES·unit), from 1 to _UNITS_MAX
    units. It depends on B and the unit only, never on the threads."""
    return unit * max(1, min(_UNITS_MAX, B // (_TILES * unit)))


def max_tiles(bs, unit):
    """The most tiles a batch of at most ``bs`` rows is cut into (the rows of ``partials``): up to
    2·_TILES while tiles are shorter than _UNITS_MAX units, then ceil(bs / (_UNITS_MAX·unit))."""
    return max(min(-(-bs // unit), 2 * _TILES), -(-bs // (_UNITS_MAX * unit)))


@parallel_kernel
def tiled_loss_grad(X, y, idx, start, B, theta, model, loss_code, c, big, g):
    """Mean loss of the rows idx[start:start+B] and its gradient, written into ``g``."""
    sizes, woff, boff, aoff, act = model
    unit, aoff_t, partials, acts_t, deltas_t, wT, rowloss, sc_t, step_rows, loss_rows, goff, block = big
    P = theta.shape[0]
    sc_t[0] = B
    nb = sc_t[0]
    inv_b = c[ONE] / nb
    tile = tile_rows(B, unit)
    nt = (B + tile - 1) // tile
    nw = min(nt, acts_t.shape[0])
    if goff is not None:
        _transpose_weights(theta, sizes, woff, wT)
    if nt == 1:  # one tile, on the calling thread: waking the pool for it costs more than it saves
        tile_sums(X, y, idx, start, B, theta, sizes, woff, boff, act, loss_code, c, inv_b, partials[0], P, acts_t[0],
                  deltas_t[0], goff, wT, block)
    else:
        _all_tiles(X, y, idx, start, B, theta, sizes, woff, boff, act, loss_code, c, inv_b, big, tile, nt, nw)
    # the sums over tiles, in tile order; blocks of entries in parallel when there are many of them
    if nt * P >= _PARALLEL_SUM:
        for jb in prange((P + _REDUCE_BLOCK - 1) // _REDUCE_BLOCK):
            _sum_tiles(partials, nt, jb * _REDUCE_BLOCK, min(P, (jb + 1) * _REDUCE_BLOCK), g)
    else:
        _sum_tiles(partials, nt, 0, P, g)
    loss = partials[0, P]
    for k in range(1, nt):
        loss += partials[k, P]
    return loss / nb


@parallel_kernel
def _all_tiles(X, y, idx, start, B, theta, sizes, woff, boff, act, loss_code, c, inv_b, big, tile, nt, nw):
    """tile_sums of the nt tiles of ``tile`` rows into their rows of ``partials``, on nw workers."""
    unit, aoff_t, partials, acts_t, deltas_t, wT, rowloss, sc_t, step_rows, loss_rows, goff, block = big
    P = theta.shape[0]
    for w in prange(nw):
        buf = acts_t[w]
        dbuf = deltas_t[w]
        for k in range(w, nt, nw):
            s = start + k * tile
            bt = min(tile, start + B - s)
            tile_sums(X, y, idx, s, bt, theta, sizes, woff, boff, act, loss_code, c, inv_b, partials[k], P, buf,
                      dbuf, goff, wT, block)


@kernel
def _sum_tiles(partials, nt, j0, j1, g):
    """g[j] = the tiles' partials of entry j added in tile order, for j0 <= j < j1."""
    for j in range(j0, j1):
        g[j] = partials[0, j]
    for k in range(1, nt):
        pk = partials[k]
        for j in range(j0, j1):
            g[j] += pk[j]


@element
def tile_sums(X, y, idx, s, bt, theta, sizes, woff, boff, act, loss_code, c, inv_b, part, P, buf, dbuf, goff, wT,
              block):
    """A tile's gradient and loss sums into ``part``: ``_linear_tile`` for the linear model, else
    ``_mlp_tile_sums`` (whose buffers ``goff`` places: see _parallel.plan). Only the run's model's tile
    is compiled (activations.by_model; the MLP's is ~5 s)."""
    by_model(act, _linear_tile_sums, _mlp_tile_sums)(X, y, idx, s, bt, theta, sizes, woff, boff, act, loss_code, c,
                                                     inv_b, part, P, buf, dbuf, goff, wT, block)


@element
def _linear_tile_sums(X, y, idx, s, bt, theta, sizes, woff, boff, act, loss_code, c, inv_b, part, P, buf, dbuf, goff,
                      wT, block):
    _linear_tile(X, y, idx, s, bt, theta, woff[0], boff[0], loss_code, c, inv_b, part, P)


@element
def _mlp_tile_sums(X, y, idx, s, bt, theta, sizes, woff, boff, act, loss_code, c, inv_b, part, P, buf, dbuf, goff, wT,
                   block):
    """The tile's rows a block at a time (as many rows as the buffers hold), each block's sums
    continuing the ones before it: the same bits as one block of all the tile's rows."""
    for b in range(0, bt, block):
        _mlp_block(X, y, idx, s + b, min(block, bt - b), b > 0, theta, sizes, woff, act, loss_code, c, inv_b, part,
                   P, buf, dbuf, goff, wT)


@kernel
def _transpose_weights(theta, sizes, woff, wT):
    """wT[woff[k] + j·fan_in + i] = W_k[i, j] for every layer: the Wᵀ of the tiles' input deltas,
    once per step for all tiles."""
    for k in range(sizes.shape[0] - 1):
        fi = sizes[k]
        fo = sizes[k + 1]
        o = woff[k]
        for i in range(fi):
            for j in range(fo):
                wT[o + j * fi + i] = theta[o + i * fo + j]


@kernel
def _mlp_block(X, y, idx, s, bt, go_on, theta, sizes, woff, act, loss_code, c, inv_b, part, P, buf, dbuf, goff, wT):
    """An MLP's forward and backward passes over the rows idx[s:s+bt] as matrix products
    (kernels/gemm.py), writing their gradient sum and loss sum into ``part`` (``go_on``: adding
    them to the sums ``part`` holds, as the continuation of the same sums over the rows).

    In ``buf`` (``goff[k]``: where layer k's input starts) each hidden layer's input is a bt × (fan_in
    + 1) row-major block whose last column is 1, so that [A, 1]·[W; b] is the layer's pre-activation
    (W and b lie one after the other in theta, a (fan_in + 1) × fan_out matrix) and [A, 1]ᵀ·Δ its
    [gW; gb] (written straight into the gradient's layout in ``part``); the output layer's outputs
    (the predictions) are a bt × 1 block. ``dbuf`` holds the deltas in the same places. Per layer:
        Z = [A, 1]·[W; b], A_next = f(Z)                  (product with K = fan_in + 1)
        [gW; gb] = [A, 1]ᵀ·Δ                              (K = bt: the sums over the tile's rows)
        Δ_prev = (Δ·Wᵀ) ⊙ f'(A)                           (K = fan_out, with Wᵀ from ``wT``)
    Every entry is one sum in order (over i, then the bias; over the tile's rows in row order; over
    j) with fused multiply-adds: the row loop's order, but with one rounding per term where the
    CPU has FMA."""
    L = sizes.shape[0] - 1
    code = code_of(act)
    cc = constants(c)
    one, delta = c[ONE], c[DELTA]
    # the tile's inputs, gathered (the batch's rows are idx[s:s+bt]), with the column of ones
    d = sizes[0]
    xb = buf[goff[0]:goff[1]]
    for r in range(bt):
        row = X[idx[s + r]]
        o = r * (d + 1)
        for i in range(d):
            xb[o + i] = row[i]
        xb[o + d] = one
    for k in range(L):
        fi = sizes[k]
        fo = sizes[k + 1]
        ldz = fo + 1 if k < L - 1 else 1
        Z = buf[goff[k + 1]:]
        hidden = k < L - 1
        # relu is applied as the product stores its sums; the others in a loop of their own
        product(buf, goff[k], fi + 1, 1, theta, woff[k], fo, fi + 1, Z, 0, ldz, bt, fo, False,
                RELU_OUT if hidden and code == RELU else STORE, Z)
        if hidden:
            # one loop per activation, compiled with its code constant
            if code == TANH:
                _activate_block(Z, bt, fo, TANH, c)
            elif code == SIGMOID:
                _activate_block(Z, bt, fo, SIGMOID, c)
            else:
                _activate_block(Z, bt, fo, IDENTITY, c)  # relu's applied by the product: the ones only
    # the loss terms and dL/dpred, in row order
    pred = buf[goff[L]:goff[L] + bt]
    dpred = dbuf[goff[L]:goff[L] + bt]
    ls = part[P] if go_on else c[ZERO]
    for r in range(bt):
        res = pred[r] - y[idx[s + r]]
        ls += loss_of_residual(loss_code, res, delta, cc)
        dpred[r] = dloss_of_residual(loss_code, res, delta, cc) * inv_b
    part[P] = ls
    for k in range(L - 1, -1, -1):
        fi = sizes[k]
        fo = sizes[k + 1]
        ldd = fo + 1 if k < L - 1 else 1
        # [gW; gb] = [A, 1]ᵀ·Δ: rows of C are the inputs i (and the bias), K runs over the tile's rows;
        # with one output, the same sums as the one row Δᵀ·[A, 1] (wide blocks instead of one column)
        if fo == 1:
            product(dbuf, goff[k + 1], 0, 1, buf, goff[k], fi + 1, bt, part, woff[k], 0, 1, fi + 1, go_on, STORE, part)
        else:
            product(buf, goff[k], 1, fi + 1, dbuf, goff[k + 1], ldd, bt, part, woff[k], fo, fi + 1, fo, go_on, STORE,
                    part)
        if k > 0:
            # Δ_prev = Δ·Wᵀ, then ⊙ f'(A_prev): relu's as the product stores, the others in a loop
            product(dbuf, goff[k + 1], ldd, 1, wT, woff[k], fi, fo, dbuf, goff[k], fi + 1, bt, fi, False,
                    TIMES_RELU_GRAD if code == RELU else STORE, buf)
            Dp = dbuf[goff[k]:goff[k + 1]]
            A = buf[goff[k]:goff[k + 1]]
            if code == TANH:
                _times_derivative_block(Dp, A, bt, fi, TANH, c)
            elif code == SIGMOID:
                _times_derivative_block(Dp, A, bt, fi, SIGMOID, c)
            # (identity's derivative is 1: x·1 is x, bit for bit)


@element
def _activate_block(Z, bt, fo, code, c):
    """Z[r, j] = f(Z[r, j]) for the bt rows of a (fo + 1)-wide block, and its last column set to 1
    (for IDENTITY only the column of ones)."""
    cc = constants(c)
    one = c[ONE]
    w = fo + 1
    for r in range(bt):
        z = Z[r * w:r * w + w]
        if code != IDENTITY:
            for j in range(fo):
                z[j] = activate(code, z[j], cc)
        z[fo] = one


@element
def _times_derivative_block(D, A, bt, fi, code, c):
    """D[r, i] *= f'(A[r, i]) for the bt rows of (fi + 1)-wide blocks (the last column left alone)."""
    cc = constants(c)
    w = fi + 1
    for r in range(bt):
        dr = D[r * w:r * w + fi]
        ar = A[r * w:r * w + fi]
        for i in range(fi):
            dr[i] = dr[i] * derivative_from_output(code, ar[i], cc)


@reassociating_kernel
def _linear_tile(X, y, idx, s, bt, theta, wo, bo, loss_code, c, inv_b, part, P):
    """A linear model's tile in one pass over its rows, four rows at a time: each row's prediction,
    residual, loss and dL/dpred, and its terms of the partial gradient while the row is in cache
    (four rows per pass over the gradient: 15.7 ms against 16.9 ms for two in one A/B on W5's
    1M x 100 float32, 2 threads; benchmarks/RESULTS.md, fourth session).
    The dot products and the sums over the tile's rows are left to the compiler's order
    (reassociated and vectorized); the tiles and their order are as for any model."""
    d = X.shape[1]
    w = theta[wo:wo + d]
    g = part[wo:wo + d]
    b = theta[bo]
    cc = constants(c)
    c0, delta = c[ZERO], c[DELTA]
    for i in range(d):
        g[i] = c0
    gb = c0
    ls = c0
    for r in range(0, bt - 3, 4):
        r0, r1, r2, r3 = idx[s + r], idx[s + r + 1], idx[s + r + 2], idx[s + r + 3]
        x0, x1, x2, x3 = X[r0], X[r1], X[r2], X[r3]
        p0 = p1 = p2 = p3 = c0
        for i in range(d):
            p0 += x0[i] * w[i]
        for i in range(d):
            p1 += x1[i] * w[i]
        for i in range(d):
            p2 += x2[i] * w[i]
        for i in range(d):
            p3 += x3[i] * w[i]
        e0, e1, e2, e3 = (p0 + b) - y[r0], (p1 + b) - y[r1], (p2 + b) - y[r2], (p3 + b) - y[r3]
        ls += (loss_of_residual(loss_code, e0, delta, cc) + loss_of_residual(loss_code, e1, delta, cc)
               + loss_of_residual(loss_code, e2, delta, cc) + loss_of_residual(loss_code, e3, delta, cc))
        d0 = dloss_of_residual(loss_code, e0, delta, cc) * inv_b
        d1 = dloss_of_residual(loss_code, e1, delta, cc) * inv_b
        d2 = dloss_of_residual(loss_code, e2, delta, cc) * inv_b
        d3 = dloss_of_residual(loss_code, e3, delta, cc) * inv_b
        gb += d0 + d1 + d2 + d3
        for i in range(d):
            g[i] += x0[i] * d0 + x1[i] * d1 + x2[i] * d2 + x3[i] * d3
    for r in range(bt - bt % 4, bt):  # the last bt % 4 rows one at a time
        r0 = idx[s + r]
        x0 = X[r0]
        p0 = c0
        for i in range(d):
            p0 += x0[i] * w[i]
        e0 = (p0 + b) - y[r0]
        ls += loss_of_residual(loss_code, e0, delta, cc)
        d0 = dloss_of_residual(loss_code, e0, delta, cc) * inv_b
        gb += d0
        for i in range(d):
            g[i] += x0[i] * d0
    part[bo] = gb
    part[P] = ls


@reassociating_kernel
def _linear_tile_loss(X, y, s, bt, theta, wo, bo, loss_code, c):
    """The loss sum of rows s..s+bt-1 of X for a linear model, computed as _linear_tile does."""
    d = X.shape[1]
    w = theta[wo:wo + d]
    b = theta[bo]
    cc = constants(c)
    c0, delta = c[ZERO], c[DELTA]
    ls = c0
    for r in range(s, s + bt):
        x = X[r]
        p = c0
        for i in range(d):
            p += x[i] * w[i]
        ls += loss_of_residual(loss_code, (p + b) - y[r], delta, cc)
    return ls


@element
def tiled_dataset_loss(X, y, idx, theta, model, loss_code, c, big):
    """Mean loss over all rows of X (``idx`` the identity): for an MLP the row loop's sum bit for bit;
    for the linear model one vectorized pass per tile (like its steps), the tiles' sums in order.
    (Only the run's model's kernel is compiled: activations.by_model.)"""
    sizes, woff, boff, aoff, act = model
    return by_model(act, _linear_dataset_loss, _network_dataset_loss)(X, y, idx, theta, sizes, woff, boff, act,
                                                                        loss_code, c, big)


@parallel_kernel
def _linear_dataset_loss(X, y, idx, theta, sizes, woff, boff, act, loss_code, c, big):
    unit, aoff_t, partials, acts_t, deltas_t, wT, rowloss, sc_t, step_rows, loss_rows, goff, block = big
    n = X.shape[0]
    tile = tile_rows(n, unit)
    nt = (n + tile - 1) // tile
    for k in prange(nt):
        rowloss[k] = _linear_tile_loss(X, y, k * tile, min(tile, n - k * tile), theta, woff[0], boff[0], loss_code, c)
    total = c[ZERO]
    for k in range(nt):
        total += rowloss[k]
    sc_t[1] = n
    return total / sc_t[1]


@parallel_kernel
def _network_dataset_loss(X, y, idx, theta, sizes, woff, boff, act, loss_code, c, big):
    """Every row's loss term into rowloss[r], the tiles forwarded by the row loop's kernel in
    parallel, then added in row order."""
    unit, aoff_t, partials, acts_t, deltas_t, wT, rowloss, sc_t, step_rows, loss_rows, goff, block = big
    n = X.shape[0]
    nt = (n + block - 1) // block
    nw = min(nt, acts_t.shape[0])
    delta = c[DELTA]
    pred_off = aoff_t[aoff_t.shape[0] - 1]
    for w in prange(nw):
        acts = acts_t[w]
        cc = constants(c)
        for k in range(w, nt, nw):
            s = k * block
            bt = min(block, n - s)
            forward(X, idx, s, bt, theta, sizes, woff, boff, aoff_t, act, acts, c)
            for r in range(bt):
                rowloss[s + r] = loss_of_residual(loss_code, acts[pred_off + r] - y[s + r], delta, cc)
    total = c[ZERO]
    for r in range(n):
        total += rowloss[r]
    sc_t[1] = n
    return total / sc_t[1]
