"""MiniRegressor: minireg.train as a scikit-learn estimator."""
import inspect
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import linear_data
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import minireg
from minireg import DivergenceWarning, MiniRegressor, TrainResult
from minireg.trace import Trace

# defaults MiniRegressor deliberately changes from train's (justified in its docstring)
CHANGED_DEFAULTS = {"optimizer": "adam", "epochs": 200, "standardize": True, "standardize_y": True,
                    "progress": False}


def _linear_problem(n=300, seed=0):
    """y = X·w + 3 + noise with features on very different scales (R² of the truth ≈ 0.99)."""
    return linear_data(n, 4, seed, w=[2.0, 0.03, 150.0, -0.4], intercept=3.0, noise=0.3,
                       x_scale=np.array([1.0, 100.0, 0.01, 10.0]), x_shift=np.array([0.0, 500.0, 0.0, -20.0]))


@pytest.mark.parametrize("est", [
    MiniRegressor(),
    MiniRegressor(model="mlp", hidden=(8,), activation="tanh"),
    MiniRegressor(dtype="float32", batch_size=16, epochs=50, trace="norms"),
], ids=["default", "mlp", "float32-minibatch-traced"])
def test_check_estimator_passes_every_check(est, monkeypatch):
    # the array-API check runs (with NumPy input) only when SciPy's array API flag is set; set it so
    # that no check is skipped
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    results = check_estimator(est, on_skip=None, on_fail=None)
    not_passed = [(r["check_name"], r["status"], str(r["exception"])[:300]) for r in results
                  if r["status"] != "passed"]
    assert not not_passed
    assert len(results) >= 50
    names = {r["check_name"] for r in results}
    assert {"check_regressors_train", "check_fit_idempotent", "check_estimators_pickle",
            "check_array_api_input", "check_n_features_in_after_fitting"} <= names


def test_parameters_mirror_train():
    # resume, checkpoints and the rows' order belong to one call of train (continuing a given run,
    # writing a file, the rows of one X), not to an estimator's hyperparameters, which clone() and
    # GridSearchCV copy between fits
    train_params = {k: p.default for k, p in inspect.signature(minireg.train).parameters.items()
                    if p.kind is p.KEYWORD_ONLY and k not in ("resume", "checkpoint", "checkpoint_every", "order")}
    est_params = {k: p.default for k, p in inspect.signature(MiniRegressor.__init__).parameters.items()
                  if k != "self"}
    assert set(est_params) == set(train_params) | {"optimizer_params"}
    assert est_params["optimizer_params"] is None
    differing = {k: est_params[k] for k in train_params if est_params[k] != train_params[k]}
    assert differing == CHANGED_DEFAULTS
    assert est_params["trace"] is False


def test_pipeline_with_standard_scaler():
    X, y = _linear_problem()
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    pipe = Pipeline([("scale", StandardScaler()), ("reg", MiniRegressor(standardize=False))]).fit(Xtr, ytr)
    assert pipe.score(Xte, yte) > 0.95
    reg = pipe.named_steps["reg"]
    assert reg.n_features_in_ == 4 and isinstance(reg.result_, TrainResult)
    assert reg.result_.config["standardize"] is None and reg.result_.config["optimizer"] == "adam"
    # the estimator's own standardization is the same z-score: same model up to rounding
    alone = MiniRegressor().fit(Xtr, ytr)
    np.testing.assert_allclose(pipe.predict(Xte), alone.predict(Xte), rtol=1e-6, atol=1e-6)


def test_cross_val_score():
    X, y = _linear_problem()
    scores = cross_val_score(MiniRegressor(), X, y, cv=KFold(5, shuffle=True, random_state=0))
    assert scores.shape == (5,) and np.all(scores > 0.95)
    # an MLP on a nonlinear target
    rng = np.random.default_rng(1)
    Xn = rng.uniform(-2, 2, size=(400, 2))
    yn = np.sin(2 * Xn[:, 0]) + Xn[:, 1] ** 2
    mlp = MiniRegressor(model="mlp", hidden=(32,), activation="tanh", lr=0.01, epochs=300, batch_size=32)
    assert cross_val_score(mlp, Xn, yn, cv=3).mean() > 0.9


def test_grid_search_over_lr_and_optimizer():
    X, y = _linear_problem()
    grid = {"lr": [1e-4, 1e-2, 1e-1], "optimizer": ["sgd", "adam"]}
    search = GridSearchCV(MiniRegressor(epochs=100), grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 6
    assert search.best_score_ > 0.95
    assert search.best_params_["lr"] >= 1e-2  # lr=1e-4 cannot get there in 100 full-batch steps
    scores = dict(zip(map(lambda p: (p["optimizer"], p["lr"]), search.cv_results_["params"]),
                      search.cv_results_["mean_test_score"], strict=True))
    assert scores[("sgd", 1e-4)] < 0.5 and scores[("adam", 1e-4)] < 0.5
    best = search.best_estimator_
    assert best.result_.config["lr"] == search.best_params_["lr"]
    assert best.result_.config["optimizer"] == search.best_params_["optimizer"]
    assert best.score(X, y) > 0.95


def test_grid_search_ranks_a_diverging_candidate_last():
    X, y = _linear_problem()
    search = GridSearchCV(MiniRegressor(optimizer="sgd", standardize=False, epochs=50),
                          {"lr": [1e-6, 1.0]}, cv=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(X, y)
    assert any(issubclass(w.category, DivergenceWarning) for w in caught)
    mean = search.cv_results_["mean_test_score"]
    assert np.isnan(mean[1]) and np.isfinite(mean[0])
    assert search.best_params_ == {"lr": 1e-6}


def test_feature_names_with_a_dataframe():
    X, y = _linear_problem()
    df = pd.DataFrame(X, columns=["age", "income", "rate", "temp"])
    est = MiniRegressor().fit(df, pd.Series(y, name="target"))
    assert est.n_features_in_ == 4
    assert list(est.feature_names_in_) == ["age", "income", "rate", "temp"]
    np.testing.assert_array_equal(est.predict(df), MiniRegressor().fit(X, y).predict(X))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df[["income", "age", "rate", "temp"]])
    with pytest.warns(UserWarning, match="valid feature names"):
        est.predict(X)
    assert not hasattr(MiniRegressor().fit(X, y), "feature_names_in_")


def test_clone_get_params_set_params_round_trip():
    est = MiniRegressor(model="mlp", hidden=(7, 3), lr=0.05, optimizer_params={"beta1": 0.8, "amsgrad": True},
                        winsorize=(0.01, 0.99), seed=4)
    params = est.get_params()
    assert params["hidden"] == (7, 3) and params["optimizer_params"] == {"beta1": 0.8, "amsgrad": True}
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert twin.optimizer_params is not est.optimizer_params  # deep-copied, as clone does
    rebuilt = MiniRegressor().set_params(**params)
    assert rebuilt.get_params() == params
    assert repr(rebuilt) == repr(est)
    X, y = _linear_problem(n=120)
    rebuilt.fit(X, y)
    assert rebuilt.get_params() == params  # fit changes no parameter
    cfg = rebuilt.result_.config
    assert (cfg["beta1"], cfg["amsgrad"], cfg["hidden"], cfg["seed"]) == (0.8, True, (7, 3), 4)
    np.testing.assert_array_equal(rebuilt.predict(X), clone(est).fit(X, y).predict(X))
    assert est.set_params(lr=0.2) is est and est.lr == 0.2


def test_fitted_attributes():
    X, y = _linear_problem(n=100)
    est = MiniRegressor(epochs=40)
    with pytest.raises(NotFittedError):
        est.predict(X)
    assert est.fit(X, y) is est
    assert est.loss_curve_ == est.result_.history["loss"].tolist()
    assert isinstance(est.loss_curve_, list) and all(type(v) is float for v in est.loss_curve_)
    assert est.n_iter_ == 40 == len(est.loss_curve_)
    assert est.trace_ is None and est.diverged_ is False
    np.testing.assert_array_equal(est.predict(X), est.result_.predict(X))
    traced = MiniRegressor(epochs=40, trace=True).fit(X, y)
    assert isinstance(traced.trace_, Trace) and traced.trace_ is traced.result_.trace
    assert len(traced.trace_) == 40 and set(traced.trace_.step(3)["params"]) == {"W1", "b1"}
    np.testing.assert_array_equal(traced.predict(X), est.predict(X))  # tracing changes nothing
    early = MiniRegressor(epochs=500, validation=0.2, early_stopping=5, min_delta=1e-4).fit(X, y)
    assert early.result_.stopped_epoch is not None
    assert early.n_iter_ == early.result_.stopped_epoch + 1 < 500
    assert early.loss_curve_ == early.result_.history["loss"].tolist()


def test_diverging_fit_is_fitted_and_predicts_nan():
    X, y = _linear_problem(n=100)
    est = MiniRegressor(optimizer="sgd", lr=1e3, standardize=False, epochs=20)
    with pytest.warns(DivergenceWarning):
        assert est.fit(X, y) is est
    assert est.diverged_ and est.result_.diverged and est.n_iter_ < 20
    with pytest.warns(DivergenceWarning, match="diverged at step"):
        pred = est.predict(X)
    assert pred.shape == (100,) and np.isnan(pred).all()
    with pytest.warns(DivergenceWarning), pytest.raises(ValueError, match="NaN"):
        est.score(X, y)


def test_optimizer_params_and_bad_parameters_fail_in_fit():
    X, y = _linear_problem(n=50)
    fitted = MiniRegressor(optimizer="sgd", optimizer_params={"momentum": 0.9, "nesterov": True}).fit(X, y)
    assert fitted.result_.config["momentum"] == 0.9 and fitted.result_.config["nesterov"] is True
    with pytest.raises(TypeError, match="optimizer_params must be None or a dict"):
        MiniRegressor(optimizer_params=[("momentum", 0.9)]).fit(X, y)
    with pytest.raises(ValueError, match=r"\['lr'\].*parameters of MiniRegressor"):
        MiniRegressor(optimizer_params={"lr": 0.1}).fit(X, y)
    with pytest.raises(TypeError, match="momentum"):
        MiniRegressor(optimizer="adam", optimizer_params={"momentum": 0.9}).fit(X, y)
    bad = MiniRegressor(lr=-1.0)  # construction never validates (sklearn convention) ...
    with pytest.raises(ValueError, match="lr"):
        bad.fit(X, y)  # ... fit does


def test_pickle_and_save_of_a_fitted_estimator(tmp_path):
    X, y = _linear_problem(n=80)
    est = MiniRegressor(model="mlp", hidden=(5,)).fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    est.result_.save(tmp_path / "est.npz")
    np.testing.assert_array_equal(minireg.load(tmp_path / "est.npz").predict(X), est.predict(X))


def test_import_minireg_does_not_import_sklearn():
    code = ("import sys, minireg\n"
            "assert 'sklearn' not in sys.modules\n"
            "from minireg import MiniRegressor\n"
            "assert 'sklearn' in sys.modules and MiniRegressor.__module__ == 'minireg.sklearn'\n"
            "assert minireg.MiniRegressor is MiniRegressor and 'MiniRegressor' in minireg.__all__\n"
            "try:\n    minireg.NoSuchThing\nexcept AttributeError as e:\n    assert 'NoSuchThing' in str(e)\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)
