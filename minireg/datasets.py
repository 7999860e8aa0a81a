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


def sorted_line(n=200, seed=0):
    """``y = 2x + 1 + noise`` with the rows sorted by x: batches taken in order (shuffle=False)
    each see one end of the range (seed 'why does the loss recur')."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 10, n))
    return x.reshape(-1, 1), 2 * x + 1 + rng.normal(0, 0.5, n)


def sine(n=200, noise=0.1, seed=0):
    """``y = sin(x) + noise`` on [-3, 3]: a straight line cannot follow it (underfitting)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    return x.reshape(-1, 1), np.sin(x) + noise * rng.normal(size=n)


def small_noisy(n=30, n_val=200, seed=0):
    """A small noisy training set and a large clean validation set from ``y = sin(3x)``: a wide
    MLP trained long memorises the noise (overfitting). Returns X, y, X_val, y_val."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 1))
    Xv = rng.uniform(-1, 1, (n_val, 1))
    return X, np.sin(3 * X[:, 0]) + 0.4 * rng.normal(size=n), Xv, np.sin(3 * Xv[:, 0])


def deep_regression(n=200, d=4, seed=0):
    """A smooth target of four features, for deep networks (the deep sigmoid case)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.tanh(X @ np.array([1.0, -1.0, 0.5, 0.25][:d])) + 0.05 * rng.normal(size=n)


class Case:
    """A seed failure case: its data, the training arguments that fail, the finding code they
    should produce, and the arguments that fix it."""

    def __init__(self, name, description, data, bad, code, fix):
        self.name, self.description, self.code = name, description, code
        self._data, self.bad, self.fix = data, bad, fix

    def data(self):
        """(X, y, train-argument extras such as validation=...)."""
        out = self._data()
        return (out[0], out[1], {}) if len(out) == 2 else (out[0], out[1], {"validation": (out[2], out[3])})

    def __repr__(self):
        return f"Case({self.name!r}: {self.description}; expect {self.code})"


def _dead_init():
    """An MLP 1-16-1 whose hidden ReLUs all start with bias −5: every unit is dead on [0, 1]."""
    rng = np.random.default_rng(0)
    return {"W1": rng.uniform(-1, 1, (1, 16)), "b1": np.full(16, -5.0), "W2": rng.uniform(-0.25, 0.25, (16, 1)),
            "b2": np.zeros(1)}


CASES = {c.name: c for c in [
    Case("high_lr", "linear regression, SGD with lr=10: every step overshoots further (seed 001)",
         lambda: linear_1d(), dict(optimizer="sgd", lr=10.0, batch_size=32, epochs=50), "lr_too_high",
         dict(optimizer="sgd", lr=0.3, batch_size=32, epochs=50)),
    Case("low_lr", "linear regression, full-batch SGD with lr=0.002: the loss creeps down (seed 001)",
         lambda: linear_1d(), dict(optimizer="sgd", lr=0.002, epochs=100), "lr_too_low",
         dict(optimizer="sgd", lr=0.38, epochs=100)),
    Case("unscaled", "features on scales 1000 and 2, Adam at Keras' default lr for 200 epochs (seed 004)",
         unscaled_features, dict(optimizer="adam", lr=0.001, epochs=200), "unscaled_features",
         dict(optimizer="adam", lr=0.1, epochs=200, standardize="zscore")),
    Case("outliers", "y = 2x with one target of 100 instead of 20, MSE (seed 000)",
         line_with_outlier, dict(optimizer="adam", lr=0.05, epochs=3000), "outliers",
         dict(optimizer="adam", lr=0.05, epochs=3000, loss="huber")),
    Case("unshuffled", "rows sorted by x and batches taken in order (seed 002)",
         sorted_line, dict(optimizer="sgd", lr=0.005, batch_size=20, shuffle=False, epochs=30), "unshuffled_batches",
         dict(optimizer="sgd", lr=0.005, batch_size=20, shuffle=True, epochs=30)),
    Case("sine_linear", "a sine target fitted with a straight line", sine,
         dict(optimizer="adam", lr=0.05, epochs=300), "underfitting",
         dict(model="mlp", hidden=(32, 32), activation="tanh", optimizer="adam", lr=0.01, epochs=500)),
    Case("overfit", "30 noisy rows, a 64-64 MLP trained for 400 epochs", small_noisy,
         dict(model="mlp", hidden=(64, 64), activation="tanh", optimizer="adam", lr=0.02, batch_size=10,
              epochs=400, seed=1), "overfitting",
         dict(model="mlp", hidden=(64, 64), activation="tanh", optimizer="adam", lr=0.02, batch_size=10,
              epochs=400, seed=1, early_stopping=10)),
    Case("deep_sigmoid", "an 8-layer sigmoid network: gradients shrink layer by layer", deep_regression,
         dict(model="mlp", hidden=(16,) * 8, activation="sigmoid", optimizer="sgd", lr=0.1, epochs=100),
         "vanishing_gradients",
         dict(model="mlp", hidden=(16,) * 8, activation="relu", optimizer="sgd", lr=0.1, epochs=100, init="keras")),
    Case("dead_relu", "ReLU units that start dead (biases −5) never come back", lambda: linear_1d(),
         dict(model="mlp", hidden=(16,), activation="relu", optimizer="sgd", lr=0.1, epochs=100, init=_dead_init()),
         "dead_relu", dict(model="mlp", hidden=(16,), activation="relu", optimizer="sgd", lr=0.1, epochs=100)),
]}


def run_case(name, verbose=True):
    """Train a case with its failing arguments, diagnose it, train again with the fix; returns
    (failing result, its findings, fixed result)."""
    import warnings

    from .train import DivergenceWarning, train
    case = CASES[name]
    X, y, extra = case.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        bad = train(X, y, **case.bad, **extra, trace=True)
    findings = bad.diagnose()
    good = train(X, y, **case.fix, **extra, trace=True)
    if verbose:
        print(f"== {case.name}: {case.description}")
        print(f"   {bad}")
        for f in findings:
            print("   " + str(f).replace("\n", "\n   "))
        print(f"-- with the fix {case.fix}:")
        print(f"   {good}")
        left = [f.code for f in good.diagnose() if f.severity != "info"]
        print(f"   findings left: {left or 'none'}")
    return bad, findings, good
