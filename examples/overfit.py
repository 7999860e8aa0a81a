"""30 noisy rows, a 64-64 MLP trained for 400 epochs.

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/overfit.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("overfit")

print("stopped at epoch", good.stopped_epoch, "restored epoch", good.best_epoch)
