"""An 8-layer sigmoid network: gradients shrink layer by layer.

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the vanishing_gradients finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/deep_sigmoid.py
"""
import warnings

import minireg
from minireg import datasets

X, y = datasets.deep_regression()
args = dict(model="mlp", hidden=(16,) * 8, activation="sigmoid", optimizer="sgd", lr=0.1, epochs=100)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "vanishing_gradients").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
for r in (bad, good):
    g = r.trace.step(0)["grad"]
    ratio = (g["W1"] ** 2).sum() ** 0.5 / (g["W9"] ** 2).sum() ** 0.5
    print(f"{r.config['activation']}: ‖∂L/∂W1‖ / ‖∂L/∂W9‖ at step 0 = {ratio:.2g}, "
          f"final loss {r.history['loss'][-1]:.4g}")
