"""30 noisy rows, a 64-64 MLP trained for 400 epochs.

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the overfitting finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/overfit.py
"""
import warnings

import minireg
from minireg import datasets

X, y, X_val, y_val = datasets.small_noisy()
args = dict(model="mlp", hidden=(64, 64), activation="tanh", optimizer="adam", lr=0.02, batch_size=10,
            epochs=400, seed=1, validation=(X_val, y_val))

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "overfitting").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
mse = lambda r: ((r.predict(X_val) - y_val) ** 2).mean()  # noqa: E731
print(f"validation MSE {mse(bad):.4g} -> {mse(good):.4g}; stopped at epoch {good.stopped_epoch}, "
      f"parameters of epoch {good.best_epoch} restored")
