"""A 2-unit ReLU network on a sine: SGD crawls far above what the data allow.

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the plateau finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/plateau.py
"""
import warnings

import minireg
from minireg import datasets

X, y = datasets.sine()
args = dict(model="mlp", hidden=(2,), activation="relu", optimizer="sgd", lr=0.05, batch_size=32, epochs=300)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "plateau").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
print(f"final loss {bad.history['loss'][-1]:.4g} -> {good.history['loss'][-1]:.4g} (noise variance 0.01)")
