"""Data sets shared by the test files, as plain functions: ``from conftest import linear_data``.

Each helper draws from ``np.random.default_rng(seed)`` in a fixed order, so a test gets the same
numbers every run. numpy is imported inside the helpers, not here: tests/cuda_sim_cases.py sets
the BLAS thread variables before its first numpy import, and pytest loads this file before it.
"""


def linear_data(n=20, d=2, seed=0, w=None, intercept=0.0, noise=0.1, x_scale=1.0, x_shift=0.0):
    """X = N(0, 1)·x_scale + x_shift of shape (n, d), then y = X·w + intercept + noise·N(0, 1).

    ``w`` defaults to (1, 2, …, d); a longer ``w`` is cut to its first d entries."""
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * x_scale + x_shift
    w = np.arange(1.0, d + 1) if w is None else np.asarray(w, dtype=np.float64)[:d]
    return X, X @ w + intercept + noise * rng.normal(size=n)


def nonlinear_data(n=60, d=4, seed=0):
    """X = N(0, 1) of shape (n, d), y = sin(x₀) + x₁·x_{d−1} + 0.1·N(0, 1): a smooth target with an
    interaction, for MLPs."""
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, -1] + 0.1 * rng.normal(size=n)
    return X, y
