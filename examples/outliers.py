"""y = 2x with one target of 100 instead of 20, MSE (seed 000).

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/outliers.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("outliers")

print("slope with MSE:", bad.params["W1"].ravel(), " with Huber:", good.params["W1"].ravel(), "(truth: 2)")
