"""Replay the Keras model of seed 004 ("why doesn't TensorFlow regression converge"): Dense(1) on
five rows whose first feature is ~1000× the second, Adam at Keras' defaults, 200 epochs. Needs Keras 3
(pip install keras; KERAS_BACKEND=torch or jax or tensorflow)."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
import numpy as np  # noqa: E402

import minireg  # noqa: E402

X = np.array([[1000, 2], [1200, 3], [1500, 4], [1300, 2.5], [1600, 4.5]], np.float32)
y = np.array([5, 6, 7, 6.5, 7.5], np.float32)
keras.utils.set_random_seed(4)
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")

r = minireg.replay(model, X, y, epochs=200, batch_size=32)  # the model itself is not changed
history = model.fit(X, y, epochs=200, batch_size=32, shuffle=False, verbose=0)
print(f"Keras history['loss']: {history.history['loss'][0]:.6g} → {history.history['loss'][-1]:.6g}")
print(f"minireg's replay:      {r.replayed['loss'][0]:.6g} → {r.replayed['loss'][-1]:.6g}   (largest weight difference "
      f"{np.max(np.abs(r.params['W1'] - model.get_weights()[0])):.2g})")
for f in r.diagnose():
    print(f)
