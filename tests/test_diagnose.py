"""Diagnosis: every finding code fires on its constructed case and stays silent on healthy runs;
the stability bound is exact where theory allows; plots render without a display."""
import math
import warnings

import numpy as np
import pytest
from conftest import linear_data

import minireg
from minireg import datasets
from minireg.diagnose import CODES, Finding
from minireg.diagnose._model import Model


@pytest.mark.parametrize("name", list(datasets.CASES))
def test_each_seed_case_is_diagnosed_and_its_fix_clears_it(name):
    case = datasets.CASES[name]
    bad, findings, good = datasets.run_case(name, verbose=False)
    codes = {f.code: f for f in findings}
    assert case.code in codes, [str(f) for f in findings]
    f = codes[case.code]
    assert f.severity in ("warning", "error") and f.message and f.evidence["used"]
    assert f.fix or f.code == "overfitting"
    left = [str(g) for g in good.diagnose() if g.severity != "info"]
    assert left == []


def test_every_code_has_a_constructed_case():
    fired = set()
    for name in datasets.CASES:
        fired |= {f.code for f in datasets.run_case(name, verbose=False)[1]}
    assert fired == set(CODES)


def _healthy():
    X3, y3 = linear_data(200, 3, seed=5, w=[1.0, -2.0, 0.5], intercept=0.3)
    Xs, ys = datasets.sine(n=300)
    return [
        ("linear sgd minibatch", *datasets.linear_1d(), dict(optimizer="sgd", lr=0.3, batch_size=32, epochs=50)),
        ("linear adam", X3, y3, dict(optimizer="adam", lr=0.05, epochs=300)),
        ("linear rmsprop", X3, y3, dict(optimizer="rmsprop", lr=0.01, epochs=300)),
        ("linear adamw minibatch", X3, y3, dict(optimizer="adamw", lr=0.01, epochs=100, batch_size=16)),
        ("mlp tanh adam", Xs, ys, dict(model="mlp", hidden=(32, 32), activation="tanh", optimizer="adam", lr=0.01,
                                       epochs=300, batch_size=32)),
        ("mlp relu sgd momentum", Xs, ys, dict(model="mlp", hidden=(32,), optimizer="sgd", lr=0.05, momentum=0.9,
                                               epochs=300, batch_size=32)),
        ("mlp relu rmsprop", Xs, ys, dict(model="mlp", hidden=(32, 32), optimizer="rmsprop", lr=0.003, epochs=300,
                                          batch_size=32)),
        ("mlp sigmoid adam", Xs, ys, dict(model="mlp", hidden=(16,), activation="sigmoid", optimizer="adam",
                                          lr=0.03, epochs=400, batch_size=32)),
        ("mlp relu adam mae validation", Xs, ys, dict(model="mlp", hidden=(32,), optimizer="adam", lr=0.01,
                                                      epochs=300, batch_size=32, loss="mae", validation=0.2)),
    ]


@pytest.mark.parametrize("name,X,y,kw", _healthy(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("trace", [True, False])
def test_healthy_runs_get_no_warning_or_error(name, X, y, kw, trace):
    r = minireg.train(X, y, trace=trace, **kw)
    alarms = [str(f) for f in r.diagnose() if f.severity != "info"]
    assert alarms == []


def test_linear_mse_bound_is_exact_and_decides_divergence():
    X, y = datasets.linear_1d()
    b = minireg.stability_bound(X, y)
    Xt = np.column_stack([X, np.ones(len(X))])
    lam = np.linalg.eigvalsh(2 / len(X) * Xt.T @ Xt)[-1]
    assert b.lambda_max == pytest.approx(lam, rel=1e-12) and b.lr_max == pytest.approx(2 / lam, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        below = minireg.train(X, y, lr=0.95 * b.lr_max, epochs=3000)
        above = minireg.train(X, y, lr=1.05 * b.lr_max, epochs=20000)
    assert not below.diverged and below.history["loss"][-1] < 0.011
    assert above.diverged
    m = minireg.stability_bound(X, y, momentum=0.9)
    assert m.lr_max == pytest.approx(3.8 / lam, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        assert not minireg.train(X, y, lr=0.95 * m.lr_max, momentum=0.9, epochs=5000).diverged
        assert minireg.train(X, y, lr=1.05 * m.lr_max, momentum=0.9, epochs=20000).diverged


def test_bound_reports_conditioning_minibatches_and_standardizing():
    X, y = datasets.unscaled_features()
    b = minireg.stability_bound(X, y, batch_size=2)
    assert b.kappa > 1e8 and b.kappa_standardized < 100
    assert b.steps_to_1000x > 1e8 and b.steps_to_1000x_standardized < 200
    assert b.lr_max_standardized > 1e5 * b.lr_max
    assert b.sharpest_batch_lr <= b.lr_max * (1 + 1e-12)
    assert "κ=" in repr(b)


def test_mlp_curvature_by_power_iteration_matches_the_dense_hessian():
    X, y = datasets.sine(n=40)
    lay = minireg.Layout((1, 3, 1))
    theta = np.random.default_rng(0).uniform(-1, 1, lay.size)
    m = Model(lay, "tanh", "mse", 1.0)
    H = np.column_stack([m.hvp(theta, e, X, y) for e in np.eye(lay.size)])
    lam = np.abs(np.linalg.eigvalsh((H + H.T) / 2)).max()
    b = minireg.stability_bound(X, y, model="mlp", hidden=(3,), activation="tanh", params=theta)
    assert b.lambda_max == pytest.approx(lam, rel=1e-3)


def test_adam_bound_needs_the_optimizer_state():
    X, y = datasets.linear_1d()
    assert math.isnan(minireg.stability_bound(X, y, optimizer="adam").lr_max)
    r = minireg.train(X, y, optimizer="adam", lr=0.01, epochs=5, trace=True)
    b = minireg.stability_bound(X, y, optimizer="adam", params=r.trace.params[-1],
                                exp_avg_sq=r.trace.state["exp_avg_sq"][-1], step=5)
    assert np.isfinite(b.lr_max) and "preconditioned" in b.kind


def test_check_data_before_training():
    codes = lambda X, y: {f.code for f in minireg.check_data(X, y)}  # noqa: E731
    assert codes(*datasets.unscaled_features()) == {"unscaled_features"}
    assert "outliers" in codes(*datasets.line_with_outlier())
    assert codes(*datasets.sorted_line()) == {"unshuffled_batches"}
    assert codes(*datasets.linear_1d()) == set()


def test_lr_range_test_suggests_a_stable_lr_and_stops_on_divergence():
    X, y = datasets.linear_1d()
    res = minireg.lr_range_test(X, y, lr_min=1e-5, lr_max=100, num_steps=120)
    assert res.stopped_at < 120 and res.lrs[-1] < 100
    assert 1e-3 < res.suggestion < res.bound
    assert res.bound == pytest.approx(minireg.stability_bound(X, y).lr_max)
    with pytest.raises(ValueError, match="lr_min"):
        minireg.lr_range_test(X, y, lr_min=1.0, lr_max=0.1)


def test_findings_print_sort_and_round_trip():
    f = Finding("lr_too_high", "error", "lr=10 exceeds 2/λmax=0.76.", 3, {"bound": np.float64(0.76)}, {"lr": 0.38})
    assert str(f) == "[error] lr_too_high at step 3: lr=10 exceeds 2/λmax=0.76.\n  fix: train(..., lr=0.38)"
    g = Finding("outliers", "warning", "x.", None, {}, {"loss": "huber", "delta": np.float64(0.08999999)})
    assert str(g).endswith("fix: train(..., loss='huber', delta=0.09)") and type(g.fix["delta"]) is float
    assert Finding.from_dict(f.to_dict()) == Finding("lr_too_high", "error", "lr=10 exceeds 2/λmax=0.76.", 3,
                                                     {"bound": 0.76}, {"lr": 0.38})
    with pytest.raises(ValueError, match="unknown finding code"):
        Finding("lr_high", "error", "x")
    bad, findings, _ = datasets.run_case("high_lr", verbose=False)
    assert [f.severity for f in findings] == sorted((f.severity for f in findings),
                                                     key=["error", "warning", "info"].index)


def test_diagnosis_without_the_data_uses_the_history(tmp_path):
    X, y = datasets.linear_1d()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        r = minireg.train(X, y, lr=10, batch_size=32, epochs=50, trace=True)
    r.save(tmp_path / "run.npz")
    loaded = minireg.load(tmp_path / "run.npz")
    codes = {f.code for f in loaded.diagnose()}
    assert {"nonfinite", "lr_too_high"} <= codes


def test_explain_writes_one_step_from_the_trace(capsys):
    X, y = datasets.linear_1d()
    r = minireg.train(X, y, optimizer="sgd", momentum=0.9, lr=0.1, batch_size=32, epochs=3, trace=True)
    text = str(r.trace.explain(5))
    assert capsys.readouterr().out == ""  # it returns the explanation; it prints nothing
    s = r.trace.step(5)
    for needle in ("step 5 (epoch 1, batch 2 of 4, 32 rows, shuffled)", "optimizer's t = step + 1 = 6", "residuals",
                   "dL/dp", "buf new",
                   f"{s['loss']:.6g}", "reproduces the traced update bit for bit"):
        assert needle in text
    # the printed rows are the batch the kernel used: their loss is the traced loss
    rows = r.trace.context["epoch_order"](1)[32:64]
    p = r.trace.step(5)["params"]
    pred = X[rows, 0] * p["W1"][0, 0] + p["b1"][0]
    assert np.mean((pred - y[rows]) ** 2) == pytest.approx(s["loss"], rel=1e-12)


def test_plots_render_to_png(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    X, y = datasets.linear_1d()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        r = minireg.train(X, y, lr=2.0, epochs=30, trace=True)
    figs = {"result": r.plot(), "path": r.plot_path(),
            "untraced": minireg.train(X, y, epochs=5).plot(),
            "lr_range": minireg.lr_range_test(X, y, num_steps=50).plot()}
    for name, fig in figs.items():
        out = tmp_path / f"{name}.png"
        fig.savefig(out)
        assert out.stat().st_size > 10_000, name
    with pytest.raises(ValueError, match="exactly two parameters"):
        minireg.train(*datasets.sine(), model="mlp", epochs=2, trace=True).plot_path()


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
    ({"model": "mlp", "activation": "rleu"}, ValueError, "Did you mean 'relu'"),
    ({"lr": "x"}, TypeError, "lr must be a real number"),
    ({"params": np.zeros(5)}, ValueError, "params must be a flat vector of the model's 2 parameters"),
    ({"delta": -1}, ValueError, "delta must be"),
    ({"momentum": -1}, ValueError, "momentum must be"),
    ({"model": "mlp", "hidden": (2**40,)}, ValueError, "memory"),
    ({"optimizer": "adam", "exp_avg_sq": -np.ones(2), "step": 1}, ValueError, "exp_avg_sq must be >= 0"),
])
def test_stability_bound_rejects_bad_arguments(kwargs, exc, match):
    X, y = datasets.linear_1d()
    with pytest.raises(exc, match=match):
        minireg.stability_bound(X, y, **kwargs)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"lr_min": "a"}, TypeError, "lr_min must be a real number"),
    ({"lr_max": np.inf}, ValueError, "lr_max must be a finite number"),
    ({"num_steps": 3}, ValueError, "num_steps must be an integer >= 5"),
    ({"diverge_factor": 0.5}, ValueError, "diverge_factor must be"),
    ({"batch_size": -1}, ValueError, "batch_size must be an integer >= 1"),
])
def test_lr_range_test_rejects_bad_arguments(kwargs, exc, match):
    X, y = datasets.linear_1d()
    with pytest.raises(exc, match=match):
        minireg.lr_range_test(X, y, **kwargs)


def test_huge_features_give_a_finding_not_an_overflow():
    X, y = datasets.linear_1d()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        b = minireg.stability_bound(X * 1e200, y)
        found = minireg.check_data(X * 1e200, y)
    assert b.lambda_max == math.inf and b.lr_max == 0.0
    assert [f.code for f in found] == ["unscaled_features"]


def test_a_loss_that_is_still_exploding_is_not_called_a_plateau():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(1000, 2000, 200), rng.uniform(0, 5, 200)])
    y = 0.003 * X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.1, 200)
    r = minireg.train(X, y, optimizer="sgd", lr=1e-4, epochs=50, trace=True)
    assert not r.diverged and r.history["loss"][-1] > 1e100
    codes = [f.code for f in r.diagnose()]
    assert codes[0] == "lr_too_high" and "unscaled_features" in codes
    assert "plateau" not in codes and "underfitting" not in codes
