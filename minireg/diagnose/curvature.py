"""Curvature: the stability bound on the learning rate, and the conditioning of the problem.

Linear model, MSE: the Hessian is exactly H = (2/n)·X̃ᵀX̃ with X̃ = [X, 1] (after any scaling), the
same at every parameter value. Full-batch gradient descent diverges iff lr > 2/λmax(H); heavy-ball
momentum β (torch SGD) is stable for lr·λmax < 2 + 2β. Huber: H = (1/n)·Σ_{|r|<δ} x̃x̃ᵀ at the given
parameters (all residuals inside δ when none are given: its largest value). MAE: the loss is
piecewise linear, H = 0 almost everywhere: no lr makes it diverge, a large one only oscillates.
MLP: λmax by power iteration on Hessian-vector products from differences of exact gradients.
Adam and RMSprop: the bound is on the preconditioned sharpness λmax(P⁻¹H), P = diag(√v̂ + ε)
(Cohen et al. 2022, "Adaptive gradient methods at the edge of stability"): with Adam's β1 it is
stable while λmax(P⁻¹H) < (2 + 2β1) / ((1 − β1)·lr); it needs v̂, i.e. a traced run's state.
Minibatches: ``sharpest_batch_lr`` is 2/λmax of the sharpest of 64 sampled batches, the lr at which
that batch's own gradient step would overshoot. It measures how much the batches' curvature varies
(a noise-scale figure); it is not a divergence threshold: SGD averages over batches, and runs
somewhat above it train fine. The threshold is ``lr_max``.
"""
import math

import numpy as np

from .. import _validate as V, optim
from ..controls import Scaler
from ..layout import Layout, init_params
from ._model import Model

_MAX_ROWS = 4096  # curvature of large data sets is estimated on this many rows (seeded sample)
_N_BATCHES = 64  # minibatch bound: batches sampled


def _design(X):
    return np.column_stack([X, np.ones(X.shape[0])])


def condition_number(X):
    """κ(X̃ᵀX̃) of the design with its intercept column, and its extreme eigenvalues; from the
    singular values of X̃ (κ(X̃)²), so that features far from 1 do not overflow the Gram matrix."""
    sv = np.linalg.svd(_design(X), compute_uv=False)
    with np.errstate(over="ignore"):
        hi, lo = sv[0] ** 2, sv[-1] ** 2
        kappa = math.inf if sv[-1] <= sv[0] * 1e-300 else float((sv[0] / sv[-1]) ** 2)
    return kappa, lo, hi


def steps_to_shrink(kappa, factor=1000.0):
    """GD steps to shrink the error ``factor``× at the best fixed lr 2/(λmax+λmin): the error
    contracts by (κ−1)/(κ+1) per step."""
    if not np.isfinite(kappa):
        return math.inf
    if kappa <= 1:
        return 1
    rate = (kappa - 1) / (kappa + 1)
    return int(math.ceil(math.log(factor) / -math.log(rate)))


def _flat(name, value, size):
    raw = np.asarray(value)
    arr = raw.astype(np.float64) if raw.dtype.kind in "iuf" else None
    if arr is None or arr.shape != (size,):
        raise ValueError(f"{name} must be a flat vector of the model's {size} parameters (as a trace row), "
                         f"got {np.asarray(value).dtype} array of shape {np.asarray(value).shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN/inf; pass finite values (e.g. a trace row before divergence).")
    return arr


class StabilityBound:
    """The largest stable learning rate and the numbers behind it (see the module docstring)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def as_dict(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __repr__(self):
        lr = ("none (no curvature)" if self.lr_max == math.inf else
              "n/a (an adaptive optimizer's bound needs its state: pass exp_avg_sq)" if math.isnan(self.lr_max)
              else f"{self.lr_max:.4g}")
        txt = f"StabilityBound(lr_max={lr}, λmax={self.lambda_max:.4g} [{self.kind}], optimizer={self.optimizer}"
        if self.sharpest_batch_lr is not None:
            txt += f", sharpest-batch lr={self.sharpest_batch_lr:.4g} (not a threshold)"
        if self.kappa is not None:
            txt += f", κ={self.kappa:.3g}"
            if self.kappa_standardized is not None:
                std = "" if self.lr_max_standardized is None else f", lr_max {self.lr_max_standardized:.4g}"
                txt += f" (standardized: {self.kappa_standardized:.3g}{std})"
        return txt + ")"


def _lr_from_lambda(lam, optimizer, momentum, beta1):
    if lam == math.inf:
        return 0.0  # curvature beyond float64: no lr is small enough
    if lam <= 0 or not np.isfinite(lam):
        return math.inf if lam == 0 else float("nan")
    if optimizer in ("adam", "adamw"):
        return (2 + 2 * beta1) / ((1 - beta1) * lam)
    return (2 + 2 * momentum) / lam


def linear_lambda(X, y, loss, delta, theta=None):
    """λmax of the linear model's Hessian (exact) and how it was obtained: c·σmax(X̃_rows)²/n with
    c = 2 (MSE) or 1 (Huber, the rows whose residual is within delta), from the singular values so
    that large features give a large (possibly inf) λ rather than an overflowing Gram matrix."""
    Xt = _design(X)
    n = X.shape[0]
    if loss in ("mse", "squared_error"):  # r² or scikit-learn's ½r²
        rows, c, kind = Xt, 2.0 if loss == "mse" else 1.0, "exact"
    elif loss == "huber":
        if theta is None:
            rows, c, kind = Xt, 1.0, "exact, with every residual within delta (its largest value)"
        else:
            r = Xt @ np.asarray(theta, np.float64) - y
            rows, c, kind = Xt[np.abs(r) < delta], 1.0, "exact at the given parameters"
    else:
        return 0.0, "exact (MAE is piecewise linear: no curvature)"
    if rows.shape[0] == 0:
        return 0.0, kind
    smax = np.linalg.svd(rows, compute_uv=False)[0]
    with np.errstate(over="ignore"):
        return float(c * smax * smax / n), kind


def stability_bound(X, y, *, model="linear", loss="mse", delta=1.0, optimizer="sgd", lr=None, momentum=0.0,
                    beta1=0.9, batch_size=None, standardize=False, hidden=(10,), activation="relu",
                    params=None, exp_avg_sq=None, eps=1e-8, step=None, beta2=0.999, seed=0):
    """2/λmax and its parts for training ``model`` on (X, y); see the module docstring.

    ``params``: the parameters (dict or flat vector) to evaluate an MLP's or a Huber model's
    curvature at (default: a torch-style init from ``seed``). For Adam, ``exp_avg_sq`` (flat, with
    its 1-based ``step``) gives the preconditioner; without it, the Adam bound is not available.
    """
    model = V.choice("model", model, V.MODELS)
    loss = V.choice("loss", loss, V.LOSSES)
    optimizer = V.choice("optimizer", optimizer, V.OPTIMIZERS)
    kind_scale = V.standardize_kind(standardize)
    delta = V.real("delta", delta, low=0.0, low_open=True)
    lr = None if lr is None else V.real("lr", lr, low=0.0, low_open=True)
    momentum = V.real("momentum", momentum, low=0.0)
    beta1 = V.real("beta1", beta1, low=0.0, high=1.0, high_open=True)
    beta2 = V.real("beta2", beta2, low=0.0, high=1.0, high_open=True)
    eps = V.real("eps", eps, low=0.0)
    seed = V.integer("seed", seed, 0)
    if batch_size is not None:
        batch_size = V.integer("batch_size", batch_size, 1)
    if step is not None:
        step = V.integer("step", step, 1)
    if model == "mlp":
        hidden = V.hidden_sizes(hidden)
        activation = V.choice("activation", activation, V.ACTIVATIONS)
    X = V.data_X(X, np.float64)
    y = V.data_y(y, X.shape[0], np.float64)
    if model == "mlp":
        V.check_memory(V.run_memory(n=min(X.shape[0], _MAX_ROWS), d=X.shape[1], n_val=0,
                                    sizes=(X.shape[1], *hidden, 1), batch_size=None, epochs=1, itemsize=8,
                                    trace=False, trace_every=1, trace_budget=1, n_state=0))
    scaler = Scaler.fit(X, kind_scale)
    X = scaler.transform(X, np.float64)
    n, d = X.shape
    if n > _MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(n, _MAX_ROWS, replace=False))
        X, y = X[rows], y[rows]
    layout = Layout((d, 1) if model == "linear" else (d, *hidden, 1))
    if params is None:
        theta = init_params(layout, "torch", np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0]),
                            np.float64)
    elif isinstance(params, dict):
        theta = layout.flatten(V.init_spec(params, layout, model, "float64"))
    else:
        theta = _flat("params", params, layout.size)
    if exp_avg_sq is not None:
        exp_avg_sq = _flat("exp_avg_sq", exp_avg_sq, layout.size)
        if (exp_avg_sq < 0).any():
            raise ValueError("exp_avg_sq must be >= 0 everywhere (it is a running mean of squared gradients).")
    m = Model(layout, activation if model == "mlp" else None, loss, delta)
    pre = None
    if optimizer in optim.ADAPTIVE:
        if exp_avg_sq is not None:
            v = np.asarray(exp_avg_sq, np.float64)
            bc2 = 1 - beta2 ** step if (step and optimizer in ("adam", "adamw")) else 1.0
            pre = np.sqrt(v / bc2) + eps
    if model == "linear" and pre is None and not (loss == "huber" and params is not None):
        lam, kind = linear_lambda(X, y, loss, delta)
    elif model == "linear" and pre is None:
        lam, kind = linear_lambda(X, y, loss, delta, theta)
    else:
        lam = m.lambda_max(theta, X, y, seed=seed, precond=pre)
        kind = "power iteration on Hessian-vector products" + (" (preconditioned)" if pre is not None else "")
    if optimizer in optim.ADAPTIVE and pre is None:
        lr_max = None  # adaptive methods: only the preconditioned curvature bounds the lr
        kind += "; adaptive optimizer without its state: no lr bound"
    else:
        lr_max = _lr_from_lambda(lam, "sgd" if optimizer in ("rmsprop", "adagrad") else optimizer, momentum, beta1)
    sharpest = None
    if batch_size is not None and batch_size < n and model == "linear" and loss != "mae" and lr_max is not None:
        rng = np.random.default_rng(seed)
        lams = [linear_lambda(X[rng.choice(n, batch_size, replace=False)], None, loss, delta)[0]
                for _ in range(_N_BATCHES)]
        sharpest = _lr_from_lambda(max(lams), optimizer, momentum, beta1)
    kappa = kappa_std = lr_std = None
    steps = steps_std = None
    if model == "linear":
        kappa = condition_number(X)[0]
        steps = steps_to_shrink(kappa)
        if kind_scale is None:
            Xs = Scaler.fit(X, "zscore").transform(X, np.float64)
            kappa_std = condition_number(Xs)[0]
            steps_std = steps_to_shrink(kappa_std)
            if lr_max is not None and pre is None:  # an adaptive optimizer's bound needs its state on those features
                lam_s = linear_lambda(Xs, y, loss, delta)[0]
                lr_std = _lr_from_lambda(lam_s, optimizer, momentum, beta1)
    return StabilityBound(
        lr_max=lr_max if lr_max is not None else math.nan, lambda_max=lam, kind=kind, optimizer=optimizer,
        momentum=momentum, beta1=beta1, lr=lr, exceeded=None if (lr is None or lr_max is None) else lr > lr_max,
        batch_size=batch_size, sharpest_batch_lr=sharpest, kappa=kappa, steps_to_1000x=steps,
        kappa_standardized=kappa_std, steps_to_1000x_standardized=steps_std, lr_max_standardized=lr_std,
        n_rows_used=X.shape[0], standardize=kind_scale)
