"""The plain NumPy twin of the compiled kernels: minireg's training algorithm written to be read.

Every step of a training run is one small function below, in the order the compiled loop
(minireg/kernels/loop.py) runs them::

    for each epoch:                                     batches()
        for each batch of rows:
            acts = forward(layers, X[rows])             Z = A·W + b,  A = f(Z)
            loss, dpred = loss_and_dpred(...)           mean loss of the batch, dL/dpred
            grads = backward(layers, acts, dpred)       gW = Aᵀ·Δ, gb = Σ Δ, Δ_prev = (Δ·Wᵀ)⊙f'(A)
            g = add_l1(g, W1, l1)                       lasso subgradient on the first weights
            g = clip(g, ...)                            torch's clip_grad_norm_ / clip_grad_value_
            p = <optimizer>_step(p, g, state, t, lr)    torch.optim's update, in its own order

No numba, no fused loops, no tricks: one NumPy expression per line of the formulas (the formulas
are in each docstring, and in ``../shared/reference/OPTIMIZER_SEMANTICS.md``). The arithmetic is
PyTorch's, operation for operation (``torch/optim/*.py::_single_tensor_*``), so that
``train_reference`` and ``minireg.train`` agree to rounding (about 1e-14 in float64; only the order
of the sums inside the matrix products differs). tests/test_reference.py checks that, and the
benchmarks use it as the NumPy baseline.

Parameters live in one flat vector in minireg's layout (minireg/layout.py): ``W1, b1, W2, b2, …``
with ``Wk`` of shape (fan_in, fan_out). Gradients, updates and optimizer state use the same layout,
so every optimizer acts elementwise on whole vectors.
"""
import math

import numpy as np

from .layout import Layout, init_params
from .optim import DEFAULTS  # PyTorch's names and defaults, per optimizer
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")
LOSSES = ("mse", "huber", "mae")


# --------------------------------------------------------------------------------------------------
# batches


def batches(n, batch_size, shuffle, rng):
    """The rows of each batch of one epoch, to index X and y with.

    Full batch (``batch_size`` None or ≥ n): one batch of all rows in order, and no permutation is
    drawn. Otherwise the rows in a fresh order ``rng.permutation(n)`` when shuffling (one draw per
    epoch), or in their own order, cut into consecutive batches; the last one keeps the rest.
    Rows in their own order are given as slices, so that X[rows] is a view, not a copy.
    """
    bs = n if batch_size is None else min(batch_size, n)
    if bs < n and shuffle:
        order = rng.permutation(n)
        return [order[start:start + bs] for start in range(0, n, bs)]
    return [slice(start, start + bs) for start in range(0, n, bs)]


# --------------------------------------------------------------------------------------------------
# model


def layers_of(theta, sizes):
    """[(W1, b1), (W2, b2), …]: views into the flat parameter vector ``theta`` = (W1, b1, W2, …),
    with Wk of shape (sizes[k-1], sizes[k]) stored row by row, and bk of shape (sizes[k],)."""
    layers, off = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        W = theta[off:off + fan_in * fan_out].reshape(fan_in, fan_out)
        off += fan_in * fan_out
        b = theta[off:off + fan_out]
        off += fan_out
        layers.append((W, b))
    return layers


def activate(activation, z):
    """a = f(z):  relu max(z, 0) (NaN stays NaN), tanh, sigmoid 1/(1 + e^−z), identity z."""
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    return z


def derivative_from_output(activation, a):
    """f'(z) written with the output a = f(z), as torch's backward kernels do:
    relu 1 if a > 0 else 0,  tanh 1 − a²,  sigmoid (1 − a)·a,  identity 1."""
    if activation == "relu":
        return (a > 0).astype(a.dtype)
    if activation == "tanh":
        return 1.0 - a * a
    if activation == "sigmoid":
        return (1.0 - a) * a
    return np.ones_like(a)


def forward(layers, X, activation="identity"):
    """The outputs of every layer, input first: [X, A1, …, pred] with

        Z = A_prev·W + b,   A = f(Z) on the hidden layers, A = Z (identity) on the output layer.

    The prediction is the last entry's only column, ``acts[-1][:, 0]``."""
    acts = [X]
    for k, (W, b) in enumerate(layers):
        Z = acts[-1] @ W + b
        acts.append(activate(activation, Z) if k < len(layers) - 1 else Z)
    return acts


def predict(layers, X, activation="identity"):
    """The model's predictions for the rows of X."""
    return forward(layers, X, activation)[-1][:, 0]


# --------------------------------------------------------------------------------------------------
# loss


def loss_and_dpred(loss, pred, y, delta=1.0):
    """(mean loss of the batch, dL/dpred per row), torch's MSELoss, HuberLoss(delta), L1Loss with
    the mean over the B rows of the batch. With r = pred − y:

        mse    l = r²                                  dL/dpred = 2r · (1/B)
        huber  l = ½r² if |r| < δ else δ(|r| − ½δ)     dL/dpred = clip(r, −δ, δ) · (1/B)
        mae    l = |r|                                 dL/dpred = sign(r) · (1/B), 0 at r = 0
    """
    r = pred - y
    B = r.shape[0]
    if loss == "mse":
        per_row, dl = r * r, 2.0 * r
    elif loss == "huber":
        a = np.abs(r)
        per_row = np.where(a < delta, 0.5 * r * r, delta * (a - 0.5 * delta))
        dl = np.clip(r, -delta, delta)
    else:
        per_row, dl = np.abs(r), np.sign(r)
    return per_row.sum() / B, dl * (1.0 / B)


def dataset_loss(layers, X, y, loss, delta=1.0, activation="identity"):
    """The mean loss over every row (what ``history["loss"]`` records after each epoch)."""
    return loss_and_dpred(loss, predict(layers, X, activation), y, delta)[0]


# --------------------------------------------------------------------------------------------------
# backward


def backward(layers, acts, dpred, activation="identity"):
    """The gradient of the batch loss, [(gW1, gb1), (gW2, gb2), …], from the output delta
    Δ = dL/dpred, layer by layer from the last:

        gW = A_prevᵀ·Δ,   gb = Σ_rows Δ,   Δ_prev = (Δ·Wᵀ) ⊙ f'(A_prev)
    """
    D = dpred[:, None]
    grads = [None] * len(layers)
    for k in range(len(layers) - 1, -1, -1):
        W = layers[k][0]
        A_prev = acts[k]
        grads[k] = (A_prev.T @ D, D.sum(axis=0))
        if k > 0:
            D = (D @ W.T) * derivative_from_output(activation, A_prev)
    return grads


def flat(pairs):
    """[(gW1, gb1), (gW2, gb2), …] as one flat vector in the parameters' layout (W1, b1, W2, …)."""
    return np.concatenate([a.ravel() for pair in pairs for a in pair])


def add_l1(g, theta, l1, n_weights):
    """The L1 penalty's subgradient on the first ``n_weights`` entries (the linear model's weights,
    not its bias):  g ← g + l1·sign(w), with sign(0) = 0."""
    if l1 > 0:
        g = g.copy()
        g[:n_weights] += l1 * np.sign(theta[:n_weights])
    return g


def clip(g, clip_grad_norm=None, clip_grad_value=None):
    """(g as the optimizer sees it, whether clipping changed it):

        torch.nn.utils.clip_grad_norm_:   coef = max_norm / (‖g‖₂ + 1e-6);  g ← coef·g if coef < 1
        torch.nn.utils.clip_grad_value_:  g ← clamp(g, −v, v)           (after the norm clipping)
    """
    clipped = False
    if clip_grad_norm:
        coef = clip_grad_norm / (np.sqrt((g * g).sum()) + 1e-6)
        if coef < 1:
            g, clipped = g * coef, True
    if clip_grad_value:
        clipped = clipped or bool(np.any(np.abs(g) > clip_grad_value))
        g = np.clip(g, -clip_grad_value, clip_grad_value)
    return g, clipped


# --------------------------------------------------------------------------------------------------
# optimizers: one step each, torch.optim's arithmetic in torch's order. Each takes the parameters
# p, the gradient g, the optimizer's state (a dict of arrays from init_state, whose entries it
# replaces), the 1-based step counter t and the learning rate lr, and returns the new parameters.


def init_state(optimizer, p, hparams):
    """The optimizer's state before its first step: zeros, Adagrad's sum at initial_accumulator_value.
    SGD's momentum buffer is absent until the first step sets it (torch's ``buf is None``)."""
    if optimizer == "sgd":
        return {}
    if optimizer == "adagrad":
        return {"sum": np.full_like(p, hparams["initial_accumulator_value"])}
    return {name: np.zeros_like(p) for name in state_names(optimizer, hparams)}


def sgd_step(p, g, state, t, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD:

        g ← g + wd·p
        buf ← g                       on the first step (no dampening!)
        buf ← μ·buf + (1 − τ)·g       afterwards                       (τ = dampening)
        g ← g + μ·buf  (nesterov)  or  g ← buf
        p ← p − lr·g
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if "momentum_buffer" not in state:
            buf = g.copy()
        else:
            buf = momentum * state["momentum_buffer"] + (1 - dampening) * g
        state["momentum_buffer"] = buf
        g = g + momentum * buf if nesterov else buf
    return p - lr * g


def rmsprop_step(p, g, state, t, lr, alpha=0.99, eps=1e-8, centered=False, momentum=0.0, weight_decay=0.0):
    """torch.optim.RMSprop (no bias correction; eps outside the square root):

        g ← g + wd·p
        v ← α·v + (1 − α)·g²                                   (square_avg)
        centered:  ḡ ← ḡ + (1 − α)·(g − ḡ),  avg = √(v − ḡ²) + ε   (grad_avg)
        else:      avg = √v + ε
        momentum:  buf ← μ·buf + g/avg,  p ← p − lr·buf          (momentum_buffer)
        else:      p ← p − lr·g/avg
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    v = alpha * state["square_avg"] + (1 - alpha) * g * g
    state["square_avg"] = v
    if centered:
        ga = state["grad_avg"]
        ga = ga + (1 - alpha) * (g - ga)
        state["grad_avg"] = ga
        avg = np.sqrt(v - ga * ga) + eps
    else:
        avg = np.sqrt(v) + eps
    if momentum > 0:
        buf = momentum * state["momentum_buffer"] + g / avg
        state["momentum_buffer"] = buf
        return p - lr * buf
    return p - lr * (g / avg)


def adam_step(p, g, state, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False,
              decoupled=False):
    """torch.optim.Adam (``decoupled=True``: AdamW):

        Adam:   g ← g + wd·p                  AdamW:  p ← p·(1 − lr·wd)   (before the moments)
        m ← m + (1 − β1)·(g − m)                                           (exp_avg)
        v ← β2·v + (1 − β2)·g²                                             (exp_avg_sq)
        amsgrad:  v̂ ← max(v̂, v), and v̂ in place of v below (the max of the raw v)  (max_exp_avg_sq)
        p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)      (ε after the bias correction)

    The step's scalars lr/(1 − β1ᵗ), √(1 − β2ᵗ) and 1 − lr·wd are Python floats, as in torch."""
    if weight_decay != 0:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    m = state["exp_avg"]
    m = m + (1 - beta1) * (g - m)
    v = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g
    state["exp_avg"], state["exp_avg_sq"] = m, v
    step_size = lr / (1 - beta1 ** t)
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
    if amsgrad:
        v = np.maximum(state["max_exp_avg_sq"], v)
        state["max_exp_avg_sq"] = v
    denom = np.sqrt(v) / bias_correction2_sqrt + eps
    return p - step_size * (m / denom)


def adamw_step(p, g, state, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, amsgrad=False):
    """torch.optim.AdamW: Adam with decoupled weight decay p ← p·(1 − lr·wd), default wd = 0.01."""
    return adam_step(p, g, state, t, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled=True)


def adagrad_step(p, g, state, t, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    """torch.optim.Adagrad:

        g ← g + wd·p
        clr = lr / (1 + (t − 1)·lr_decay)
        s ← s + g²                            (sum; starts at initial_accumulator_value)
        p ← p − clr · g / (√s + ε)
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay)
    s = state["sum"] + g * g
    state["sum"] = s
    return p - clr * (g / (np.sqrt(s) + eps))


STEPS = {"sgd": sgd_step, "rmsprop": rmsprop_step, "adam": adam_step, "adamw": adamw_step,
         "adagrad": adagrad_step}


def state_names(optimizer, hparams):
    """The state an optimizer keeps with these hyperparameters, in minireg's trace order."""
    h = hparams
    if optimizer == "sgd":
        return ["momentum_buffer"] if h["momentum"] != 0 else []
    if optimizer == "rmsprop":
        return ["square_avg"] + (["grad_avg"] if h["centered"] else []) + (
            ["momentum_buffer"] if h["momentum"] > 0 else [])
    if optimizer == "adagrad":
        return ["sum"]
    return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if h["amsgrad"] else [])


def coupled_weight_decay(optimizer, hparams):
    """The weight decay added into the gradient (0 for AdamW, whose decay shrinks p instead)."""
    return 0.0 if optimizer == "adamw" else hparams["weight_decay"]


# --------------------------------------------------------------------------------------------------
# the whole run


class ReferenceRun:
    """What ``train_reference`` returns.

    ``params`` (flat, minireg's layout), ``named`` (the same as W1, b1, …), ``losses`` (the batch loss
    before each step), ``lrs`` (each step's lr), ``clipped`` (per step), ``history`` (the loss over all
    rows after each epoch, with ``history=True``), ``layout``, ``n_steps``, ``diverged_at`` (the first
    step whose loss or new parameters are not finite; the run stops there), and with ``trace=True``
    per step, as minireg's trace: ``params_before``, ``grad`` (as the optimizer saw it before clipping:
    L1 and coupled weight decay included), ``update`` (new − old parameters) and ``state[name]``
    (after the step).
    """

    def __init__(self, layout, activation):
        self.layout, self.activation = layout, activation
        self.losses, self.lrs, self.clipped, self.history = [], [], [], []
        self.params_before, self.grad, self.update, self.state = [], [], [], {}
        self.diverged_at = None

    @property
    def n_steps(self):
        return len(self.losses)

    @property
    def named(self):
        return self.layout.unflatten(self.params)

    def predict(self, X):
        X = np.asarray(X, self.params.dtype)
        return predict(layers_of(self.params, self.layout.sizes), X, self.activation)

    def _finish(self):
        self.losses, self.lrs = np.array(self.losses), np.array(self.lrs)
        self.clipped, self.history = np.array(self.clipped, bool), np.array(self.history)
        if self.grad:
            self.params_before, self.grad, self.update = (np.array(a) for a in (self.params_before, self.grad,
                                                                               self.update))
            self.state = {k: np.array(v) for k, v in self.state.items()}
        return self


def train_reference(X, y, *, model="linear", hidden=(10,), activation="relu", loss="mse", delta=1.0,
                    optimizer="sgd", lr=0.01, epochs=100, batch_size=None, shuffle=True, seed=0,
                    dtype="float64", init="torch", clip_grad_norm=None, clip_grad_value=None, l1=0.0,
                    epoch_lrs=None, step_lrs=None, power_t=0.0, trace=False, history=False, **hparams):
    """Train as ``minireg.train(X, y, ...)`` does with the same arguments, in plain NumPy.

    The same defaults and names as ``minireg.train`` (optimizer hyperparameters: PyTorch's names,
    beta1/beta2 for Adam's betas), and the same random streams: with the same ``seed``, ``init`` draws
    the same initial parameters and ``shuffle`` the same batches. ``init`` may be a dict of arrays
    {"W1": …, "b1": …}. The learning rate of a step is ``lr``, or ``epoch_lrs[epoch]``, or
    ``step_lrs[step]``, divided by (t + 1)^power_t with power_t > 0 (sklearn's invscaling, t the
    0-based step). Data scaling, validation, early stopping and plateau schedules are left out.
    Returns a :class:`ReferenceRun`.
    """
    if optimizer not in STEPS:
        raise ValueError(f"optimizer={optimizer!r} is not one of {tuple(STEPS)}")
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not one of {LOSSES}")
    unknown = set(hparams) - set(DEFAULTS[optimizer])
    if unknown:
        raise TypeError(f"unknown hyperparameters for {optimizer}: {sorted(unknown)}")
    h = {**DEFAULTS[optimizer], **hparams}
    if model not in ("linear", "mlp"):
        raise ValueError(f"model={model!r} is not 'linear' or 'mlp'")
    if model == "linear":
        hidden, activation = (), "identity"
    elif activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of {ACTIVATIONS}")
    if l1 > 0 and model != "linear":
        raise ValueError("l1 is for model='linear' only")
    X = np.ascontiguousarray(X, dtype=dtype)
    y = np.asarray(y, dtype=dtype).reshape(-1)
    n, d = X.shape
    layout = Layout((d, *hidden, 1))
    init_seq, shuffle_seq, _ = np.random.SeedSequence(seed).spawn(3)  # minireg's streams
    theta = init_params(layout, init, np.random.default_rng(init_seq), dtype)
    rng = np.random.default_rng(shuffle_seq)
    step = STEPS[optimizer]
    wd = coupled_weight_decay(optimizer, h)
    n_weights = layout.slices["W1"].stop
    names = state_names(optimizer, h)
    run = ReferenceRun(layout, activation)
    run.state = {name: [] for name in names} if trace else {}
    state = init_state(optimizer, theta, h)
    t = 0
    for epoch in range(epochs):
        for rows in batches(n, batch_size, shuffle, rng):
            lr_t = step_lrs[t] if step_lrs is not None else epoch_lrs[epoch] if epoch_lrs is not None else lr
            if power_t > 0:
                lr_t = lr_t / (t + 1.0) ** power_t
            layers = layers_of(theta, layout.sizes)
            acts = forward(layers, X[rows], activation)
            batch_loss, dpred = loss_and_dpred(loss, acts[-1][:, 0], y[rows], delta)
            g = flat(backward(layers, acts, dpred, activation))
            g = add_l1(g, theta, l1, n_weights)
            g_opt, was_clipped = clip(g, clip_grad_norm, clip_grad_value)
            t += 1
            new = step(theta, g_opt, state, t, float(lr_t), **h)
            run.losses.append(batch_loss)
            run.lrs.append(float(lr_t))
            run.clipped.append(was_clipped)
            if trace:
                run.params_before.append(theta)
                run.grad.append(g + wd * theta if wd != 0 else g)
                run.update.append(new - theta)
                for name in names:
                    run.state[name].append(state[name])
            theta = new
            if not (np.isfinite(batch_loss) and np.isfinite(theta).all()):
                run.diverged_at = t - 1
                break
        if run.diverged_at is not None:
            break
        if history:
            run.history.append(dataset_loss(layers_of(theta, layout.sizes), X, y, loss, delta, activation))
    run.params = theta
    return run._finish()
