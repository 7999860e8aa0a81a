"""One elementwise update kernel per optimizer over the flat (P,) vectors, matching PyTorch 2.x
``torch/optim/{sgd,rmsprop,adam}.py::_single_tensor_*`` (the CPU default path).

Each kernel updates ``theta`` in place, may add coupled weight decay into ``grad`` (so the trace
records the gradient as the optimizer saw it), writes ``upd = theta_new − theta_old``, updates the
rows of ``state`` and returns True when every new parameter is finite.

Gradient clipping happens inside, per element, before weight decay — the order of
``clip_grad_norm_``/``clip_grad_value_`` on ``p.grad`` followed by ``optimizer.step()``: the step
uses ``clip(g) + wd·p`` where ``clip(g) = clamp(coef·g, −vclip, vclip)`` (``coef`` is the global
norm-clipping factor, 1 without it; ``vclip`` 0 means no value clipping), while ``grad`` keeps
``g + wd·p``, the gradient before clipping.

``hp`` holds the hyperparameters in float64 (index names below); ``hd`` the same values cast to the
run dtype, used in the elementwise arithmetic so float32 runs stay float32. Step-dependent scalars
(Adam's bias corrections) are computed in float64 like torch's Python floats, then cast via ``sc``.
"""
import math

from ._jit import element, kernel

SGD, RMSPROP, ADAM = 0, 1, 2

# indices into the hyperparameter vector
LR, MOMENTUM, DAMPENING, NESTEROV, WEIGHT_DECAY = 0, 1, 2, 3, 4
ALPHA, EPS, CENTERED, BETA1, BETA2, AMSGRAD, DECOUPLED = 5, 6, 7, 8, 9, 10, 11
ONE_MINUS_DAMPENING, ONE_MINUS_ALPHA, ONE_MINUS_BETA1, ONE_MINUS_BETA2 = 12, 13, 14, 15
N_HPARAMS = 16

# state rows per optimizer, in the order the kernels use them
STATE_NAMES = {
    SGD: ("momentum_buffer",),
    RMSPROP: ("square_avg", "grad_avg", "momentum_buffer"),
    ADAM: ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
}


@element
def clipped(g, coef, vclip):
    """coef·g, then clamped to ±vclip when vclip > 0."""
    g = g * coef
    if vclip > 0:
        if g > vclip:
            return vclip
        if g < -vclip:
            return -vclip
    return g


# ---- one parameter's update, written once and used by both backends (the CUDA kernels compile
# these same functions as device functions); each updates theta[i], upd[i], the state rows at i and
# grad[i] (which keeps the unclipped gradient plus coupled weight decay), and returns the new value.

@element
def sgd_element(i, theta, grad, upd, state, lr, mu, wd, use_wd, use_mom, nesterov, damp, first, coef, vclip):
    # g += wd·p;  buf = g (first step, no dampening) | μ·buf + (1−τ)·g;  g = g + μ·buf (nesterov) | buf
    # p −= lr·g
    p = theta[i]
    g = clipped(grad[i], coef, vclip)
    if use_wd:
        g = g + wd * p
        grad[i] = grad[i] + wd * p
    if use_mom:
        if first:
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
    return pn


@element
def rmsprop_element(i, theta, grad, upd, state, lr, mu, wd, alpha, oma, eps, use_wd, use_mom, centered,
                    coef, vclip):
    # g += wd·p;  v = α·v + (1−α)·g²;  centered: ḡ = ḡ + (1−α)(g − ḡ), avg = √(v − ḡ²) + ε
    # else avg = √v + ε;  momentum: buf = μ·buf + g/avg, p −= lr·buf;  else p −= lr·g/avg
    p = theta[i]
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
    return pn


@element
def adam_element(i, theta, grad, upd, state, step_size, bc2_sqrt, shrink, wd, b2, omb1, omb2, eps,
                 decoupled, use_wd, amsgrad, coef, vclip):
    # Adam:  g += wd·p (coupled)          AdamW:  p *= 1 − lr·wd (decoupled, before the moments)
    # m = m + (1−β1)(g − m);  v = β2·v + (1−β2)·g²;  amsgrad: v̂ = max(v̂, v)
    # p −= (lr/(1−β1ᵗ)) · m / (√v(or √v̂) / √(1−β2ᵗ) + ε)
    p0 = theta[i]
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
        vmax = v if v > state[2, i] else state[2, i]  # Python's max(v̂, v), spelled out for numba.cuda
        state[2, i] = vmax
        denom = math.sqrt(vmax) / bc2_sqrt + eps
    else:
        denom = math.sqrt(v) / bc2_sqrt + eps
    pn = p - step_size * (m / denom)
    theta[i] = pn
    upd[i] = pn - p0
    return pn


# ---- the CPU kernels: one pass over the flat vector

@kernel
def sgd_step(theta, grad, upd, state, hd, t, coef, vclip):
    lr, mu, wd, damp = hd[LR], hd[MOMENTUM], hd[WEIGHT_DECAY], hd[ONE_MINUS_DAMPENING]
    use_wd, use_mom, nesterov = hd[WEIGHT_DECAY] != 0, hd[MOMENTUM] != 0, hd[NESTEROV] != 0
    ok = True
    for i in range(theta.shape[0]):
        pn = sgd_element(i, theta, grad, upd, state, lr, mu, wd, use_wd, use_mom, nesterov, damp, t == 1,
                         coef, vclip)
        if not math.isfinite(pn):
            ok = False
    return ok


@kernel
def rmsprop_step(theta, grad, upd, state, hd, t, coef, vclip):
    lr, mu, wd, alpha, oma, eps = hd[LR], hd[MOMENTUM], hd[WEIGHT_DECAY], hd[ALPHA], hd[ONE_MINUS_ALPHA], hd[EPS]
    use_wd, use_mom, centered = hd[WEIGHT_DECAY] != 0, hd[MOMENTUM] > 0, hd[CENTERED] != 0
    ok = True
    for i in range(theta.shape[0]):
        pn = rmsprop_element(i, theta, grad, upd, state, lr, mu, wd, alpha, oma, eps, use_wd, use_mom, centered,
                             coef, vclip)
        if not math.isfinite(pn):
            ok = False
    return ok


@kernel
def adam_step(theta, grad, upd, state, hp, hd, sc, t, coef, vclip):
    # the step-dependent scalars in float64, as torch's Python floats, then cast to the run dtype
    sc[0] = hp[LR] / (1.0 - hp[BETA1] ** t)
    sc[1] = math.sqrt(1.0 - hp[BETA2] ** t)
    sc[2] = 1.0 - hp[LR] * hp[WEIGHT_DECAY]
    step_size, bc2_sqrt, shrink = sc[0], sc[1], sc[2]
    wd, b2, omb1, omb2, eps = hd[WEIGHT_DECAY], hd[BETA2], hd[ONE_MINUS_BETA1], hd[ONE_MINUS_BETA2], hd[EPS]
    decoupled, amsgrad = hp[DECOUPLED] != 0, hp[AMSGRAD] != 0
    # weight decay as a constant of each loop: a run-time flag around the store into grad made the
    # whole loop several times slower (W2's 31 parameters)
    if hp[WEIGHT_DECAY] != 0:
        return _adam_loop(theta, grad, upd, state, step_size, bc2_sqrt, shrink, wd, b2, omb1, omb2, eps,
                          decoupled, True, amsgrad, coef, vclip)
    return _adam_loop(theta, grad, upd, state, step_size, bc2_sqrt, shrink, wd, b2, omb1, omb2, eps,
                      decoupled, False, amsgrad, coef, vclip)


@element
def _adam_loop(theta, grad, upd, state, step_size, bc2_sqrt, shrink, wd, b2, omb1, omb2, eps, decoupled, use_wd,
               amsgrad, coef, vclip):
    ok = True
    for i in range(theta.shape[0]):
        pn = adam_element(i, theta, grad, upd, state, step_size, bc2_sqrt, shrink, wd, b2, omb1, omb2, eps,
                          decoupled, use_wd, amsgrad, coef, vclip)
        if not math.isfinite(pn):
            ok = False
    return ok


@kernel
def optimizer_step(code, theta, grad, upd, state, hp, hd, sc, t, coef, vclip):
    """Dispatch on the optimizer code; t is torch's 1-based step counter."""
    if code == SGD:
        return sgd_step(theta, grad, upd, state, hd, t, coef, vclip)
    if code == RMSPROP:
        return rmsprop_step(theta, grad, upd, state, hd, t, coef, vclip)
    return adam_step(theta, grad, upd, state, hp, hd, sc, t, coef, vclip)
