"""A sine target fitted with a straight line.

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the underfitting finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/sine_linear.py
"""
import warnings

import minireg
from minireg import datasets

X, y = datasets.sine()  # y = sin(x) + 0.1·noise on [-3, 3]
args = dict(optimizer="adam", lr=0.05, epochs=300)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "underfitting").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
print(f"final loss {bad.history['loss'][-1]:.4g} -> {good.history['loss'][-1]:.4g} (noise variance 0.01)")
