"""Batch-1 SGD on the linear model (the batch-1 section of kernels/loop.py) gives the general
loop's results bit for bit.

A traced run takes the general loop (the fast path runs untraced runs only), so an untraced run and
the same run traced must agree exactly: parameters, history, divergence and where it stopped.
"""
import warnings

import numpy as np
import pytest

import minireg


def _data(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X @ rng.normal(size=d) + 0.5 + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("loss", ["mse", "huber", "mae"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("extra", [{}, {"weight_decay": 0.01}, {"shuffle": False}, {"schedule": "step", "step_size": 2,
                                                                                      "gamma": 0.5}])
def test_fast_batch1_sgd_is_the_general_loop_bit_for_bit(loss, dtype, extra):
    X, y = _data()
    kw = dict(loss=loss, dtype=dtype, optimizer="sgd", lr=0.01, batch_size=1, epochs=4, validation=0.2, **extra)
    fast = minireg.train(X, y, **kw)
    ref = minireg.train(X, y, trace="norms", **kw)
    np.testing.assert_array_equal(fast.theta, ref.theta)
    np.testing.assert_array_equal(fast.history["loss"], ref.history["loss"])
    np.testing.assert_array_equal(fast.history["val_loss"], ref.history["val_loss"])
    assert fast.n_steps == ref.n_steps == 4 * 240


def test_fast_batch1_sgd_diverges_where_the_general_loop_does():
    X, y = _data()
    X = X * 30
    kw = dict(optimizer="sgd", lr=5.0, batch_size=1, epochs=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = minireg.train(X, y, **kw)
        ref = minireg.train(X, y, trace="norms", **kw)
    assert fast.diverged and ref.diverged
    assert fast.diverged_at == ref.diverged_at
    np.testing.assert_array_equal(fast.theta, ref.theta)
    np.testing.assert_array_equal(fast.history["loss"], ref.history["loss"])


def test_fast_batch1_sgd_resumes_part_way_into_an_epoch():
    X, y = _data()
    whole = minireg.train(X, y, optimizer="sgd", lr=0.01, batch_size=1, epochs=2)
    first = minireg.train(X, y, optimizer="sgd", lr=0.01, batch_size=1, epochs=1)
    second = minireg.train(X, y, resume=first, epochs=1)
    np.testing.assert_array_equal(second.theta, whole.theta)
