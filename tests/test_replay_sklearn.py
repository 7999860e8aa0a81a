"""minireg.replay of scikit-learn's MLPRegressor and SGDRegressor against runs recorded from
scikit-learn itself (tests/fixtures/make_replay_fixtures.py, replay_sklearn_*.npz): the replayed
weights, epoch count and reported losses equal what fit() produced."""
import json
import pathlib
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDRegressor
from sklearn.neural_network import MLPRegressor

import minireg

FIX = pathlib.Path(__file__).parent / "fixtures"
CASES = json.loads((FIX / "replay_cases.json").read_text())["cases"]
MLP = np.load(FIX / "replay_sklearn_mlp.npz")
SGD = np.load(FIX / "replay_sklearn_sgd.npz")
MLP_CASES = [c for c in CASES if c["framework"] == "sklearn.MLPRegressor"]
SGD_CASES = [c for c in CASES if c["framework"] == "sklearn.SGDRegressor"]
# what SGDRegressor replay refuses, with the reason it gives
NOT_REPLAYED = {"l1": "truncated gradient", "elasticnet": "truncated gradient"}


def _rel(a, b, scale):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / scale


@pytest.mark.parametrize("case", MLP_CASES, ids=[c["id"] for c in MLP_CASES])
def test_mlp_regressor_replays_fit(case):
    cid = case["id"]
    X, y = MLP[f"{cid}/X"], MLP[f"{cid}/y"]
    r = minireg.replay(MLPRegressor(**case["params"]), X, y)
    L = r.layout.n_layers
    scale = max(float(np.max(np.abs(MLP[f"{cid}/coefs_{k}"]))) for k in range(L))
    for k in range(L):
        assert _rel(r.params[f"W{k + 1}"], MLP[f"{cid}/coefs_{k}"], scale) < 1e-10
        assert _rel(r.params[f"b{k + 1}"], MLP[f"{cid}/intercepts_{k}"], scale) < 1e-10
    rep = r.replayed
    assert rep["n_iter_"] == int(MLP[f"{cid}/n_iter_"])
    assert rep["t_"] == int(MLP[f"{cid}/t_"])
    np.testing.assert_allclose(rep["loss_curve_"], MLP[f"{cid}/loss_curve_"], rtol=1e-10, atol=0)
    if case["params"].get("early_stopping"):
        np.testing.assert_allclose(rep["validation_scores_"], MLP[f"{cid}/validation_scores_"], rtol=1e-10, atol=1e-12)
        # the kept weights are the best validation epoch's
        best = int(np.argmax(MLP[f"{cid}/validation_scores_"]))
        assert _rel(r.params["W1"], MLP[f"{cid}/epoch/coefs_0"][best], scale) < 1e-10
    else:
        assert rep["best_loss_"] == pytest.approx(float(MLP[f"{cid}/best_loss_"]), rel=1e-10)
    # the whole run is traced like any run: one row per step, the stopping epoch included
    n_train = len(MLP[f"{cid}/train_idx"])
    bs = min(200, n_train) if case["full_params"]["batch_size"] == "auto" else case["full_params"]["batch_size"]
    assert len(r.trace) == rep["n_iter_"] * -(-n_train // bs)


def test_mlp_cases_cover_what_the_replay_must_handle():
    p = [c["full_params"] for c in MLP_CASES]
    assert {q["solver"] for q in p} == {"sgd", "adam"}
    assert {q["learning_rate"] for q in p if q["solver"] == "sgd"} == {"constant", "invscaling", "adaptive"}
    assert {q["activation"] for q in p} == {"relu", "tanh", "logistic", "identity"}
    assert any(q["early_stopping"] for q in p) and any(q["shuffle"] for q in p) and any(not q["shuffle"] for q in p)
    assert {c["stopped"] for c in MLP_CASES} == {"tol", "max_iter"}


def test_mlp_replay_equals_the_installed_scikit_learn():
    """Beyond the fixtures: the scikit-learn installed here, fitted live."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(90, 4))
    y = np.tanh(X @ [1.0, -2.0, 0.5, 0.0]) + 0.05 * rng.normal(size=90)
    kw = dict(hidden_layer_sizes=(7, 3), activation="tanh", solver="adam", learning_rate_init=0.01, batch_size=20,
              max_iter=40, random_state=11, tol=1e-4, n_iter_no_change=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(**kw).fit(X, y)
    r = minireg.replay(MLPRegressor(**kw), X, y)
    assert r.replayed["n_iter_"] == est.n_iter_
    for k in range(3):
        np.testing.assert_allclose(r.params[f"W{k + 1}"], est.coefs_[k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.params[f"b{k + 1}"], est.intercepts_[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", SGD_CASES, ids=[c["id"] for c in SGD_CASES])
def test_sgd_regressor_replays_fit_or_says_why_not(case):
    cid, p = case["id"], case["full_params"]
    X, y = SGD[f"{cid}/X"], SGD[f"{cid}/y"]
    est = SGDRegressor(**case["params"])
    if p["penalty"] in NOT_REPLAYED:
        with pytest.raises(ValueError, match=NOT_REPLAYED[p["penalty"]]):
            minireg.replay(est, X, y)
        return
    if not p["fit_intercept"]:
        with pytest.raises(ValueError, match="fit_intercept=False is not replayed"):
            minireg.replay(est, X, y)
        return
    r = minireg.replay(est, X, y)
    coef = SGD[f"{cid}/coef_"]
    scale = max(float(np.max(np.abs(coef))), 1e-12)
    assert _rel(r.params["W1"][:, 0], coef, scale) < 1e-10
    assert _rel(r.params["b1"], SGD[f"{cid}/intercept_"], scale) < 1e-10
    assert r.replayed["n_iter_"] == int(SGD[f"{cid}/n_iter_"])
    assert r.replayed["t_"] == float(SGD[f"{cid}/t_"])


def test_replay_refuses_what_it_cannot_replay_before_training():
    X, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match="solver='lbfgs' is not replayed"):
        minireg.replay(MLPRegressor(solver="lbfgs", random_state=0), X, y)
    with pytest.raises(ValueError, match="integer random_state"):
        minireg.replay(MLPRegressor(random_state=None), X, y)
    with pytest.raises(ValueError, match="shuffle=True is not replayed"):
        minireg.replay(SGDRegressor(), X, y)
    fitted = SGDRegressor(shuffle=False, max_iter=2, tol=None).fit(X, y)
    with pytest.raises(ValueError, match="already fitted"):
        minireg.replay(fitted, X, y)
    with pytest.raises(TypeError, match="MLPRegressor or SGDRegressor"):
        minireg.replay(object(), X, y)


def test_the_readme_example_replays_and_verifies_its_fix(capsys):
    import runpy
    example = pathlib.Path(__file__).parents[1] / "examples" / "replay" / "sklearn_mlp.py"
    runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    assert "scikit-learn would stop after 35 of 500 epochs" in out
    assert "fit() itself: n_iter_=35" in out
    assert "reproduces the traced update bit for bit" in out
    assert "unscaled_features" in out and "verified: re-ran with it" in out


def test_arguments_that_would_change_the_run_are_refused_by_name():
    X, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match="epochs=: set the estimator's max_iter"):
        minireg.replay(MLPRegressor(random_state=0), X, y, epochs=5)
    with pytest.raises(ValueError, match="validation_split=: fit\\(\\)'s validation_split is not replayed"):
        minireg.replay(MLPRegressor(random_state=0), X, y, validation_split=0.2)
    from minireg.frameworks import _check_overrides
    with pytest.raises(ValueError, match="shuffle=: the framework's own shuffles.*seed=: the run starts"):
        _check_overrides("keras.src.models.sequential.Sequential", {"shuffle": True, "seed": 3, "epochs": 2})
    _check_overrides("torch.nn.modules.container.Sequential", {"epochs": 2, "batch_size": 4, "trace": True})


@pytest.mark.filterwarnings("ignore::minireg.DivergenceWarning")
def test_an_sgd_regressor_replay_past_scikit_learns_gradient_clip_warns_and_shows_eta0():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)) * [100.0, 5000.0, 1.0]
    y = X @ [1.0, 2.0, 3.0]
    with pytest.warns(RuntimeWarning, match="MAX_DLOSS"):
        r = minireg.replay(SGDRegressor(shuffle=False, max_iter=50, tol=None, eta0=0.1, learning_rate="constant"),
                           X, y)
    assert r.config["lr"] == 0.1


@pytest.mark.parametrize("estimator", ["mlp", "sgd"])
def test_a_replays_seconds_are_all_of_its_epochs(monkeypatch, estimator):
    """A replay runs one train() call an epoch: its seconds and compiling are those calls' added up,
    its setup the first call's (not the last epoch's alone)."""
    from minireg.frameworks import sklearn as replay_sklearn
    calls = []
    real = replay_sklearn.train

    def recording(*args, **kw):
        r = real(*args, **kw)
        calls.append((r.seconds, r.compile_seconds, r.setup_seconds))
        return r

    monkeypatch.setattr(replay_sklearn, "train", recording)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(60)
    est = (MLPRegressor(hidden_layer_sizes=(4,), max_iter=6, solver="sgd", random_state=0, tol=0.0)
           if estimator == "mlp" else SGDRegressor(max_iter=6, tol=None, shuffle=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = minireg.replay(est, X, y)
    assert len(calls) == r.replayed["n_iter_"] == 6
    assert r.seconds == pytest.approx(sum(c[0] for c in calls), rel=1e-12)
    assert r.compile_seconds == pytest.approx(sum(c[1] for c in calls), rel=1e-12, abs=1e-15)
    assert r.setup_seconds == calls[0][2] and r.seconds > calls[-1][0]
