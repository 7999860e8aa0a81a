"""ReLU units that start dead (biases -5) never come back.

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the dead_relu finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/dead_relu.py
"""
import warnings

import minireg
from minireg import datasets

X, y = datasets.linear_1d()
init = datasets.CASES["dead_relu"].bad["init"]  # W1 ~ U(-1, 1), b1 = -5: every unit is off on [0, 1]
args = dict(model="mlp", hidden=(16,), activation="relu", optimizer="sgd", lr=0.1, epochs=100, init=init)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "dead_relu").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
print(f"final loss {bad.history['loss'][-1]:.4g} -> {good.history['loss'][-1]:.4g} (noise variance 0.01)")
