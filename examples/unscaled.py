"""features on scales 1000 and 2, Adam at Keras' default lr for 200 epochs (seed 004).

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/unscaled.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("unscaled")

print("before training:", [str(f) for f in minireg.check_data(*minireg.datasets.unscaled_features())])
