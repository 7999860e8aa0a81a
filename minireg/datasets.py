"""Datasets that re-create the regression failures of the seed articles (shared/seeds/).

Each generator is deterministic in ``seed`` and returns ``(X, y)`` as float64 arrays.
"""
import warnings

import numpy as np

from .diagnose._model import Model
from .diagnose.detectors import _layer_grad_norms
from .train import DivergenceWarning, train


def linear_1d(n=100, slope=2.0, intercept=1.0, noise=0.1, seed=0):
    """``X ~ U(0, 1)``, ``y = slope·X + intercept + noise·N(0, 1)``: the PyTorch linear-regression case
    whose loss increases when the learning rate is too high (seed 'why is pytorch linear regression
    loss increasing'). Plain SGD on MSE is stable for lr below 2/λmax ≈ 0.756 on this data (n=100, seed 0)."""
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
    should produce, and what to print to show that the finding's (verified) fix worked. The fix
    itself is not stored here: it is always taken from the finding (see run_case)."""

    def __init__(self, name, description, data, bad, code, show):
        self.name, self.description, self.code = name, description, code
        self._data, self.bad, self._show = data, bad, show

    def data(self):
        """(X, y, train-argument extras such as validation=...)."""
        out = self._data()
        return (out[0], out[1], {}) if len(out) == 2 else (out[0], out[1], {"validation": (out[2], out[3])})

    def show(self, bad, good):
        """Lines with the numbers that show the difference the fix made."""
        return self._show(bad, good)

    def __repr__(self):
        return f"Case({self.name!r}: {self.description}; expect {self.code})"


def _dead_init():
    """An MLP 1-16-1 whose hidden ReLUs all start with bias −5: every unit is dead on [0, 1]."""
    rng = np.random.default_rng(0)
    return {"W1": rng.uniform(-1, 1, (1, 16)), "b1": np.full(16, -5.0), "W2": rng.uniform(-0.25, 0.25, (16, 1)),
            "b2": np.zeros(1)}


def _final(r):
    return "diverged at step {}".format(r.diverged_at) if r.diverged else f"final loss {r.history['loss'][-1]:.4g}"


def _line(r):
    return f"W1={r.params['W1'].ravel()[0]:.4g}, b1={r.params['b1'][0]:.4g}"


def _val(r):
    Xv, yv = r.inputs.kwargs["validation"]
    return (f"validation MSE of the returned parameters {np.mean((r.predict(Xv) - yv) ** 2):.4g} "
            f"(after {r.history['loss'].size} epochs)")


def _grad_ratio(r):
    norms = _layer_grad_norms(r.layout, r.trace.grad[0].astype(np.float64))
    return f"‖∂L/∂W1‖/‖∂L/∂W_last‖ at step 0 = {norms[0] / norms[-1]:.2g}"


def _dead(r):
    X = r.data[0]
    hidden, _ = Model(r.layout, r.config["activation"], r.config["loss"], r.config["delta"]).layer_outputs(
        r.theta.astype(np.float64), X.astype(np.float64))
    return f"dead hidden units {int((hidden[0].max(axis=0) <= 0).sum())} of {hidden[0].shape[1]}"


def _two(fn, label=""):
    return lambda bad, good: [f"before: {fn(bad)}", f"after:  {fn(good)}" + label]


CASES = {c.name: c for c in [
    Case("high_lr", "linear regression, SGD with lr=10: every step overshoots further (seed 001)",
         lambda: linear_1d(), dict(optimizer="sgd", lr=10.0, batch_size=32, epochs=50), "lr_too_high",
         lambda bad, good: [f"before: {_final(bad)}", f"after:  {_final(good)}, {_line(good)} (truth 2, 1)"]),
    Case("low_lr", "linear regression, full-batch SGD with lr=0.002: the loss creeps down (seed 001)",
         lambda: linear_1d(), dict(optimizer="sgd", lr=0.002, epochs=100), "lr_too_low",
         lambda bad, good: [f"before: {_final(bad)}, {_line(bad)}", f"after:  {_final(good)}, {_line(good)} "
                            "(truth 2, 1; noise variance 0.01)"]),
    Case("unscaled", "features on scales 1000 and 2, Adam at Keras' default lr for 200 epochs (seed 004)",
         unscaled_features, dict(optimizer="adam", lr=0.001, epochs=200), "unscaled_features", _two(_final)),
    Case("outliers", "y = 2x with one target of 100 instead of 20, MSE (seed 000)",
         line_with_outlier, dict(optimizer="adam", lr=0.05, epochs=3000), "outliers",
         lambda bad, good: [f"before: {_line(bad)}", f"after:  {_line(good)} (the clean rows' line: 2, 0)"]),
    Case("unshuffled", "rows sorted by x and batches taken in order (seed 002)",
         sorted_line, dict(optimizer="sgd", lr=0.02, batch_size=20, shuffle=False, epochs=30), "unshuffled_batches",
         lambda bad, good: [f"before: {_final(bad)}, {_line(bad)}", f"after:  {_final(good)}, {_line(good)} "
                            "(truth 2, 1; noise variance 0.25)"]),
    Case("sine_linear", "a sine target fitted with a straight line", sine,
         dict(optimizer="adam", lr=0.05, epochs=300), "underfitting", _two(_final, " (noise variance 0.01)")),
    Case("overfit", "30 noisy rows, a 64-64 MLP trained for 400 epochs", small_noisy,
         dict(model="mlp", hidden=(64, 64), activation="tanh", optimizer="adam", lr=0.02, batch_size=10,
              epochs=400, seed=1), "overfitting", _two(_val)),
    Case("deep_sigmoid", "an 8-layer sigmoid network: gradients shrink layer by layer", deep_regression,
         dict(model="mlp", hidden=(16,) * 8, activation="sigmoid", optimizer="sgd", lr=0.1, epochs=100),
         "vanishing_gradients", _two(lambda r: f"{_grad_ratio(r)}, {_final(r)}")),
    Case("dead_relu", "ReLU units that start dead (biases −5) never come back", lambda: linear_1d(),
         dict(model="mlp", hidden=(16,), activation="relu", optimizer="sgd", lr=0.1, epochs=100, init=_dead_init()),
         "dead_relu", lambda bad, good: [f"before: {_dead(bad)}, {_final(bad)}",
                                         f"after:  {_dead(good)}, {_final(good)} (with x in [0, 1] and zero biases, "
                                         "units with a negative weight stay off: a ReLU net needs only some)"]),
    Case("plateau", "a 2-unit ReLU network on a sine: SGD crawls far above what the data allow", sine,
         dict(model="mlp", hidden=(2,), activation="relu", optimizer="sgd", lr=0.05, batch_size=32, epochs=300),
         "plateau", _two(_final, " (noise variance 0.01)")),
]}


def _call(args):
    return ", ".join(f"{k}={'{...}' if isinstance(v, dict) else repr(v)}" for k, v in args.items())


def run_case(name, verbose=True):
    """Train a case with its failing arguments, diagnose it (each fix verified by re-running), and
    train again with exactly the case's finding's ``fix``; returns (failing result, its findings,
    fixed result)."""
    case = CASES[name]
    X, y, extra = case.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        bad = train(X, y, **case.bad, **extra, trace=True)
    findings = bad.diagnose(verify=True)
    finding = next((f for f in findings if f.code == case.code), None)
    fix = finding.fix if finding is not None else {}
    good = train(X, y, **{**case.bad, **fix}, **extra, trace=True) if fix else None
    if verbose:
        print(f"== {case.name}: {case.description}")
        print(f"   train(X, y, {_call(case.bad)}{', validation=(X_val, y_val)' if extra else ''})")
        print(f"   {bad}")
        for f in findings:
            print("   " + str(f).replace("\n", "\n   "))
        if good is None:
            print(f"-- no verified fix for {case.code}")
            return bad, findings, good
        print(f"-- applying the {case.code} finding's fix, exactly: {', '.join(f'{k}={v!r}' for k, v in fix.items())}")
        print(f"   {good}")
        for line in case.show(bad, good):
            print("   " + line)
        left = [f.code for f in good.diagnose(verify=False) if f.severity != "info"]
        print(f"   findings left: {', '.join(left) if left else 'none'}")
    return bad, findings, good
