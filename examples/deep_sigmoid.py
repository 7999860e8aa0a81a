"""an 8-layer sigmoid network: gradients shrink layer by layer.

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/deep_sigmoid.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("deep_sigmoid")
