"""One elementwise kernel per optimizer over the flat (P,) vectors; each parameter's update is the
CPU's own ``*_element`` function from ``minireg.kernels.optimizers``, compiled as a device
function (read that module's docstring): clipping first (``clipped``, the
CPU's own source), then coupled weight decay (also added into ``grad``, so the trace records the
gradient as the optimizer saw it) or AdamW's decoupled shrink, then the update; ``upd`` gets
theta_new − theta_old exactly and the state rows are updated in place.

Scalars: ``hd`` is the run-dtype hyperparameter vector on the device (its lr slot is not used:
the step's ``lr`` is an argument, as are Adam's step-dependent ``step_size``, ``bc2_sqrt`` and
``shrink``, computed on the host in float64 exactly as the CPU kernel computes them, then cast to
the run dtype). The norm-clipping factor comes from ``dsc[DSC_COEF]``, written by the
``loss_and_clip`` kernel of the same step. A non-finite new parameter writes the step index into
the divergence flag. With tracing on, ``pold`` keeps the parameters before the step.

A recorded step of a full trace (``row >= 0``) writes its trace row from here, where every value
is at hand: no extra launch per step (the host passes row = -1 and one-row dummies otherwise).
"""
import math

from numba import cuda

from ..kernels import optimizers as _cpu
from ._config import device, kernel
from .reduce import DSC_COEF, record_element, record_step, skip_step

SGD, RMSPROP, ADAM = _cpu.SGD, _cpu.RMSPROP, _cpu.ADAM
LR, MOMENTUM, DAMPENING, NESTEROV, WEIGHT_DECAY = _cpu.LR, _cpu.MOMENTUM, _cpu.DAMPENING, _cpu.NESTEROV, \
    _cpu.WEIGHT_DECAY
ALPHA, EPS, CENTERED, BETA1, BETA2 = _cpu.ALPHA, _cpu.EPS, _cpu.CENTERED, _cpu.BETA1, _cpu.BETA2
AMSGRAD, DECOUPLED = _cpu.AMSGRAD, _cpu.DECOUPLED
ONE_MINUS_DAMPENING, ONE_MINUS_ALPHA = _cpu.ONE_MINUS_DAMPENING, _cpu.ONE_MINUS_ALPHA
ONE_MINUS_BETA1, ONE_MINUS_BETA2 = _cpu.ONE_MINUS_BETA1, _cpu.ONE_MINUS_BETA2


clipped = device(_cpu.clipped.py_func)
# the per-parameter updates are the CPU kernels' own functions, compiled as device functions
sgd_element = device(_cpu.sgd_element.py_func)
rmsprop_element = device(_cpu.rmsprop_element.py_func)
adam_element = device(_cpu.adam_element.py_func)


@device
def finish_element(i, t, p, pn, dflag, row, grad, upd, state, tr_params, tr_grad, tr_update, tr_state, srows,
                   n_state):
    """After parameter i's update (p before, pn after): its entries of the trace row of a recorded
    step, and the divergence flag when pn is not finite."""
    if row >= 0:
        record_element(i, row, p, grad, upd, state, tr_params, tr_grad, tr_update, tr_state, srows, n_state)
    if not math.isfinite(pn):
        dflag[0] = t


@kernel
def sgd_step(dflag, t, theta, grad, upd, state, pold, keep_pold, hd, lr, dsc, vclip, row, tr_scalars, tr_params,
             tr_grad, tr_update, tr_state, srows, n_state):
    """t: 0-based step index (torch's step counter is t + 1)."""
    if skip_step(dflag, t):
        return
    coef = dsc[DSC_COEF]
    mu, wd, damp = hd[MOMENTUM], hd[WEIGHT_DECAY], hd[ONE_MINUS_DAMPENING]
    use_wd, use_mom, nesterov = hd[WEIGHT_DECAY] != 0, hd[MOMENTUM] != 0, hd[NESTEROV] != 0
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        p = theta[i]
        if keep_pold:
            pold[i] = p
        pn = sgd_element(i, theta, grad, upd, state, lr, mu, wd, use_wd, use_mom, nesterov, damp, t == 0,
                         coef, vclip)
        finish_element(i, t, p, pn, dflag, row, grad, upd, state, tr_params, tr_grad, tr_update, tr_state,
                       srows, n_state)
    if row >= 0 and cuda.grid(1) == 0:
        record_step(row, tr_scalars, dsc, lr)


@kernel
def rmsprop_step(dflag, t, theta, grad, upd, state, pold, keep_pold, hd, lr, dsc, vclip, row, tr_scalars,
                 tr_params, tr_grad, tr_update, tr_state, srows, n_state):
    if skip_step(dflag, t):
        return
    coef = dsc[DSC_COEF]
    mu, wd, alpha, oma, eps = hd[MOMENTUM], hd[WEIGHT_DECAY], hd[ALPHA], hd[ONE_MINUS_ALPHA], hd[EPS]
    use_wd, use_mom, centered = hd[WEIGHT_DECAY] != 0, hd[MOMENTUM] > 0, hd[CENTERED] != 0
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        p = theta[i]
        if keep_pold:
            pold[i] = p
        pn = rmsprop_element(i, theta, grad, upd, state, lr, mu, wd, alpha, oma, eps, use_wd, use_mom,
                             centered, coef, vclip)
        finish_element(i, t, p, pn, dflag, row, grad, upd, state, tr_params, tr_grad, tr_update, tr_state,
                       srows, n_state)
    if row >= 0 and cuda.grid(1) == 0:
        record_step(row, tr_scalars, dsc, lr)


@kernel
def adam_step(dflag, t, theta, grad, upd, state, pold, keep_pold, hd, step_size, bc2_sqrt, shrink,
              decoupled, use_wd, amsgrad, dsc, vclip, lr, row, tr_scalars, tr_params, tr_grad, tr_update, tr_state,
              srows, n_state):
    if skip_step(dflag, t):
        return
    coef = dsc[DSC_COEF]
    wd, b2, omb1, omb2, eps = hd[WEIGHT_DECAY], hd[BETA2], hd[ONE_MINUS_BETA1], hd[ONE_MINUS_BETA2], hd[EPS]
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        p = theta[i]
        if keep_pold:
            pold[i] = p
        pn = adam_element(i, theta, grad, upd, state, step_size, bc2_sqrt, shrink, wd, b2, omb1, omb2, eps,
                          decoupled, use_wd, amsgrad, coef, vclip)
        finish_element(i, t, p, pn, dflag, row, grad, upd, state, tr_params, tr_grad, tr_update, tr_state,
                       srows, n_state)
    if row >= 0 and cuda.grid(1) == 0:
        record_step(row, tr_scalars, dsc, lr)
