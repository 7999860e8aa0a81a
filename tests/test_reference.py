"""minireg.reference, the plain NumPy twin of the compiled loop: against PyTorch's stored
trajectories, and minireg.train against it, step by step, on the whole grid of optimizers, losses,
models, batchings and controls.

float64: 1e-12 (only the order of the sums inside the matrix products differs, about 1e-14 here).
float32: loosely (1e-4 relative), since two float32 runs drift apart by their roundings.
"""
import json
import pathlib
import warnings

import numpy as np
import pytest
from conftest import linear_data, nonlinear_data

import minireg
from minireg import reference as R
from minireg.controls import epoch_lrs

TOL = dict(rtol=1e-12, atol=1e-12)

# every optimizer variant: (optimizer, lr, hyperparameters)
VARIANTS = [
    ("sgd", 0.05, {}),
    ("sgd", 0.05, {"momentum": 0.9, "dampening": 0.3}),
    ("sgd", 0.05, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    ("rmsprop", 0.01, {}),
    ("rmsprop", 0.01, {"alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1}),
    ("rmsprop", 0.01, {"centered": True}),
    ("rmsprop", 0.01, {"centered": True, "momentum": 0.5, "weight_decay": 0.05}),
    ("adam", 0.02, {}),
    ("adam", 0.02, {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.05}),
    ("adam", 0.02, {"amsgrad": True}),
    ("adamw", 0.02, {}),
    ("adamw", 0.02, {"weight_decay": 0.1, "amsgrad": True}),
    ("adagrad", 0.1, {}),
    ("adagrad", 0.1, {"lr_decay": 0.01, "weight_decay": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-6}),
]
MODELS = [dict(model="linear")] + [dict(model="mlp", hidden=(5, 4), activation=a)
                                   for a in ("relu", "tanh", "sigmoid", "identity")]


def _vid(v):
    return v[0] + "(" + ",".join(f"{k}={x}" for k, x in v[2].items()) + ")"


def _mid(m):
    return m.get("activation", "linear")


def _grid(variants):
    return [pytest.param(v, id=_vid(v)) for v in variants]


def _both(X, y, **kw):
    """minireg.train and train_reference on the same arguments, both traced."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither run may diverge
        r = minireg.train(X, y, trace=True, progress=False, **kw)
        ref = R.train_reference(X, y, trace=True, history=True, **kw)
    return r, ref


def assert_same_run(r, ref, tol=TOL, what=""):
    tr = r.trace
    assert r.n_steps == ref.n_steps, what
    np.testing.assert_allclose(tr.loss, ref.losses, **tol, err_msg=f"{what} loss")
    np.testing.assert_allclose(tr.lr, ref.lrs.astype(tr.lr.dtype), rtol=1e-15, atol=0, err_msg=f"{what} lr")
    np.testing.assert_allclose(tr.params, ref.params_before, **tol, err_msg=f"{what} params")
    np.testing.assert_allclose(tr.grad, ref.grad, **tol, err_msg=f"{what} grad")
    np.testing.assert_allclose(tr.update, ref.update, **tol, err_msg=f"{what} update")
    assert list(tr.state) == list(ref.state), what
    for name in ref.state:
        np.testing.assert_allclose(tr.state[name], ref.state[name], **tol, err_msg=f"{what} {name}")
    np.testing.assert_allclose(r.history["loss"], ref.history, **tol, err_msg=f"{what} history")
    np.testing.assert_allclose(r.theta, ref.params, **tol, err_msg=f"{what} final")


# --------------------------------------------------------------------------------------------------
# the reference against PyTorch (the stored trajectories of tests/test_parity_torch.py)

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "torch_parity.npz"
_torch = np.load(FIXTURE)
TORCH_CASES = json.loads(str(_torch["cases"]))


def _torch_case_id(c):
    hp = ",".join(f"{k}={v}" for k, v in c["hparams"].items())
    ctl = ",".join(f"{k}={v}" for k, v in c.get("controls", {}).items())
    return f"{c['id']}-{c['optimizer']}({hp})-{c['loss']}-{c['activation'] or 'linear'}-bs{c['batch_size']}-{ctl}"


@pytest.mark.parametrize("case", TORCH_CASES, ids=_torch_case_id)
def test_reference_matches_pytorch_step_by_step(case):
    want = {k.split("/", 1)[1]: _torch[k] for k in _torch.files if k.startswith(f"{case['id']}/")}
    init = {k.split("/")[-1]: _torch[k] for k in _torch.files if k.startswith(f"init/{case['model']}/")}
    kw = dict(case["hparams"])
    ctl = dict(case.get("controls", {}))
    schedule = ctl.pop("schedule", None)
    sched = {k: ctl.pop(k) for k in ("step_size", "gamma", "T_max", "power_t", "factor", "patience") if k in ctl}
    if schedule == "invscaling":
        kw["power_t"] = sched["power_t"]
    elif schedule == "plateau":  # decided by the epoch losses as the run goes: not in the reference
        kw["step_lrs"] = want["lr"]
    elif schedule is not None:
        kw["epoch_lrs"] = epoch_lrs(schedule, kw["lr"], case["epochs"], sched)
    run = R.train_reference(
        _torch["X"], _torch["y"], model=case["model"], hidden=tuple(case["hidden"]),
        activation=case["activation"] or "relu", loss=case["loss"], delta=case["delta"],
        optimizer=case["optimizer"], epochs=case["epochs"], batch_size=case["batch_size"], shuffle=False,
        init=init, trace=True, history=True, **kw, **ctl)
    atol = dict(rtol=0, atol=1e-12)
    assert run.n_steps == case["steps"]
    np.testing.assert_allclose(run.lrs, want["lr"], rtol=1e-13, atol=0)
    np.testing.assert_array_equal(run.clipped, want["clipped"])
    np.testing.assert_allclose(run.params_before, want["params"], **atol)
    np.testing.assert_allclose(run.losses, want["loss"], **atol)
    np.testing.assert_allclose(run.grad, want["grad"], **atol)
    if "controls" not in case:
        for name, rows in run.state.items():
            np.testing.assert_allclose(rows, want[f"state_{name}"], **atol, err_msg=name)
    np.testing.assert_allclose(run.history, want["epoch_loss"], **atol)
    np.testing.assert_allclose(run.params, want["final"], **atol)


# --------------------------------------------------------------------------------------------------
# minireg.train against the reference


@pytest.mark.parametrize("model", MODELS, ids=_mid)
@pytest.mark.parametrize("variant", _grid(VARIANTS))
def test_train_matches_reference_float64(variant, model):
    """Every optimizer variant × model × loss × (full batch, shuffled minibatches), 4 epochs."""
    X, y = nonlinear_data(n=19, d=3, seed=1)
    optimizer, lr, hp = variant
    for loss in ("mse", "huber", "mae"):
        for batch_size in (None, 5):
            kw = dict(optimizer=optimizer, lr=lr, loss=loss, delta=0.5, batch_size=batch_size, epochs=4,
                      seed=3, **model, **hp)
            assert_same_run(*_both(X, y, **kw), what=f"{loss} bs={batch_size}")


@pytest.mark.parametrize("variant", _grid(VARIANTS))
def test_train_matches_reference_with_clipping(variant):
    """clip_grad_norm, clip_grad_value and both, set so that some steps clip and some do not."""
    X, y = nonlinear_data(n=19, d=3, seed=2)
    optimizer, lr, hp = variant
    for clip in (dict(clip_grad_norm=0.8), dict(clip_grad_value=0.3), dict(clip_grad_norm=1.5, clip_grad_value=0.6)):
        kw = dict(optimizer=optimizer, lr=lr, model="mlp", hidden=(6,), activation="tanh", batch_size=4,
                  epochs=4, **clip, **hp)
        r, ref = _both(X, y, **kw)
        assert 0 < ref.clipped.sum() < ref.n_steps, clip  # the comparison covers both cases
        np.testing.assert_array_equal(r.trace.clipped, ref.clipped)
        assert_same_run(r, ref, what=str(clip))


@pytest.mark.parametrize("variant", _grid(VARIANTS))
def test_train_matches_reference_with_l1(variant):
    X, y = linear_data(n=30, d=4, seed=3, w=[1.0, 0.0, -2.0, 0.0], intercept=0.5)
    optimizer, lr, hp = variant
    for loss in ("mse", "huber"):
        kw = dict(optimizer=optimizer, lr=lr, l1=0.05, loss=loss, batch_size=8, epochs=5, **hp)
        assert_same_run(*_both(X, y, **kw), what=loss)


@pytest.mark.parametrize("variant", _grid([VARIANTS[1], VARIANTS[6], VARIANTS[9], VARIANTS[11], VARIANTS[13]]))
def test_train_matches_reference_with_learning_rate_schedules(variant):
    """Per-epoch schedules (as epoch_lrs), sklearn's per-step invscaling (power_t) and step_lrs."""
    X, y = nonlinear_data(n=17, d=2, seed=4)
    optimizer, lr, hp = variant
    base = dict(optimizer=optimizer, lr=lr, model="mlp", hidden=(4,), activation="sigmoid", batch_size=5, epochs=6,
                **hp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for schedule, p in (("step", {"step_size": 2, "gamma": 0.5}), ("cosine", {"T_max": 6})):
            r = minireg.train(X, y, schedule=schedule, **p, trace=True, progress=False, **base)
            ref = R.train_reference(X, y, epoch_lrs=epoch_lrs(schedule, lr, 6, p), trace=True, history=True, **base)
            assert_same_run(r, ref, what=schedule)
        r = minireg.train(X, y, schedule="invscaling", power_t=0.3, trace=True, progress=False, **base)
        ref = R.train_reference(X, y, power_t=0.3, trace=True, history=True, **base)
        assert_same_run(r, ref, what="invscaling")
        lrs = lr * np.random.default_rng(0).uniform(0.2, 1.5, 24)
        r = minireg.train(X, y, step_lrs=lrs, trace=True, progress=False, **base)
        ref = R.train_reference(X, y, step_lrs=lrs, trace=True, history=True, **base)
        assert_same_run(r, ref, what="step_lrs")


def test_train_matches_reference_unshuffled_and_with_given_or_keras_init():
    X, y = nonlinear_data(n=21, d=3, seed=5)
    base = dict(optimizer="adam", lr=0.01, model="mlp", hidden=(5, 3), activation="relu", batch_size=4, epochs=3)
    rng = np.random.default_rng(6)
    init = {"W1": rng.normal(size=(3, 5)), "b1": rng.normal(size=5), "W2": rng.normal(size=(5, 3)),
            "b2": rng.normal(size=3), "W3": rng.normal(size=(3, 1)), "b3": rng.normal(size=1)}
    for extra in (dict(shuffle=False), dict(init=init), dict(init="keras", seed=9)):
        r, ref = _both(X, y, **base, **extra)
        assert_same_run(r, ref, what=str(list(extra)))
    np.testing.assert_array_equal(_both(X, y, **base, init=init)[1].params_before[0],
                                  np.concatenate([a.ravel() for a in init.values()]))


@pytest.mark.parametrize("variant", _grid([VARIANTS[0], VARIANTS[2], VARIANTS[6], VARIANTS[8], VARIANTS[11],
                                           VARIANTS[13]]))
def test_train_matches_reference_float32_loosely(variant):
    """float32 runs stay float32 in both; they agree to float32's rounding, not bit for bit."""
    X, y = nonlinear_data(n=19, d=3, seed=7)
    optimizer, lr, hp = variant
    for model in (dict(model="linear", l1=0.01), dict(model="mlp", hidden=(5,), activation="tanh")):
        kw = dict(optimizer=optimizer, lr=lr, loss="huber", delta=0.5, batch_size=5, epochs=3, dtype="float32",
                  clip_grad_norm=1.0, **model, **hp)
        r, ref = _both(X, y, **kw)
        assert ref.params.dtype == ref.grad.dtype == r.theta.dtype == np.float32
        assert_same_run(r, ref, tol=dict(rtol=1e-4, atol=2e-5), what=str(model))


def test_reference_stops_at_the_first_nonfinite_step_like_train():
    X, y = linear_data(n=40, d=2, seed=8)
    with pytest.warns(minireg.DivergenceWarning):
        r = minireg.train(X, y, optimizer="sgd", lr=50.0, batch_size=8, epochs=50, trace=True, progress=False)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = R.train_reference(X, y, optimizer="sgd", lr=50.0, batch_size=8, epochs=50)
    assert r.diverged_at == ref.diverged_at and ref.n_steps == ref.diverged_at + 1


def test_reference_refuses_what_it_does_not_know():
    X, y = linear_data()
    with pytest.raises(TypeError, match="beta1"):
        R.train_reference(X, y, optimizer="sgd", beta1=0.9)
    with pytest.raises(ValueError, match="optimizer"):
        R.train_reference(X, y, optimizer="lbfgs")
    with pytest.raises(ValueError, match="l1"):
        R.train_reference(X, y, model="mlp", l1=0.1)
