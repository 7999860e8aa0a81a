"""RMSprop, plain or centered, with momentum and weight decay: ``torch.optim.RMSprop``, step for step.

Per parameter p with gradient g (torch/optim/rmsprop.py, ``_single_tensor_rmsprop``):

    g ← g + wd·p                                weight decay, coupled into the gradient (wd ≠ 0)
    v ← α·v + (1 − α)·g²                        square_avg
    centered:  ḡ ← ḡ + (1 − α)·(g − ḡ)          grad_avg (torch's lerp_)
               avg = √(v − ḡ²) + ε
    otherwise: avg = √v + ε                     ε outside the square root (Keras puts it inside)
    momentum μ > 0:  buf ← μ·buf + g/avg;  p ← p − lr·buf
    otherwise:       p ← p − lr·g/avg

No bias correction. This is already PyTorch's arithmetic; the code follows it line for line.

Keras (flavor="keras"; its ``rho`` is α, its ``epsilon`` ε) puts ε inside the square root:

    avg = √(v + ε)   (centered: √(v − ḡ² + ε)),   with ḡ ← ρ·ḡ + (1 − ρ)·g
    inc = lr·g/avg;  momentum: buf ← μ·buf + inc, p ← p − buf;  otherwise p ← p − inc
"""
import math
from typing import NamedTuple

import numpy as np

from ._common import KERAS, TORCH, Real, clipped, element

NAMES = ("rmsprop",)
DEFAULTS = {"rmsprop": {"alpha": 0.99, "eps": 1e-8, "centered": False, "momentum": 0.0, "weight_decay": 0.0}}
LIMITS = {"alpha": Real(0.0, 1.0), "eps": Real(0.0), "centered": bool, "momentum": Real(0.0),
          "weight_decay": Real(0.0)}
FLAVOR_DEFAULTS = {"keras": {"rmsprop": {"lr": 0.001, "alpha": 0.9, "eps": 1e-7}}}
ADAPTIVE = True


class RMSpropHyper(NamedTuple):
    alpha: float
    eps: float
    centered: bool
    momentum: float
    weight_decay: float
    flavor: int  # TORCH or KERAS (optim/_common.py)


class RMSpropState(NamedTuple):
    square_avg: np.ndarray
    grad_avg: np.ndarray
    momentum_buffer: np.ndarray


Hyper, State = RMSpropHyper, RMSpropState


def hyper(name, values, flavor=TORCH):
    h = RMSpropHyper(float(values["alpha"]), float(values["eps"]), bool(values["centered"]),
                     float(values["momentum"]), float(values["weight_decay"]), flavor)
    if flavor != TORCH and h.weight_decay:
        raise ValueError(f"weight_decay={h.weight_decay} with flavor='keras' RMSprop is not replayed (Keras decays "
                         "every weight decoupled); use flavor='torch' or optimizer='adamw'.")
    return h


def state_rows(h):
    """The state rows this configuration uses."""
    return ("square_avg",) + (("grad_avg",) if h.centered else ()) + (("momentum_buffer",) if h.momentum > 0 else ())


@element
def state_of(state):
    return RMSpropState(state[0], state[1], state[2])


@element
def step_scalars(h, lr, t):
    """(lr, 1 − α) in float64, as torch's Python floats."""
    return lr, 1.0 - h.alpha


@element
def update(i, theta, grad, upd, s, h, scalars, coef, vclip):
    """Parameter i's step; ``scalars`` is step_scalars(h, lr, t). Returns the new parameter."""
    dt = theta.dtype.type
    lr, one_minus_alpha = dt(scalars[0]), dt(scalars[1])
    alpha, eps, momentum, weight_decay = dt(h.alpha), dt(h.eps), dt(h.momentum), dt(h.weight_decay)
    p = theta[i]
    g = clipped(grad[i], coef, vclip)
    if weight_decay != 0:
        g = g + weight_decay * p
        grad[i] = grad[i] + weight_decay * p
    if h.flavor == KERAS:
        v = s.square_avg[i] * alpha + one_minus_alpha * (g * g)
        s.square_avg[i] = v
        den = v + eps
        if h.centered:
            g_avg = s.grad_avg[i] * alpha + one_minus_alpha * g
            s.grad_avg[i] = g_avg
            den = den - g_avg * g_avg
        inc = (g * lr) / math.sqrt(den)
        if momentum > 0:
            inc = s.momentum_buffer[i] * momentum + inc
            s.momentum_buffer[i] = inc
        p_new = p - inc
        theta[i] = p_new
        upd[i] = p_new - p
        return p_new
    v = alpha * s.square_avg[i] + one_minus_alpha * g * g
    s.square_avg[i] = v
    if h.centered:
        g_avg = s.grad_avg[i]
        g_avg = g_avg + one_minus_alpha * (g - g_avg)
        s.grad_avg[i] = g_avg
        avg = math.sqrt(v - g_avg * g_avg) + eps
    else:
        avg = math.sqrt(v) + eps
    if momentum > 0:
        buf = momentum * s.momentum_buffer[i] + g / avg
        s.momentum_buffer[i] = buf
        p_new = p - lr * buf
    else:
        p_new = p - lr * (g / avg)
    theta[i] = p_new
    upd[i] = p_new - p
    return p_new


def explain(v):
    """(lines, the update in the code's order, the update in textbook order) of one recorded step;
    ``v`` is an explain.StepView."""
    h, g, p, dt = v.hyper, v.g, v.p, v.dt
    if h.flavor == KERAS:
        return _explain_keras(v)
    lines = [f"  v ← α·v + (1 − α)·g²   (α={h.alpha:g})"] + v.old_new("square_avg", "v")
    sq = v.state("square_avg")
    if h.centered:
        g_avg = v.state("grad_avg")
        lines.append("  ḡ ← ḡ + (1 − α)·(g − ḡ);   avg = √(v − ḡ²) + ε   (centered)")
        lines += v.old_new("grad_avg", "ḡ")
        avg = np.sqrt(sq - g_avg * g_avg) + dt(h.eps)
    else:
        lines.append(f"  avg = √v + ε   (ε={h.eps:g})")
        avg = np.sqrt(sq) + dt(h.eps)
    lines += v.named("avg", avg)
    if h.momentum > 0:
        lines.append(f"  buf ← μ·buf + g/avg   (μ={h.momentum:g});   p ← p − lr·buf")
        lines += v.old_new("momentum_buffer", "buf")
        code = (p - dt(v.lr) * v.state("momentum_buffer")) - p
    else:
        lines.append("  p ← p − lr·g/avg")
        code = (p - dt(v.lr) * (g / avg)) - p
    return lines, code, code


def _explain_keras(v):
    """Keras's RMSprop: ε inside the square root."""
    h, g, p, dt = v.hyper, v.g, v.p, v.dt
    lines = [f"  v ← ρ·v + (1 − ρ)·g²   (ρ={h.alpha:g}, Keras)"] + v.old_new("square_avg", "v")
    den = v.state("square_avg") + dt(h.eps)
    if h.centered:
        g_avg = v.state("grad_avg")
        lines.append("  ḡ ← ρ·ḡ + (1 − ρ)·g;   den = √(v − ḡ² + ε)   (centered)")
        lines += v.old_new("grad_avg", "ḡ")
        den = den - g_avg * g_avg
    else:
        lines.append(f"  den = √(v + ε)   (ε={h.eps:g}, inside the root: Keras)")
    den = np.sqrt(den)
    lines += v.named("den", den)
    inc = (g * dt(v.lr)) / den
    if h.momentum > 0:
        lines.append(f"  buf ← μ·buf + lr·g/den   (μ={h.momentum:g});   p ← p − buf")
        lines += v.old_new("momentum_buffer", "buf")
        code = (p - v.state("momentum_buffer")) - p
    else:
        lines.append("  p ← p − lr·g/den")
        code = (p - inc) - p
    return lines, code, code
