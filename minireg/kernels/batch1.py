"""Batch-1 SGD on the linear model: one fused pass per sample (issue #16, item 3).

The general loop (loop.py) spends most of a batch-1 step outside the arithmetic: a call each for
the forward pass, the loss, the backward pass, the clipping factor and the optimizer, each with
its argument structs, and the checks for the trace, L1 and clipping. For the plainest case, a
linear model trained by SGD without momentum (weight decay allowed), one row per step, no trace,
no clipping, no L1, one lr per epoch, this kernel runs an epoch's steps in one loop with the same
arithmetic, in the same order, as the general loop's (the same bits: tests/test_batch1.py):
    pred = (0 + Σ_i x_i·w_i) + b,  r = pred − y,  loss = l(r)/1,  dl = l'(r)·(1/1)
    g_i = 0 + x_i·dl (+ wd·w_i),  w_i ← w_i − lr·g_i;  g_b = 0 + dl,  b ← b − lr·g_b
and it stops where the general loop would: before a step once ``stop[0]`` is set, and after the
first step whose loss or new parameters are not finite.
"""
import math

from ._jit import kernel
from .activations import constants
from .losses import dloss_of_residual, loss_of_residual
from .optimizers import WEIGHT_DECAY

RAN, STOPPED, DIVERGED = 0, 1, 2


def eligible(model, optimizer, hparams, batch_size, n, trace, l1, clip_grad_norm, clip_grad_value, step_lrs,
             power_t, device):
    """Whether a run's epochs can run here (train() passes the loop a non-None ``one_row`` then, and
    numba compiles this path only into the loops of runs that take it)."""
    return (device == "cpu" and model == "linear" and optimizer == "sgd" and hparams.get("momentum", 0) == 0
            and batch_size == 1 and n > 1 and trace is False and l1 == 0 and clip_grad_norm is None
            and clip_grad_value is None and step_lrs is None and power_t == 0)


@kernel
def sgd1_rows(X, y, idx, first, theta, woff, boff, hd, loss_code, c, sc, stop):
    """Steps on the rows idx[first], idx[first + 1], … with lr hd[0]; (next row, RAN | STOPPED |
    DIVERGED). A diverged step is applied, as in the general loop; the next row is then the one
    after it."""
    n, d = X.shape
    w = theta[woff[0]:woff[0] + d]
    bo = boff[0]
    lr, wd = hd[0], hd[WEIGHT_DECAY]
    use_wd = wd != 0
    cc = constants(c)
    c0, delta = c[0], c[4]
    sc[3] = 1
    one = sc[3]
    inv_b = c[2] / one
    for start in range(first, n):
        if stop[0] != 0:
            return start, STOPPED
        row = idx[start]
        x = X[row]
        s = c0
        for i in range(d):
            s += x[i] * w[i]
        res = (s + theta[bo]) - y[row]
        loss = (c0 + loss_of_residual(loss_code, res, delta, cc)) / one
        dl = dloss_of_residual(loss_code, res, delta, cc) * inv_b
        ok = math.isfinite(loss)
        if use_wd:
            for i in range(d):
                p = w[i]
                pn = p - lr * ((c0 + x[i] * dl) + wd * p)
                w[i] = pn
                ok = ok and math.isfinite(pn)
            p = theta[bo]
            pn = p - lr * ((c0 + dl) + wd * p)
        else:
            for i in range(d):
                pn = w[i] - lr * (c0 + x[i] * dl)
                w[i] = pn
                ok = ok and math.isfinite(pn)
            pn = theta[bo] - lr * (c0 + dl)
        theta[bo] = pn
        if not (ok and math.isfinite(pn)):
            return start + 1, DIVERGED
    return n, RAN


@kernel
def linear_dataset_loss(X, y, theta, woff, boff, loss_code, c, sc):
    """loop.dataset_loss of a linear model bit for bit (each row's prediction (0 + Σ_i x_i·w_i) + b,
    the losses added in row order), without its chunks of ``batch_size`` rows: with batch_size 1
    that was a call of the forward pass per row, as dear as the epoch's training."""
    n, d = X.shape
    w = theta[woff[0]:woff[0] + d]
    b = theta[boff[0]]
    cc = constants(c)
    c0, delta = c[0], c[4]
    s = c0
    for r in range(n):
        x = X[r]
        p = c0
        for i in range(d):
            p += x[i] * w[i]
        s += loss_of_residual(loss_code, (p + b) - y[r], delta, cc)
    sc[3] = n
    return s / sc[3]
