"""One elementwise kernel per optimizer over the flat (P,) vectors, element for element the body of
the loops in ``minireg.kernels.optimizers`` (read its docstring): clipping first (``clipped``, the
CPU's own source), then coupled weight decay (also added into ``grad``, so the trace records the
gradient as the optimizer saw it) or AdamW's decoupled shrink, then the update; ``upd`` gets
theta_new − theta_old exactly and the state rows are updated in place.

Scalars: ``hd`` is the run-dtype hyperparameter vector on the device (its lr slot is not used:
the step's ``lr`` is an argument, as are Adam's step-dependent ``step_size``, ``bc2_sqrt`` and
``shrink``, computed on the host in float64 exactly as the CPU kernel computes them, then cast to
the run dtype). The norm-clipping factor comes from ``dsc[DSC_COEF]``, written by the
``loss_and_clip`` kernel of the same step. A non-finite new parameter writes the step index into
the divergence flag. With tracing on, ``pold`` keeps the parameters before the step.
"""
import math

from numba import cuda

from ..kernels import optimizers as _cpu
from ._config import device, kernel
from .reduce import DSC_COEF, skip_step

SGD, RMSPROP, ADAM = _cpu.SGD, _cpu.RMSPROP, _cpu.ADAM
LR, MOMENTUM, DAMPENING, NESTEROV, WEIGHT_DECAY = _cpu.LR, _cpu.MOMENTUM, _cpu.DAMPENING, _cpu.NESTEROV, \
    _cpu.WEIGHT_DECAY
ALPHA, EPS, CENTERED, BETA1, BETA2 = _cpu.ALPHA, _cpu.EPS, _cpu.CENTERED, _cpu.BETA1, _cpu.BETA2
AMSGRAD, DECOUPLED = _cpu.AMSGRAD, _cpu.DECOUPLED
ONE_MINUS_DAMPENING, ONE_MINUS_ALPHA = _cpu.ONE_MINUS_DAMPENING, _cpu.ONE_MINUS_ALPHA
ONE_MINUS_BETA1, ONE_MINUS_BETA2 = _cpu.ONE_MINUS_BETA1, _cpu.ONE_MINUS_BETA2


clipped = device(_cpu.clipped.py_func)


@kernel
def sgd_step(dflag, t, theta, grad, upd, state, pold, keep_pold, hd, lr, dsc, vclip):
    """t: 0-based step index (torch's step counter is t + 1)."""
    if skip_step(dflag, t):
        return
    coef = dsc[DSC_COEF]
    mu = hd[MOMENTUM]
    wd = hd[WEIGHT_DECAY]
    use_wd = hd[WEIGHT_DECAY] != 0
    use_mom = hd[MOMENTUM] != 0
    nesterov = hd[NESTEROV] != 0
    damp = hd[ONE_MINUS_DAMPENING]
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        p = theta[i]
        if keep_pold:
            pold[i] = p
        g = clipped(grad[i], coef, vclip)
        if use_wd:
            g = g + wd * p
            grad[i] = grad[i] + wd * p
        if use_mom:
            if t == 0:
                buf = g
            else:
                buf = mu * state[0, i] + damp * g
            state[0, i] = buf
            if nesterov:
                g = g + mu * buf
            else:
                g = buf
        pn = p - lr * g
        theta[i] = pn
        upd[i] = pn - p
        if not math.isfinite(pn):
            dflag[0] = t


@kernel
def rmsprop_step(dflag, t, theta, grad, upd, state, pold, keep_pold, hd, lr, dsc, vclip):
    if skip_step(dflag, t):
        return
    coef = dsc[DSC_COEF]
    mu = hd[MOMENTUM]
    wd = hd[WEIGHT_DECAY]
    alpha = hd[ALPHA]
    oma = hd[ONE_MINUS_ALPHA]
    eps = hd[EPS]
    use_wd = hd[WEIGHT_DECAY] != 0
    use_mom = hd[MOMENTUM] > 0
    centered = hd[CENTERED] != 0
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        p = theta[i]
        if keep_pold:
            pold[i] = p
        g = clipped(grad[i], coef, vclip)
        if use_wd:
            g = g + wd * p
            grad[i] = grad[i] + wd * p
        v = alpha * state[0, i] + oma * g * g
        state[0, i] = v
        if centered:
            ga = state[1, i]
            ga = ga + oma * (g - ga)
            state[1, i] = ga
            avg = math.sqrt(v - ga * ga) + eps
        else:
            avg = math.sqrt(v) + eps
        if use_mom:
            buf = mu * state[2, i] + g / avg
            state[2, i] = buf
            pn = p - lr * buf
        else:
            pn = p - lr * (g / avg)
        theta[i] = pn
        upd[i] = pn - p
        if not math.isfinite(pn):
            dflag[0] = t


@kernel
def adam_step(dflag, t, theta, grad, upd, state, pold, keep_pold, hd, step_size, bc2_sqrt, shrink,
              decoupled, use_wd, amsgrad, dsc, vclip):
    if skip_step(dflag, t):
        return
    coef = dsc[DSC_COEF]
    wd = hd[WEIGHT_DECAY]
    b2 = hd[BETA2]
    omb1 = hd[ONE_MINUS_BETA1]
    omb2 = hd[ONE_MINUS_BETA2]
    eps = hd[EPS]
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        p0 = theta[i]
        if keep_pold:
            pold[i] = p0
        p = p0
        g = clipped(grad[i], coef, vclip)
        if use_wd:
            if decoupled:
                p = p * shrink
            else:
                g = g + wd * p
                grad[i] = grad[i] + wd * p
        m = state[0, i]
        m = m + omb1 * (g - m)
        state[0, i] = m
        v = state[1, i] * b2 + omb2 * g * g
        state[1, i] = v
        if amsgrad:
            vmax = v if v > state[2, i] else state[2, i]  # max(state, v) as numba and Python do
            state[2, i] = vmax
            denom = math.sqrt(vmax) / bc2_sqrt + eps
        else:
            denom = math.sqrt(v) / bc2_sqrt + eps
        pn = p - step_size * (m / denom)
        theta[i] = pn
        upd[i] = pn - p0
        if not math.isfinite(pn):
            dflag[0] = t
