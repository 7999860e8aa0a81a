"""Features on scales 1000 and 2, Adam at Keras' default lr for 200 epochs (seed 004).

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the unscaled_features finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/unscaled.py
"""
import warnings

import minireg
from minireg import datasets

X, y = datasets.unscaled_features()  # 5 rows: square feet and bedrooms -> price
args = dict(optimizer="adam", lr=0.001, epochs=200)
print(minireg.stability_bound(X, y))  # κ and the GD steps it implies, raw and standardized

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "unscaled_features").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
print(f"final loss {bad.history['loss'][-1]:.4g} -> {good.history['loss'][-1]:.4g}")
