"""Rows sorted by x and batches taken in order (seed 002).

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the unshuffled_batches finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/unshuffled.py
"""
import warnings

import minireg
from minireg import datasets

X, y = datasets.sorted_line()  # y = 2x + 1 + noise, rows sorted by x
args = dict(optimizer="sgd", lr=0.02, batch_size=20, shuffle=False, epochs=30)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "unshuffled_batches").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
print(f"final loss {bad.history['loss'][-1]:.4g} -> {good.history['loss'][-1]:.4g} (noise variance 0.25); "
      f"W1 {bad.params['W1'][0, 0]:.3f} -> {good.params['W1'][0, 0]:.3f} (truth 2)")
