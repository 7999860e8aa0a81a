"""linear regression, SGD with lr=10: every step overshoots further (seed 001).

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/high_lr.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("high_lr")

# the trace shows how each step overshoots: step 3, exactly as the kernel computed it
bad.trace.explain(3)
