"""Datasets that re-create the regression failures of the seed articles (shared/seeds/).

Each generator is deterministic in ``seed`` and returns ``(X, y)`` as float64 arrays.
"""
import numpy as np


def linear_1d(n=100, slope=2.0, intercept=1.0, noise=0.1, seed=0):
    """``X ~ U(0, 1)``, ``y = slope·X + intercept + noise·N(0, 1)``: the PyTorch linear-regression case
    whose loss increases when the learning rate is too high (seed 'why is pytorch linear regression
    loss increasing'). Plain SGD on MSE is stable for lr below 2/λmax ≈ 2.4 on this data."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, size=(n, 1))
    y = slope * X[:, 0] + intercept + noise * rng.standard_normal(n)
    return X, y
