"""linear regression, full-batch SGD with lr=0.002: the loss creeps down (seed 001).

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/low_lr.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("low_lr")

print("stability bound:", minireg.stability_bound(*minireg.datasets.linear_1d()))
