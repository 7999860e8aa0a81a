"""Adagrad: ``torch.optim.Adagrad``, step for step.

Per parameter p with gradient g at step t = 1, 2, … (torch/optim/adagrad.py, ``_single_tensor_adagrad``):

    g ← g + wd·p                         weight decay, coupled into the gradient (wd ≠ 0)
    clr = lr / (1 + (t − 1)·lr_decay)    the step's learning rate (float64, a Python float in torch)
    sum ← sum + g²                       the sum of squared gradients, from initial_accumulator_value
    p ← p − clr·g/(√sum + ε)

This is already PyTorch's arithmetic; the code follows it line for line.
"""
import math
from typing import NamedTuple

import numpy as np

from ._common import TORCH, Real, clipped, element

NAMES = ("adagrad",)
DEFAULTS = {"adagrad": {"lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10}}
LIMITS = {"lr_decay": Real(0.0), "weight_decay": Real(0.0), "initial_accumulator_value": Real(0.0),
          "eps": Real(0.0)}
ADAPTIVE = True


class AdagradHyper(NamedTuple):
    lr_decay: float
    weight_decay: float
    initial_accumulator_value: float
    eps: float


class AdagradState(NamedTuple):
    sum: np.ndarray


Hyper, State = AdagradHyper, AdagradState


def hyper(name, values, flavor=TORCH):
    if flavor != TORCH:
        raise ValueError("optimizer='adagrad' is torch.optim.Adagrad; it has no keras or sklearn flavor here.")
    return AdagradHyper(float(values["lr_decay"]), float(values["weight_decay"]),
                        float(values["initial_accumulator_value"]), float(values["eps"]))


def state_rows(h):
    """The state rows this configuration uses."""
    return ("sum",)


def initial_state(h, state):
    """torch starts the sum at initial_accumulator_value."""
    state[0] = h.initial_accumulator_value


@element
def state_of(state):
    return AdagradState(state[0])


@element
def step_scalars(h, lr, t):
    """(clr,) = lr/(1 + (t − 1)·lr_decay) in float64."""
    return (lr / (1.0 + (t - 1) * h.lr_decay),)


@element
def update(i, theta, grad, upd, s, h, scalars, coef, vclip):
    """Parameter i's step; ``scalars`` is step_scalars(h, lr, t). Returns the new parameter."""
    dt = theta.dtype.type
    clr, eps, weight_decay = dt(scalars[0]), dt(h.eps), dt(h.weight_decay)
    p = theta[i]
    g = clipped(grad[i], coef, vclip)
    if weight_decay != 0:
        g = g + weight_decay * p
        grad[i] = grad[i] + weight_decay * p
    total = s.sum[i] + g * g
    s.sum[i] = total
    p_new = p - clr * (g / (math.sqrt(total) + eps))
    theta[i] = p_new
    upd[i] = p_new - p
    return p_new


def explain(v):
    """(lines, the update in the code's order, the update in textbook order) of one recorded step;
    ``v`` is an explain.StepView."""
    h, g, p, dt = v.hyper, v.g, v.p, v.dt
    clr = v.scalars[0]
    lines = [f"  clr = lr/(1 + (t − 1)·lr_decay) = {clr:.6g}   (t={v.t}, lr_decay={h.lr_decay:g})"
             if h.lr_decay else "  clr = lr/(1 + (t − 1)·lr_decay) = lr   (lr_decay=0)"]
    lines.append("  sum ← sum + g²" + (f"   (from initial_accumulator_value={h.initial_accumulator_value:g})"
                                       if v.first and h.initial_accumulator_value else ""))
    if v.first:
        lines += v.named("sum old", np.full_like(p, h.initial_accumulator_value)) + v.named("sum new", v.state("sum"))
    else:
        lines += v.old_new("sum", "sum")
    std = np.sqrt(v.state("sum")) + dt(h.eps)
    lines.append(f"  p ← p − clr·g/(√sum + ε)   (ε={h.eps:g})")
    lines += v.named("√sum+ε", std)
    v.values.update(clr=clr, sum=v.state("sum"))
    code = (p - dt(clr) * (g / std)) - p
    return lines, code, code
