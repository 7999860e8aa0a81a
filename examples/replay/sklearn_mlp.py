"""Replay an MLPRegressor that stops early, step for step, and diagnose it (README: "Replay your
scikit-learn, Keras or PyTorch run")."""
import warnings

import numpy as np
from sklearn.neural_network import MLPRegressor

import minireg

rng = np.random.default_rng(0)
X = np.column_stack([rng.uniform(0, 1000, 400), rng.uniform(-1, 1, 400)])  # metres, and a ratio
y = np.sin(X[:, 0] / 200) + X[:, 1] + 0.05 * rng.normal(size=400)

est = MLPRegressor(hidden_layer_sizes=(32,), random_state=0, max_iter=500)
r = minireg.replay(est, X, y, trace=True)
rep = r.replayed
curve = np.array(rep["loss_curve_"])
print(f"scikit-learn would stop after {rep['n_iter_']} of {est.max_iter} epochs: loss {curve[0]:.5g} → "
      f"{curve.min():.3g} at epoch {int(curve.argmin()) + 1} → {curve[-1]:.3g} at the stop")
fitted = MLPRegressor(hidden_layer_sizes=(32,), random_state=0, max_iter=500)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fitted.fit(X, y)
print(f"fit() itself: n_iter_={fitted.n_iter_}, largest weight difference from the replay "
      f"{max(np.max(np.abs(fitted.coefs_[k] - r.params[f'W{k + 1}'])) for k in range(2)):.2g}")
worst = int(np.argmax(np.diff(r.trace.loss)) + 1)
print(f"\nthe step whose batch loss rose most, {worst} (epoch {int(r.trace.epoch[worst])}):")
print("\n".join(str(r.trace.explain(worst)).splitlines()[-12:]))
print()
for f in r.diagnose(verify=True):  # re-run every fix, however long it takes
    print(f)
