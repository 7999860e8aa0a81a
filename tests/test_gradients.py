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


@pytest.mark.parametrize("model,act,loss", [(m, a, l) for (m, a), l in itertools.product(MODELS, LOSSES)])
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

