"""rows sorted by x and batches taken in order (seed 002).

Trains the failing setup, prints minireg's diagnosis, applies the fix and shows the difference.
Run: python examples/unshuffled.py
"""
import minireg

bad, findings, good = minireg.datasets.run_case("unshuffled")

spe = bad.config["steps_per_epoch"]
print("batch losses of epoch 5 (sorted rows):", bad.trace.loss[5 * spe:6 * spe].round(2))
