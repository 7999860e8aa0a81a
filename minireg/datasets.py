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


def unscaled_features():
    """Two features on scales ~1000 and ~2 (seed 'why doesn't tensorflow regression converge'):
    the Hessian is so ill-conditioned that Adam at its default lr barely moves the loss in 200
    epochs unless the features are standardized."""
    X = np.array([[1000, 2], [1200, 3], [1500, 4], [1300, 2.5], [1600, 4.5]], dtype=np.float64)
    y = np.array([5, 6, 7, 6.5, 7.5], dtype=np.float64)
    return X, y


def line_with_outlier():
    """``y = 2x`` for x = 1..10, except one target of 100 instead of 20 (seed 'what causes large
    regression loss'): MSE tilts the line towards the outlier, Huber and MAE do not."""
    X = np.arange(1, 11, dtype=np.float64).reshape(-1, 1)
    y = 2 * X[:, 0]
    y[-1] = 100.0
    return X, y
