"""a sine target fitted with a straight line.

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/sine_linear.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("sine_linear")
