"""Linear regression, SGD with lr=10: every step overshoots further (seed 001).

Trains the failing setup with its arguments in view, prints minireg's diagnosis (each fix was
verified by re-running this run with it), applies the lr_too_high finding's fix exactly as the finding
holds it, and prints the numbers that show the difference.
Run: python examples/high_lr.py
"""
import warnings

import minireg
from minireg import datasets

X, y = datasets.linear_1d()  # X ~ U(0,1), y = 2X + 1 + 0.1·noise, 100 rows
args = dict(optimizer="sgd", lr=10.0, batch_size=32, epochs=50)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", minireg.DivergenceWarning)  # a diverging run is a result here
    bad = minireg.train(X, y, **args, trace=True)
print(bad)
findings = bad.diagnose()
for f in findings:
    print(f)

fix = next(f for f in findings if f.code == "lr_too_high").fix  # taken from the finding, not re-typed
good = minireg.train(X, y, **{**args, **fix}, trace=True)
print(f"\nwith the fix {fix}:\n{good}")
print(f"before: diverged at step {bad.diverged_at}; after: final loss {good.history['loss'][-1]:.4g}, "
      f"W1={good.params['W1'][0, 0]:.3f}, b1={good.params['b1'][0]:.3f} (truth 2, 1)")

# the trace shows how each step overshoots: step 3, exactly as the kernel computed it
print(bad.trace.explain(3))
