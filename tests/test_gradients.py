"""Finite-difference checks of the analytic gradients, for every model, activation and loss."""
import itertools

import numpy as np
import pytest

import minireg

MODELS = [("linear", None), ("mlp", "relu"), ("mlp", "tanh"), ("mlp", "sigmoid"), ("mlp", "identity")]
LOSSES = ["mse", "huber", "mae"]


def _data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 3))
    y = np.tanh(X @ np.array([1.0, -2.0, 0.5])) + 0.3 * rng.normal(size=12)
    return X, y


def _loss_and_grad(X, y, model, act, loss, theta, layout):
    """Batch loss and gradient at ``theta``, as the engine's first trace row reports them."""
    r = minireg.train(X, y, model=model, hidden=(5, 4), activation=act or "relu", loss=loss, delta=0.7,
                      optimizer="sgd", lr=1e-3, epochs=1, init=layout.unflatten(theta), trace=True)
    return r.trace.loss[0], r.trace.grad[0]


@pytest.mark.parametrize("model,act,loss", [(m, a, loss) for (m, a), loss in itertools.product(MODELS, LOSSES)])
def test_gradient_matches_central_differences(model, act, loss):
    X, y = _data()
    sizes = (3, 1) if model == "linear" else (3, 5, 4, 1)
    layout = minireg.Layout(sizes)
    theta = np.random.default_rng(11).uniform(-0.8, 0.8, layout.size)
    _, g = _loss_and_grad(X, y, model, act, loss, theta, layout)
    h = 1e-6
    fd = np.empty_like(theta)
    for i in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        fd[i] = (_loss_and_grad(X, y, model, act, loss, tp, layout)[0]
                 - _loss_and_grad(X, y, model, act, loss, tm, layout)[0]) / (2 * h)
    assert np.abs(g).max() > 1e-3  # a zero gradient would pass trivially
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)



def _numpy_loss_grad(params, X, y, act):
    """MSE batch loss and gradient of a dense network, written with NumPy matrix products."""
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
         "identity": lambda z: z}[act]
    df = {"relu": lambda a: (a > 0) * 1.0, "tanh": lambda a: 1 - a * a, "sigmoid": lambda a: (1 - a) * a,
          "identity": lambda a: np.ones_like(a)}[act]
    L = len(params) // 2
    acts = [X]
    for k in range(L):
        z = acts[-1] @ params[f"W{k + 1}"] + params[f"b{k + 1}"]
        acts.append(f(z) if k < L - 1 else z)
    res = acts[-1][:, 0] - y
    delta = (2 * res / len(y))[:, None]
    grads = {}
    for k in range(L - 1, -1, -1):
        grads[f"W{k + 1}"], grads[f"b{k + 1}"] = acts[k].T @ delta, delta.sum(axis=0)
        if k > 0:
            delta = (delta @ params[f"W{k + 1}"].T) * df(acts[k])
    return float(np.mean(res ** 2)), grads


@pytest.mark.parametrize("sizes,act", [((3, 1), "identity"), ((1, 10, 1), "relu"), ((4, 9, 17, 1), "tanh"),
                                       ((2, 1, 6, 1), "sigmoid"), ((5, 4, 1), "identity")])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 5, 7, 8, 11, None])
def test_every_batch_gradient_matches_numpy(sizes, act, batch_size):
    """The kernels take the batch rows four at a time and the rest one by one: every recorded
    step's loss and gradient (consecutive batches of 23 rows, so every remainder 0-3 and the
    offsets into X occur) against NumPy's matrix products at the step's parameters."""
    rng = np.random.default_rng(sum(sizes) + (batch_size or 0))
    X = rng.normal(size=(23, sizes[0]))
    y = np.sin(X.sum(axis=1)) + 0.1 * rng.normal(size=23)
    r = minireg.train(X, y, model="linear" if len(sizes) == 2 else "mlp", hidden=sizes[1:-1],
                      activation=act if len(sizes) > 2 else None, optimizer="sgd", lr=0.05, epochs=2,
                      batch_size=batch_size, shuffle=False, trace=True)
    layout = minireg.Layout(sizes)
    bs = batch_size or 23
    starts = [s for _ in range(2) for s in range(0, 23, bs)]
    assert len(starts) == r.n_steps == len(r.trace)
    for t, s in enumerate(starts):
        loss, grads = _numpy_loss_grad(layout.unflatten(r.trace.params[t]), X[s:s + bs], y[s:s + bs], act)
        np.testing.assert_allclose(r.trace.loss[t], loss, rtol=1e-12)
        g = layout.unflatten(r.trace.grad[t])
        for name in layout.names:
            np.testing.assert_allclose(g[name], grads[name], rtol=1e-11, atol=1e-14, err_msg=f"step {t} {name}")
