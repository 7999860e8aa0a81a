"""Batch-1 SGD on the linear model: one fused pass per sample (issue #16, item 3).

The general loop (loop.py) spends most of a batch-1 step outside the arithmetic: a call each for
the forward pass, the loss, the backward pass, the clipping factor and the optimizer, each with
its argument structs, and the checks for the trace, L1 and clipping. For the plainest case, a
linear model trained by SGD without momentum, one row per step, no trace, no clipping, no L1 or
L2 term, one lr per epoch, this kernel runs an epoch's steps in one loop with the same arithmetic,
in the same order, as the general loop's (the same bits: tests/test_batch1.py):
    pred = (0 + Σ_i x_i·w_i) + b,  r = pred − y,  loss = l(r)/1,  dl = l'(r)·(1/1)
    g_i = 0 + x_i·dl,  g_b = 0 + dl,  then the optimizer's own step (minireg/optim)
and it stops where the general loop would: before a step once ``stop[0]`` is set, and after the
first step whose loss or new parameters are not finite.
"""
import math

from ..optim import optimizer_step
from ._jit import kernel
from .activations import constants
from .losses import dloss_of_residual, loss_of_residual
from .constants import ZERO, ONE, DELTA

RAN, STOPPED, DIVERGED = 0, 1, 2


def eligible(s, batch_size, n, power_t):
    """Whether a run's epochs can run here (``s``: train's Settings; train() passes the loop a
    non-None ``one_row`` then, and numba compiles this path only into the loops of runs that take it)."""
    return (s.device == "cpu" and s.model == "linear" and s.optimizer == "sgd" and s.hparams.get("momentum", 0) == 0
            and batch_size == 1 and n > 1 and s.trace is False and s.l1 == 0 and s.l2 == 0
            and s.clip_grad_norm is None and s.clip_grad_value is None and s.step_lrs is None and power_t == 0)


@kernel
def sgd1_rows(X, y, idx, first, theta, state, grad, upd, woff, boff, h, lr, t, loss_code, c, scratch, stop):
    """Steps t, t + 1, … on the rows idx[first], idx[first + 1], … with learning rate ``lr``; (next
    row, RAN | STOPPED | DIVERGED). A diverged step is applied, as in the general loop; the next row
    is then the one after it."""
    n, d = X.shape
    w = theta[woff[0]:woff[0] + d]
    gw = grad[woff[0]:woff[0] + d]
    bo = boff[0]
    cc = constants(c)
    c0, delta, one = c[ZERO], c[DELTA], c[ONE]
    scratch[3] = 1
    inv_b = c[ONE] / scratch[3]
    for start in range(first, n):
        if stop[0] != 0:
            return start, STOPPED
        row = idx[start]
        x = X[row]
        s = c0
        for i in range(d):
            s += x[i] * w[i]
        res = (s + theta[bo]) - y[row]
        loss = (c0 + loss_of_residual(loss_code, res, delta, cc)) / scratch[3]
        dl = dloss_of_residual(loss_code, res, delta, cc) * inv_b
        for i in range(d):
            gw[i] = c0 + x[i] * dl
        grad[bo] = c0 + dl
        ok = optimizer_step(h, theta, grad, upd, state, lr, t + 1 + start - first, one, c0)
        if not (ok and math.isfinite(loss)):
            return start + 1, DIVERGED
    return n, RAN


@kernel
def linear_dataset_loss(X, y, theta, woff, boff, loss_code, c, scratch):
    """loop.dataset_loss of a linear model bit for bit (each row's prediction (0 + Σ_i x_i·w_i) + b,
    the losses added in row order), without its chunks of ``batch_size`` rows: with batch_size 1
    that was a call of the forward pass per row, as dear as the epoch's training."""
    n, d = X.shape
    w = theta[woff[0]:woff[0] + d]
    b = theta[boff[0]]
    cc = constants(c)
    c0, delta = c[ZERO], c[DELTA]
    s = c0
    for r in range(n):
        x = X[r]
        p = c0
        for i in range(d):
            p += x[i] * w[i]
        s += loss_of_residual(loss_code, (p + b) - y[r], delta, cc)
    scratch[3] = n
    return s / scratch[3]
