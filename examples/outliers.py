"""y = 2x with one target of 100 instead of 20, MSE (seed 000).

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the outliers finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/outliers.py
"""
import warnings

import minireg
from minireg import datasets

X, y = datasets.line_with_outlier()
args = dict(optimizer="adam", lr=0.05, epochs=3000)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "outliers").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
print(f"slope {bad.params['W1'][0, 0]:.3f} -> {good.params['W1'][0, 0]:.3f}, intercept {bad.params['b1'][0]:.3f} -> "
      f"{good.params['b1'][0]:.3f} (the nine clean rows: slope 2, intercept 0)")
