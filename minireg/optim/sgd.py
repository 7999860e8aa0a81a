"""SGD with momentum, dampening, Nesterov and weight decay: ``torch.optim.SGD``, step for step.

Per parameter p with gradient g, at step t = 1, 2, … (torch/optim/sgd.py, ``_single_tensor_sgd``):

    g ← g + wd·p                       weight decay, coupled into the gradient (wd ≠ 0)
    buf ← g                            first step: torch copies g and ignores the dampening τ
    buf ← μ·buf + (1 − τ)·g            later steps (momentum μ ≠ 0)
    g ← g + μ·buf  (Nesterov)  or  g ← buf
    p ← p − lr·g

This is already PyTorch's arithmetic; the code follows it line for line.

Keras and scikit-learn (flavor="keras"/"sklearn") keep the lr-scaled velocity instead of buf:

    v ← μ·v − lr·g;   p ← p + (μ·v − lr·g)  (Nesterov)  or  p ← p + v

the same as torch's while lr is constant, not under a schedule. Neither has dampening; Keras's
weight decay is decoupled and scikit-learn's is its L2 ``alpha`` (train's ``l2``), so both refuse
``dampening`` and ``weight_decay`` here.
"""
from typing import NamedTuple

import numpy as np

from ._common import TORCH, Real, clipped, element

NAMES = ("sgd",)
DEFAULTS = {"sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}}
LIMITS = {"momentum": Real(0.0), "dampening": Real(0.0), "nesterov": bool, "weight_decay": Real(0.0)}
# the other frameworks' defaults, lr included (flavor=...)
FLAVOR_DEFAULTS = {"keras": {"sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False}},
                   "sklearn": {"sgd": {"lr": 0.001, "momentum": 0.9, "nesterov": True}}}
ADAPTIVE = False


class SGDHyper(NamedTuple):
    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float
    flavor: int  # TORCH, KERAS or SKLEARN (optim/_common.py)


class SGDState(NamedTuple):
    momentum_buffer: np.ndarray


Hyper, State = SGDHyper, SGDState


def hyper(name, values, flavor=TORCH):
    """The typed hyperparameters of a validated configuration; refuses Nesterov without momentum."""
    h = SGDHyper(float(values["momentum"]), float(values["dampening"]), bool(values["nesterov"]),
                 float(values["weight_decay"]), flavor)
    if flavor != TORCH and (h.dampening or h.weight_decay):
        raise ValueError("dampening and weight_decay are torch.optim.SGD's; Keras's and scikit-learn's SGD have no "
                         f"dampening, and their weight decay is another rule (got dampening={h.dampening}, "
                         f"weight_decay={h.weight_decay}). Use flavor='torch', or scikit-learn's alpha.")
    if flavor == TORCH and h.nesterov and (h.momentum <= 0 or h.dampening != 0):
        raise ValueError("nesterov=True needs momentum > 0 and dampening == 0 (as torch.optim.SGD); "
                         f"got momentum={h.momentum}, dampening={h.dampening}.")
    return h


def state_rows(h):
    """The state rows this configuration uses."""
    return ("momentum_buffer",) if h.momentum != 0 else ()


@element
def state_of(state):
    """The named state rows of the (rows, P) state array."""
    return SGDState(state[0])


@element
def step_scalars(h, lr, t):
    """The step's scalars in float64, as torch's Python floats: (lr, 1 − τ, whether t is the first step)."""
    return lr, 1.0 - h.dampening, t == 1


@element
def without_momentum(p, g, lr, weight_decay):
    """The new value of parameter p with gradient g when momentum is 0: p − lr·(g + wd·p), the decay
    term only when wd ≠ 0. ``update`` takes it then; the batch-1 loop (kernels/loop.py) runs each
    parameter through it as it computes the parameter's gradient, with no gradient or update vector."""
    if weight_decay != 0:
        g = g + weight_decay * p
    return p - lr * g


@element
def update(i, theta, grad, upd, s, h, scalars, coef, vclip):
    """Parameter i's step; ``scalars`` is step_scalars(h, lr, t). grad[i] keeps g + wd·p (the gradient as the
    optimizer saw it, before clipping). Returns the new parameter."""
    dt = theta.dtype.type
    lr, one_minus_dampening, first = dt(scalars[0]), dt(scalars[1]), scalars[2]
    momentum, weight_decay = dt(h.momentum), dt(h.weight_decay)
    p = theta[i]
    g = clipped(grad[i], coef, vclip)
    if h.flavor != TORCH:  # Keras, scikit-learn: the lr-scaled velocity
        v = momentum * s.momentum_buffer[i] - lr * g
        s.momentum_buffer[i] = v
        p_new = p + (momentum * v - lr * g if h.nesterov else v)
    else:
        if weight_decay != 0:
            grad[i] = grad[i] + weight_decay * p
        if momentum == 0:
            p_new = without_momentum(p, g, lr, weight_decay)
        else:
            if weight_decay != 0:
                g = g + weight_decay * p
            if first:
                buf = g
            else:
                buf = momentum * s.momentum_buffer[i] + one_minus_dampening * g
            s.momentum_buffer[i] = buf
            p_new = p - lr * (g + momentum * buf if h.nesterov else buf)
    theta[i] = p_new
    upd[i] = p_new - p
    return p_new


def explain(v):
    """(lines, the update in the code's order, the update in textbook order) of one recorded step;
    ``v`` is an explain.StepView."""
    h, g, p, dt = v.hyper, v.g, v.p, v.dt
    lines = []
    if h.flavor != TORCH:  # Keras, scikit-learn: the lr-scaled velocity
        lines.append(f"  v ← μ·v − lr·g   (μ={h.momentum:g}; Keras' and scikit-learn's velocity, lr inside)")
        lines.append("  p ← p + (μ·v − lr·g)   (Nesterov)" if h.nesterov else "  p ← p + v")
        lines += v.old_new("momentum_buffer", "v")
        vel = v.state("momentum_buffer")
        code = (p + (dt(h.momentum) * vel - dt(v.lr) * g if h.nesterov else vel)) - p
        return lines, code, code
    if h.momentum:
        mu = h.momentum
        lines.append("  buf ← g  (first step)" if v.first else
                     f"  buf ← μ·buf + (1 − τ)·g   (μ={mu:g}, dampening τ={h.dampening:g})" if h.dampening else
                     f"  buf ← μ·buf + g   (μ={mu:g})")
        lines.append("  p ← p − lr·(g + μ·buf)   (Nesterov)" if h.nesterov else "  p ← p − lr·buf")
        lines += v.old_new("momentum_buffer", "buf")
        buf = v.state("momentum_buffer")
        direction = g + dt(mu) * buf if h.nesterov else buf
    else:
        lines.append("  p ← p − lr·g")
        direction = g
    code = (p - dt(v.lr) * direction) - p
    return lines, code, code
