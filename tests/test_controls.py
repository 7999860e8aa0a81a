"""Training controls: scaling, winsorizing, validation, early stopping, clipping, schedules, L1.

Clipping, schedules and L1 are checked step by step against PyTorch in test_parity_torch.py; here
are the data-side controls, the per-epoch decisions and the seed failure cases they fix.
"""
import numpy as np
import pytest
from scipy.stats import median_abs_deviation

import minireg
from minireg import datasets
from minireg.controls import EarlyStopping, Plateau


def _data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(5, 3, n), rng.uniform(-1, 1, n) * 100, np.full(n, 7.0)])
    y = 0.5 * X[:, 0] + 0.01 * X[:, 1] + rng.normal(0, 0.1, n)
    return X, y


@pytest.mark.parametrize("kind", ["zscore", "minmax", "robust"])
def test_scalers_match_their_references_and_keep_constant_columns_finite(kind):
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    X, y = _data()
    r = minireg.train(X, y, standardize=kind, epochs=2)
    s = r.x_scaler
    if kind == "zscore":
        ref = StandardScaler().fit(X)
        expected = ref.transform(X)
    elif kind == "minmax":
        expected = MinMaxScaler().fit(X).transform(X)
    else:
        mad = median_abs_deviation(X, axis=0, scale="normal")
        expected = (X - np.median(X, axis=0)) / np.where(mad == 0, 1, mad)
    np.testing.assert_allclose(s.transform(X, np.float64), expected, rtol=1e-12, atol=1e-12)
    assert r.config["x_scaler"]["constant_columns"] == [2]
    assert np.isfinite(r.theta).all()


def test_standardized_predictions_come_back_in_original_units():
    X, y = _data()
    y = 1000 + 50 * y
    r = minireg.train(X, y, standardize=True, standardize_y=True, optimizer="adam", lr=0.05, epochs=400)
    assert r.y_scaler.kind == "zscore"
    assert abs(np.mean(r.predict(X)) - np.mean(y)) < 1.0
    np.testing.assert_allclose(r.predict(X), y, atol=15)
    # the loss the run reports is in standardized units
    pred_std = (r.predict(X) - y.mean()) / y.std()
    assert r.history["loss"][-1] == pytest.approx(np.mean((pred_std - (y - y.mean()) / y.std()) ** 2), rel=1e-9)


def test_scaler_is_fitted_on_training_rows_only():
    X, y = _data()
    r = minireg.train(X, y, standardize=True, validation=0.25, epochs=2)
    assert r.config["n_samples"] == 60 and r.config["n_validation"] == 20
    assert not np.allclose(r.x_scaler.center, X.mean(axis=0))


def test_winsorize_clips_features_and_optionally_the_target():
    X, y = _data()
    X[0, 0], y[1] = 1e4, -1e4
    r = minireg.train(X, y, winsorize=(0.05, 0.95), winsorize_y=True, epochs=2)
    lo, hi = np.quantile(X, 0.05, axis=0), np.quantile(X, 0.95, axis=0)
    np.testing.assert_array_equal(r.x_scaler.clip[0], lo)
    np.testing.assert_array_equal(r.x_scaler.clip[1], hi)
    assert r.y_scaler.clip[0] == np.quantile(y, 0.05)
    # clipping is part of the fitted transform, so predict applies it too
    assert r.predict(np.array([[1e6, 0.0, 7.0]]))[0] == pytest.approx(r.predict(np.array([[hi[0], 0.0, 7.0]]))[0])


def test_validation_split_is_seeded_and_reported_each_epoch():
    X, y = _data()
    a = minireg.train(X, y, validation=0.2, epochs=5, seed=3)
    b = minireg.train(X, y, validation=0.2, epochs=5, seed=3)
    c = minireg.train(X, y, validation=0.2, epochs=5, seed=4)
    assert a.history["val_loss"].shape == (5,)
    np.testing.assert_array_equal(a.history["val_loss"], b.history["val_loss"])
    assert not np.array_equal(a.history["val_loss"], c.history["val_loss"])
    Xv, yv = X[:10], y[:10]
    d = minireg.train(X, y, validation=(Xv, yv), epochs=5)
    np.testing.assert_allclose(d.history["val_loss"][-1], np.mean((d.predict(Xv) - yv) ** 2), rtol=1e-12)


def _keras_reference(values, patience, min_delta):
    """Keras 3 EarlyStopping, written out from its source: (stopped epoch or None, best epoch)."""
    best, wait, best_epoch = np.inf, 0, 0
    for epoch, v in enumerate(values):
        wait += 1
        if v + min_delta < best:
            best, best_epoch, wait = v, epoch, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch, best_epoch
    return None, best_epoch


@pytest.mark.parametrize("patience,min_delta", [(0, 0.0), (1, 0.0), (2, 0.0), (3, 0.05), (10, 0.0)])
def test_early_stopping_follows_keras_on_a_constructed_curve(patience, min_delta):
    curve = [5.0, 4.0, 3.5, 3.48, 3.6, 3.2, 3.3, 3.25, 3.4, 3.5, 3.6, 3.7]
    stopper = EarlyStopping(patience, min_delta, restore_best=True)
    stopped = None
    for e, v in enumerate(curve):
        if stopper.update(e, v, np.array([float(e)])):
            stopped = e
            break
    expected_stop, expected_best = _keras_reference(curve, patience, min_delta)
    assert stopped == expected_stop == stopper.stopped_epoch
    assert stopper.best_epoch == expected_best
    assert stopper.best_theta[0] == expected_best


def test_early_stopping_stops_on_val_loss_and_restores_the_best_params_exactly():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (30, 1))
    y = np.sin(3 * X[:, 0]) + 0.4 * rng.normal(size=30)
    Xv = rng.uniform(-1, 1, (200, 1))
    yv = np.sin(3 * Xv[:, 0])
    kw = dict(model="mlp", hidden=(64, 64), activation="tanh", optimizer="adam", lr=0.02, epochs=400,
              batch_size=10, validation=(Xv, yv), trace=True, seed=1)
    full = minireg.train(X, y, **kw)
    r = minireg.train(X, y, **kw, early_stopping=5)
    val = full.history["val_loss"]
    stop, best = _keras_reference(val, 5, 0.0)
    assert stop is not None and stop < 399  # the run overfits, so it does stop
    assert r.stopped_epoch == stop and r.best_epoch == best
    assert r.history["val_loss"].size == stop + 1
    np.testing.assert_array_equal(r.history["val_loss"], val[:stop + 1])
    # params at the end of the best epoch = params before the first step of the next epoch
    first_of_next = np.flatnonzero(full.trace.epoch == best + 1)[0]
    np.testing.assert_array_equal(r.theta, full.trace.params[first_of_next])
    kept = minireg.train(X, y, **kw, early_stopping=5, restore_best=False)
    np.testing.assert_array_equal(kept.theta, full.trace.params[np.flatnonzero(full.trace.epoch == stop + 1)[0]])


def test_early_stopping_without_validation_monitors_training_loss():
    X, y = datasets.linear_1d()
    r = minireg.train(X, y, lr=0.5, epochs=500, early_stopping=3, min_delta=1e-6)
    assert r.stopped_epoch is not None and r.history["loss"].size == r.stopped_epoch + 1
    assert "val_loss" not in r.history


def test_plateau_matches_torch_rules():
    p = Plateau(1.0, factor=0.5, patience=1)
    lrs = [p.step(v) for v in [3.0, 2.0, 2.0, 2.0, 1.99999, 2.0, 2.0, 1.0]]
    # what torch 2.13's ReduceLROnPlateau(factor=0.5, patience=1) gives for the same metrics:
    # 1.99999 is no improvement on 2.0 (threshold 1e-4, relative), so it counts as a bad epoch
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_history_records_the_lr_of_each_epoch():
    X, y = datasets.linear_1d()
    r = minireg.train(X, y, lr=0.4, epochs=10, schedule="step", step_size=4, gamma=0.5)
    np.testing.assert_allclose(r.history["lr"], [0.4] * 4 + [0.2] * 4 + [0.1] * 2)
    r = minireg.train(X, y, lr=0.4, epochs=10, batch_size=25, schedule="invscaling", trace=True)
    np.testing.assert_allclose(r.trace.lr, 0.4 / np.arange(1, 41) ** 0.25, rtol=1e-15)


def test_seed_004_standardizing_brings_the_loss_down_100x():
    X, y = datasets.unscaled_features()
    raw = minireg.train(X, y, optimizer="adam", lr=0.001, epochs=200)  # Keras' default Adam lr
    scaled = minireg.train(X, y, optimizer="adam", lr=0.001, epochs=200, standardize=True)
    assert raw.history["loss"][-1] >= 100 * scaled.history["loss"][-1]


def test_seed_000_robust_losses_ignore_the_outlier():
    X, y = datasets.line_with_outlier()
    slopes = {loss: minireg.train(X, y, loss=loss, optimizer="adam", lr=0.05, epochs=3000).params["W1"][0, 0]
              for loss in ("mse", "huber", "mae")}
    assert abs(slopes["huber"] - 2) <= 0.1 and abs(slopes["mae"] - 2) <= 0.1
    assert abs(slopes["mse"] - 2) > 0.1 * 2


def test_clipping_is_visible_in_the_trace():
    X, y = datasets.linear_1d()
    r = minireg.train(X, y, lr=0.5, epochs=20, clip_grad_norm=0.5, trace=True)
    clipped = r.trace.grad_norm > 0.5
    np.testing.assert_array_equal(r.trace.clipped, clipped)
    # the trace keeps the raw gradient; the update shows the clipped one: -lr * g * 0.5/|g|
    i = np.flatnonzero(clipped)[0]
    np.testing.assert_allclose(r.trace.update[i], -0.5 * r.trace.grad[i] * 0.5 / (r.trace.grad_norm[i] + 1e-6))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"early_stopping": -1}, ValueError, r"early_stopping \(the patience\) must be an integer >= 0"),
    ({"winsorize": (0.9, 0.1)}, ValueError, "increasing order"),
    ({"winsorize": (0.1, 1.5)}, ValueError, r"winsorize\[1\] must be a finite number in \[0.0, 1.0\]"),
    ({"schedule": "cosin"}, ValueError, "Did you mean 'cosine'"),
    ({"schedule": "linear"}, ValueError, "schedule='linear' is not one of 'step', 'exponential'"),
    ({"schedule": "step"}, ValueError, "needs step_size"),
    ({"gamma": 0.5}, ValueError, "gamma=0.5 is a parameter of schedule='step' or 'exponential'"),
    ({"schedule": "plateau", "factor": 1.0}, ValueError, "factor must be < 1"),
    ({"standardize": "std"}, ValueError, "standardize='std' is not one of"),
    ({"validation": 1.0}, ValueError, r"validation must be a finite number in \(0.0, 1.0\)"),
    ({"validation": (np.zeros((3, 5)), np.zeros(3))}, ValueError, "validation X has 5 features"),
    ({"validation": (np.zeros((3, 3)), np.zeros(2))}, ValueError, "validation X has 3 samples but validation y has 2"),
    ({"clip_grad_norm": 0}, ValueError, "clip_grad_norm must be"),
    ({"l1": 0.1, "model": "mlp"}, ValueError, "l1=0.1 is available for model='linear' only"),
    ({"winsorize_y": True}, ValueError, "pass winsorize"),
])
def test_bad_control_values_get_a_clear_error(kwargs, exc, match):
    X, y = _data()
    with pytest.raises(exc, match=match):
        minireg.train(X, y, **kwargs)
