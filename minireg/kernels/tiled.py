"""The large-batch path: a batch's forward and backward passes over fixed tiles of rows, in parallel.

A batch of B rows is cut into tiles of ``tile`` consecutive batch positions (the last one shorter).
Each tile runs the same per-row code as the row loop (models.forward and models.backward on the
tile's rows, with tile-sized activation buffers) and writes its own partial gradient and partial
loss sum into its row of ``partials``. The tiles are spread over numba's threads (``prange``), and
afterwards the partials are added up over the tiles in tile order. What a tile computes does not
depend on which thread computes it, and the final sums always run in the same order, so the
results are bit-identical whatever the number of threads.

What differs from the row loop (kernels/loop.py with one forward/backward over the whole batch):
only the sums over the batch's rows. The row loop adds every row's term into one running sum per
gradient entry (and one for the loss), in row order; here each tile adds its rows' terms in row
order, and the tiles' sums are then added in tile order. Per-row values (predictions, residuals,
dL/dpred, the deltas of hidden layers) are the same bits as in the row loop, except for the linear
model: its tiles (``_linear_tile``) make one pass over each row for the prediction, the loss and the
gradient terms, with the compiler free to reassociate (vectorize) the dot products and the sums
within a tile, so there the predictions too may differ from the row loop in the last bits (and
between CPUs of different vector widths; never between thread counts).

The loss over a whole data set (``tiled_dataset_loss``, the per-epoch history) keeps the row
loop's order exactly for an MLP: the tiles write every row's loss term into ``rowloss`` in
parallel, and those are added in row order afterwards, so that figure is the row loop's bit for
bit. For the linear model it is computed as its steps compute it (one vectorized pass per tile,
the tiles' sums added in tile order): a read of X at memory speed, where the row loop's dot
products take several times longer.

``big`` = (tile, aoff_t, partials, acts_t, deltas_t, wt_t, rowloss, sc_t, step_rows, loss_rows):
``aoff_t`` the activation offsets of a tile, ``partials`` (max tiles, P+1), per-worker activation,
delta and transposed-weight buffers (one row per worker, one worker per thread of the run:
numba.get_num_threads() in here would keep numba from caching the kernel), ``rowloss`` one entry
per data row, ``sc_t`` run-dtype scratch, and the smallest batch (``step_rows``) and data set
(``loss_rows``) that take this path.
"""
from numba import prange

from ._jit import parallel_kernel, reassociating_kernel
from .activations import constants
from .losses import dloss_of_residual, loss_of_residual
from .models import backward, forward
from .constants import ZERO, ONE, DELTA

_REDUCE_BLOCK = 512  # gradient entries per block of the final (parallel, per-entry) reduction


@parallel_kernel
def tiled_loss_grad(X, y, idx, start, B, theta, model, loss_code, c, big, g):
    """Mean loss of the rows idx[start:start+B] and its gradient, written into ``g``."""
    sizes, woff, boff, aoff, act = model
    tile, aoff_t, partials, acts_t, deltas_t, wt_t, rowloss, sc_t, step_rows, loss_rows = big
    P = theta.shape[0]
    sc_t[0] = B
    nb = sc_t[0]
    inv_b = c[ONE] / nb
    delta = c[DELTA]
    nt = (B + tile - 1) // tile
    nw = min(nt, acts_t.shape[0])
    pred_off = aoff_t[aoff_t.shape[0] - 1]
    for w in prange(nw):
        acts = acts_t[w]
        deltas = deltas_t[w]
        wt = wt_t[w]
        cc = constants(c)
        for k in range(w, nt, nw):
            s = start + k * tile
            bt = min(tile, start + B - s)
            part = partials[k]
            if sizes.shape[0] == 2:
                _linear_tile(X, y, idx, s, bt, theta, woff[0], boff[0], loss_code, c, inv_b, part, P)
                continue
            forward(X, idx, s, bt, theta, sizes, woff, boff, aoff_t, act, acts, c)
            ls = c[ZERO]
            for r in range(bt):
                res = acts[pred_off + r] - y[idx[s + r]]
                ls += loss_of_residual(loss_code, res, delta, cc)
                deltas[pred_off + r] = dloss_of_residual(loss_code, res, delta, cc) * inv_b
            part[P] = ls
            backward(X, idx, s, bt, theta, sizes, woff, boff, aoff_t, act, acts, deltas, part, wt, c)
    # the sums over tiles, in tile order; blocks of entries in parallel
    for jb in prange((P + _REDUCE_BLOCK - 1) // _REDUCE_BLOCK):
        j0 = jb * _REDUCE_BLOCK
        j1 = min(P, j0 + _REDUCE_BLOCK)
        for j in range(j0, j1):
            g[j] = partials[0, j]
        for k in range(1, nt):
            pk = partials[k]
            for j in range(j0, j1):
                g[j] += pk[j]
    loss = partials[0, P]
    for k in range(1, nt):
        loss += partials[k, P]
    return loss / nb


@reassociating_kernel
def _linear_tile(X, y, idx, s, bt, theta, wo, bo, loss_code, c, inv_b, part, P):
    """A linear model's tile in one pass over its rows, two rows at a time: each row's prediction,
    residual, loss and dL/dpred, and its terms of the partial gradient while the row is in cache.
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
    for r in range(0, bt - 1, 2):
        r0 = idx[s + r]
        r1 = idx[s + r + 1]
        x0 = X[r0]
        x1 = X[r1]
        p0 = c0
        p1 = c0
        for i in range(d):
            p0 += x0[i] * w[i]
        for i in range(d):
            p1 += x1[i] * w[i]
        e0 = (p0 + b) - y[r0]
        e1 = (p1 + b) - y[r1]
        ls += loss_of_residual(loss_code, e0, delta, cc) + loss_of_residual(loss_code, e1, delta, cc)
        d0 = dloss_of_residual(loss_code, e0, delta, cc) * inv_b
        d1 = dloss_of_residual(loss_code, e1, delta, cc) * inv_b
        gb += d0 + d1
        for i in range(d):
            g[i] += x0[i] * d0 + x1[i] * d1
    if bt % 2 == 1:
        r0 = idx[s + bt - 1]
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


@parallel_kernel
def tiled_dataset_loss(X, y, idx, theta, model, loss_code, c, big):
    """Mean loss over all rows of X (``idx`` the identity): for an MLP the row loop's sum bit for bit;
    for the linear model one vectorized pass per tile (like its steps), the tiles' sums in order."""
    sizes, woff, boff, aoff, act = model
    tile, aoff_t, partials, acts_t, deltas_t, wt_t, rowloss, sc_t, step_rows, loss_rows = big
    n = X.shape[0]
    delta = c[DELTA]
    nt = (n + tile - 1) // tile
    nw = min(nt, acts_t.shape[0])
    pred_off = aoff_t[aoff_t.shape[0] - 1]
    if sizes.shape[0] == 2:  # the linear model: per tile as its steps compute it, the tiles in order
        for k in prange(nt):
            rowloss[k] = _linear_tile_loss(X, y, k * tile, min(tile, n - k * tile), theta, woff[0], boff[0],
                                           loss_code, c)
        total = c[ZERO]
        for k in range(nt):
            total += rowloss[k]
        sc_t[1] = n
        return total / sc_t[1]
    for w in prange(nw):
        acts = acts_t[w]
        cc = constants(c)
        for k in range(w, nt, nw):
            s = k * tile
            bt = min(tile, n - s)
            forward(X, idx, s, bt, theta, sizes, woff, boff, aoff_t, act, acts, c)
            for r in range(bt):
                rowloss[s + r] = loss_of_residual(loss_code, acts[pred_off + r] - y[s + r], delta, cc)
    total = c[ZERO]
    for r in range(n):
        total += rowloss[r]
    sc_t[1] = n
    return total / sc_t[1]
