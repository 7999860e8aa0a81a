"""ReLU units that start dead (biases −5) never come back.

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/dead_relu.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("dead_relu")
