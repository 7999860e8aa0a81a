"""Adam and AdamW: ``torch.optim.Adam`` and ``torch.optim.AdamW``, step for step.

Textbook (Kingma & Ba 2015; AdamW: Loshchilov & Hutter 2019), per parameter p with gradient g at
step t = 1, 2, …:

    Adam:  g ← g + wd·p                     AdamW:  p ← p·(1 − lr·wd)      (weight decay, wd ≠ 0)
    m ← β1·m + (1 − β1)·g                   exp_avg
    v ← β2·v + (1 − β2)·g²                  exp_avg_sq
    AMSGrad: v_max ← max(v_max, v), and v_max replaces v below
    m̂ = m/(1 − β1ᵗ),  v̂ = v/(1 − β2ᵗ)
    p ← p − lr·m̂/(√v̂ + ε)

PyTorch computes the same in another order (torch/optim/adam.py, ``_single_tensor_adam``), and so
does the code, to match it to the bit:

    m ← m + (1 − β1)·(g − m)                exp_avg.lerp_(g, 1 − β1)
    v ← v·β2 + (1 − β2)·g·g                 exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2)
    p ← p − (lr/(1 − β1ᵗ))·m/(√v/√(1 − β2ᵗ) + ε)

so ε is added after the bias correction of √v (Keras and scikit-learn add it before). The scalars
lr/(1 − β1ᵗ), √(1 − β2ᵗ) and 1 − lr·wd are float64, as torch's Python floats.

Keras and scikit-learn (flavor="keras"/"sklearn") fold the bias corrections into the step size:

    m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
    lr_t = lr·√(1 − β2ᵗ)/(1 − β1ᵗ);   p ← p − lr_t·m/(√v + ε)

so their ε acts like torch's ε/√(1 − β2ᵗ). Keras's weight decay is decoupled for Adam and AdamW
alike; scikit-learn's Adam has none (its L2 ``alpha`` is train's ``l2``).
"""
import math
from typing import NamedTuple

import numpy as np

from ._common import KERAS, SKLEARN, TORCH, Real, clipped, element, kernel

NAMES = ("adam", "adamw")
DEFAULTS = {
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False},
}
LIMITS = {"beta1": Real(0.0, 1.0, high_open=True), "beta2": Real(0.0, 1.0, high_open=True), "eps": Real(0.0),
          "weight_decay": Real(0.0), "amsgrad": bool}
FLAVOR_DEFAULTS = {"keras": {"adam": {"lr": 0.001, "eps": 1e-7}, "adamw": {"lr": 0.001, "eps": 1e-7,
                                                                          "weight_decay": 0.004}},
                   "sklearn": {"adam": {"lr": 0.001, "eps": 1e-8}}}
ADAPTIVE = True


class AdamHyper(NamedTuple):
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    amsgrad: bool
    decoupled: bool  # AdamW: weight decay shrinks p instead of adding to g
    flavor: int  # TORCH, KERAS or SKLEARN (optim/_common.py)


class AdamState(NamedTuple):
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    max_exp_avg_sq: np.ndarray


Hyper, State = AdamHyper, AdamState


def hyper(name, values, flavor=TORCH):
    # Keras decays decoupled whatever the optimizer
    h = AdamHyper(float(values["beta1"]), float(values["beta2"]), float(values["eps"]), float(values["weight_decay"]),
                  bool(values["amsgrad"]), name == "adamw" or flavor != TORCH, flavor)
    if flavor == SKLEARN and (h.weight_decay or h.amsgrad):
        raise ValueError("scikit-learn's Adam has no weight_decay or amsgrad; its L2 penalty is alpha.")
    return h


def state_rows(h):
    """The state rows this configuration uses."""
    return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if h.amsgrad else ())


@element
def state_of(state):
    return AdamState(state[0], state[1], state[2])


@element
def step_scalars(h, lr, t):
    """(lr/(1 − β1ᵗ), √(1 − β2ᵗ), 1 − lr·wd, 1 − β1, 1 − β2) in float64, as torch's Python floats; for
    Keras and scikit-learn the first is their step size lr·√(1 − β2ᵗ)/(1 − β1ᵗ)."""
    if h.flavor != TORCH:
        return lr * math.sqrt(1.0 - h.beta2 ** t) / (1.0 - h.beta1 ** t), 1.0, 1.0 - lr * h.weight_decay,\
            1.0 - h.beta1, 1.0 - h.beta2
    return lr / (1.0 - h.beta1 ** t), math.sqrt(1.0 - h.beta2 ** t), 1.0 - lr * h.weight_decay,\
        1.0 - h.beta1, 1.0 - h.beta2


@element
def update(i, theta, grad, upd, s, h, scalars, coef, vclip):
    """Parameter i's step; ``scalars`` is step_scalars(h, lr, t). Returns the new parameter."""
    dt = theta.dtype.type
    step_size, bc2_sqrt, shrink = dt(scalars[0]), dt(scalars[1]), dt(scalars[2])
    one_minus_beta1, one_minus_beta2 = dt(scalars[3]), dt(scalars[4])
    beta2, eps, weight_decay = dt(h.beta2), dt(h.eps), dt(h.weight_decay)
    p_old = theta[i]
    p = p_old
    g = clipped(grad[i], coef, vclip)
    if h.weight_decay != 0:
        if h.decoupled:
            p = p * shrink
        else:
            g = g + weight_decay * p
            grad[i] = grad[i] + weight_decay * p
    if h.flavor != TORCH:  # Keras, scikit-learn: the bias corrections folded into the step size
        beta1 = dt(h.beta1)
        m = beta1 * s.exp_avg[i] + one_minus_beta1 * g
        s.exp_avg[i] = m
        v = beta2 * s.exp_avg_sq[i] + one_minus_beta2 * (g * g)
        s.exp_avg_sq[i] = v
        if h.amsgrad:
            v = v if v > s.max_exp_avg_sq[i] else s.max_exp_avg_sq[i]
            s.max_exp_avg_sq[i] = v
        p_new = p - (step_size * m) / (math.sqrt(v) + eps)
        theta[i] = p_new
        upd[i] = p_new - p_old
        return p_new
    m = s.exp_avg[i]
    m = m + one_minus_beta1 * (g - m)
    s.exp_avg[i] = m
    v = s.exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
    s.exp_avg_sq[i] = v
    if h.amsgrad:
        v_max = v if v > s.max_exp_avg_sq[i] else s.max_exp_avg_sq[i]  # max(v_max, v), spelled out for numba.cuda
        s.max_exp_avg_sq[i] = v_max
        denom = math.sqrt(v_max) / bc2_sqrt + eps
    else:
        denom = math.sqrt(v) / bc2_sqrt + eps
    p_new = p - step_size * (m / denom)
    theta[i] = p_new
    upd[i] = p_new - p_old
    return p_new


@kernel
def step(h, theta, grad, upd, state, lr, t, coef, vclip):
    """One step over the flat vectors; True when every new parameter is finite."""
    s = state_of(state)
    scalars = step_scalars(h, lr, t)
    # PyTorch's form with and without weight decay, and the other flavors, as separate loops, each
    # with its branches decided when compiled (the constants in the Hyper tuples): a run-time test
    # around the store into grad, or of the flavor, kept the loop from vectorizing
    if h.flavor != TORCH:
        return _loop(theta, grad, upd, s, h, scalars, coef, vclip)
    if h.weight_decay != 0:
        decay = AdamHyper(h.beta1, h.beta2, h.eps, h.weight_decay, h.amsgrad, h.decoupled, TORCH)
        return _loop(theta, grad, upd, s, decay, scalars, coef, vclip)
    no_decay = AdamHyper(h.beta1, h.beta2, h.eps, 0.0, h.amsgrad, h.decoupled, TORCH)
    return _loop(theta, grad, upd, s, no_decay, scalars, coef, vclip)


@element
def _loop(theta, grad, upd, s, h, scalars, coef, vclip):
    ok = True
    if vclip > 0:
        for i in range(theta.shape[0]):
            if not math.isfinite(update(i, theta, grad, upd, s, h, scalars, coef, vclip)):
                ok = False
        return ok
    for i in range(theta.shape[0]):  # vclip <= 0 known here: the clipping test folds away
        if not math.isfinite(update(i, theta, grad, upd, s, h, scalars, coef, vclip)):
            ok = False
    return ok


def explain(v):
    """(lines, the update in the code's order, the update in textbook order) of one recorded step;
    ``v`` is an explain.StepView."""
    h, p, dt, lr, t = v.hyper, v.p, v.dt, v.lr, v.t
    if h.flavor != TORCH:
        return _explain_folded(v)
    lines = []
    m, sq = v.state("exp_avg"), v.state("exp_avg_sq")
    bc1, bc2 = 1.0 - h.beta1 ** t, 1.0 - h.beta2 ** t
    decayed = h.decoupled and h.weight_decay
    if decayed:
        lines.append(f"  p ← p·(1 − lr·wd)   (decoupled weight decay, wd={h.weight_decay:g}, before the moments)")
    lines.append(f"  m ← β1·m + (1 − β1)·g   (β1={h.beta1:g});   v ← β2·v + (1 − β2)·g²   (β2={h.beta2:g})")
    lines += v.old_new("exp_avg", "m") + v.old_new("exp_avg_sq", "v")
    used = sq
    if h.amsgrad:
        used = v.state("max_exp_avg_sq")
        lines.append("  v_max ← max(v_max, v)   (AMSGrad: the denominator uses v_max)")
        lines += v.named("v_max", used)
    lines.append(f"  t = {t};   1 − β1ᵗ = {bc1:.6g};   1 − β2ᵗ = {bc2:.6g}")
    m_hat, v_hat = m / dt(bc1), used / dt(bc2)
    den_book = np.sqrt(v_hat) + dt(h.eps)
    lines.append(f"  textbook:  m̂ = m/(1 − β1ᵗ),  v̂ = {'v_max' if h.amsgrad else 'v'}/(1 − β2ᵗ),  "
                 f"p ← p − lr·m̂/(√v̂ + ε)   (ε={h.eps:g})")
    lines += v.named("m̂", m_hat) + v.named("v̂", v_hat) + v.named("√v̂+ε", den_book)
    step_size, bc2_sqrt, shrink = (dt(x) for x in v.scalars[:3])
    base = p * shrink if decayed else p
    if decayed:
        lines.append(f"  p·(1 − lr·wd), with 1 − lr·wd = {float(shrink):.8g}:")
        lines += v.named("p decayed", base)
    book = (base - dt(lr) * m_hat / den_book) - p
    denom = np.sqrt(used) / bc2_sqrt + dt(h.eps)
    lines.append("  the code (PyTorch's order, for bit-for-bit parity):  "
                 f"p ← p − (lr/(1 − β1ᵗ))·m/(√{'v_max' if h.amsgrad else 'v'}/√(1 − β2ᵗ) + ε)")
    lines.append(f"             lr/(1 − β1ᵗ) = {float(step_size):.6g};   √(1 − β2ᵗ) = {float(bc2_sqrt):.6g}")
    lines += v.named("denom", denom)
    code = (base - step_size * (m / denom)) - p
    v.values.update(t=t, bias_correction1=bc1, bias_correction2=bc2, m=m, v=sq, m_hat=m_hat, v_hat=v_hat,
                    denominator=denom)
    return lines, code, book


def _explain_folded(v):
    """Keras's and scikit-learn's Adam: the bias corrections in the step size, ε on the raw √v."""
    h, p, dt, t = v.hyper, v.p, v.dt, v.t
    who = "Keras" if h.flavor == KERAS else "scikit-learn"
    lines = []
    m, sq = v.state("exp_avg"), v.state("exp_avg_sq")
    decayed = h.weight_decay != 0
    if decayed:
        lines.append(f"  p ← p·(1 − lr·wd)   (Keras' decoupled weight decay, wd={h.weight_decay:g}, first)")
    lines.append(f"  m ← β1·m + (1 − β1)·g   (β1={h.beta1:g});   v ← β2·v + (1 − β2)·g²   (β2={h.beta2:g})")
    lines += v.old_new("exp_avg", "m") + v.old_new("exp_avg_sq", "v")
    used = sq
    if h.amsgrad:
        used = v.state("max_exp_avg_sq")
        lines.append("  v_max ← max(v_max, v)   (AMSGrad)")
        lines += v.named("v_max", used)
    step_size, shrink = dt(v.scalars[0]), dt(v.scalars[2])
    lines.append(f"  {who}: lr_t = lr·√(1 − β2ᵗ)/(1 − β1ᵗ) = {float(step_size):.6g}   (t={t});   "
                 f"p ← p − lr_t·m/(√v + ε)   (ε={h.eps:g}, on the uncorrected √v)")
    base = p * shrink if decayed else p
    denom = np.sqrt(used) + dt(h.eps)
    lines += v.named("√v+ε", denom)
    code = (base - (step_size * m) / denom) - p
    v.values.update(t=t, step_size=float(step_size), m=m, v=sq, denominator=denom)
    return lines, code, code
