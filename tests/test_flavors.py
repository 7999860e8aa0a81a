"""train(flavor="keras"|"sklearn"): each framework's update rules, defaults, argument names, loss,
L2 term and initialisation, by hand on the two-row problem of test_optimizers.py; explicit epoch
orders (order=); the diagnosis of a flavored run. The replays against the real packages are in
test_replay_sklearn.py and test_replay_frameworks.py."""
import json
import math
import pathlib

import numpy as np
import pytest

import minireg

X = np.array([[1.0], [2.0]])
Y = np.array([1.0, 3.0])
INIT = {"W1": np.array([[0.5]]), "b1": np.array([0.0])}
P0 = np.array([0.5, 0.0])
G0 = np.array([-4.5, -2.5])  # the MSE gradient at P0 (test_optimizers.py); ½-squared error: half of it
TOL = dict(rtol=1e-12, atol=1e-15)
FIX = pathlib.Path(__file__).parent / "fixtures"


def steps(k, **kw):
    r = minireg.train(X, Y, epochs=k, init=INIT, trace=True, progress=False, **kw)
    return [r.trace.step(i) for i in range(k)], r


def flat(named):
    return np.array([named["W1"].item(), named["b1"].item()])


def test_keras_adam_folds_the_bias_correction_into_the_step_size_and_adds_eps_to_the_raw_root():
    (s,), r = steps(1, optimizer="adam", flavor="keras", learning_rate=0.1, epsilon=0.5)
    assert r.config["lr"] == 0.1 and r.config["eps"] == 0.5 and r.config["flavor"] == "keras"
    m, v = 0.1 * G0, 0.001 * G0 * G0
    want = P0 - (0.1 * math.sqrt(0.001) / 0.1 * m) / (np.sqrt(v) + 0.5)
    np.testing.assert_allclose(flat(s["params"]) + flat(s["update"]), want, **TOL)
    torch_form = P0 - (0.1 / 0.1) * m / (np.sqrt(v) / math.sqrt(0.001) + 0.5)
    assert np.max(np.abs(want - torch_form)) > 1e-3


def test_keras_rmsprop_puts_eps_inside_the_root_with_rho_09_by_default():
    (s,), r = steps(1, optimizer="rmsprop", flavor="keras", epsilon=0.25)
    assert r.config["alpha"] == 0.9 and r.config["lr"] == 0.001
    v = 0.1 * G0 * G0
    np.testing.assert_allclose(flat(s["update"]), -(G0 * 0.001) / np.sqrt(v + 0.25), **TOL)
    np.testing.assert_allclose(flat(s["state"]["square_avg"]), v, **TOL)


def test_sklearn_sgd_keeps_the_lr_scaled_velocity_with_nesterov_by_default():
    (s0, s1), r = steps(2, optimizer="sgd", flavor="sklearn", learning_rate_init=0.1, alpha=0.0)
    assert r.config["momentum"] == 0.9 and r.config["nesterov"] and r.config["loss"] == "squared_error"
    g0 = G0 / 2  # ½-squared error
    v0 = -0.1 * g0
    np.testing.assert_allclose(flat(s0["state"]["momentum_buffer"]), v0, **TOL)
    np.testing.assert_allclose(flat(s0["update"]), 0.9 * v0 - 0.1 * g0, **TOL)
    g1 = flat(s1["grad"])
    np.testing.assert_allclose(flat(s1["update"]), 0.9 * (0.9 * v0 - 0.1 * g1) - 0.1 * g1, **TOL)


def test_sklearn_l2_is_alpha_over_the_batch_on_the_weights_only_and_counts_in_the_loss():
    (s,), r = steps(1, optimizer="sgd", flavor="sklearn", momentum=0.0, lr=0.1, alpha=0.3)
    assert r.config["l2"] == 0.3
    want = G0 / 2 + np.array([0.3 / 2 * 0.5, 0.0])  # alpha·W/B on w, nothing on b
    np.testing.assert_allclose(flat(s["grad"]), want, **TOL)
    assert s["loss"] == pytest.approx((0.25 + 4) / 2 / 2 + 0.5 * 0.3 / 2 * 0.25, rel=1e-14)


def test_sklearn_init_draws_mlp_regressors_weights():
    case = next(c for c in json.loads((FIX / "replay_cases.json").read_text())["cases"] if c["id"] == "mlp_02")
    F = np.load(FIX / "replay_sklearn_mlp.npz")
    p = case["full_params"]
    r = minireg.train(F["mlp_02/X"], F["mlp_02/y"], flavor="sklearn", model="mlp",
                      hidden=tuple(p["hidden_layer_sizes"]), activation="sigmoid", optimizer="adam", epochs=1,
                      seed=p["random_state"], trace=True)
    first = r.trace.step(0)["params"]
    for k in range(2):
        np.testing.assert_array_equal(first[f"W{k + 1}"], F[f"mlp_02/init/coefs_{k}"])
        np.testing.assert_array_equal(first[f"b{k + 1}"], F[f"mlp_02/init/intercepts_{k}"])


def test_flavor_errors_name_the_argument():
    with pytest.raises(ValueError, match="flavor='sklearn' has no optimizer='rmsprop'"):
        minireg.train(X, Y, flavor="sklearn", optimizer="rmsprop")
    with pytest.raises(ValueError, match="dampening and weight_decay are torch.optim.SGD's"):
        minireg.train(X, Y, flavor="keras", optimizer="sgd", dampening=0.5)
    with pytest.raises(ValueError, match="flavor must be one of|flavor="):
        minireg.train(X, Y, flavor="jax")
    with pytest.raises(ValueError, match="flavor='keras' has no optimizer='adagrad'"):
        minireg.train(X, Y, flavor="keras", optimizer="adagrad")


def test_a_given_order_is_each_epochs_row_order():
    rng = np.random.default_rng(0)
    Xb, yb = rng.normal(size=(40, 3)), rng.normal(size=40)
    shuffled = minireg.train(Xb, yb, batch_size=8, epochs=3, seed=4, trace=True)
    # the orders the seed's stream draws (train's shuffle stream is the second child of the seed)
    stream = np.random.default_rng(np.random.SeedSequence(4).spawn(3)[1])
    orders = np.array([stream.permutation(40) for _ in range(3)])
    given = minireg.train(Xb, yb, batch_size=8, epochs=3, seed=4, order=orders, trace=True)
    np.testing.assert_array_equal(given.theta, shuffled.theta)
    reversed_ = minireg.train(Xb, yb, batch_size=8, epochs=3, seed=4, order=orders[:, ::-1], trace=True)
    assert not np.array_equal(reversed_.theta, shuffled.theta)
    with pytest.raises(ValueError, match="not a permutation"):
        minireg.train(Xb, yb, batch_size=8, epochs=1, order=np.zeros((1, 40), int))
    with pytest.raises(ValueError, match=r"shape \(2, 40\)"):
        minireg.train(Xb, yb, batch_size=8, epochs=2, order=orders[:1])


def test_the_stability_bound_of_the_half_squared_loss_is_twice_the_mse_bound():
    rng = np.random.default_rng(1)
    Xb = rng.normal(size=(200, 3))
    yb = Xb @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200)
    mse = minireg.stability_bound(Xb, yb, loss="mse")
    half = minireg.stability_bound(Xb, yb, loss="squared_error")
    assert half.lr_max == pytest.approx(2 * mse.lr_max, rel=1e-12)
    r = minireg.train(Xb, yb, flavor="sklearn", optimizer="sgd", momentum=0.0, lr=3 * half.lr_max, alpha=0.0,
                      epochs=30, trace=True)
    found = {f.code: f for f in r.diagnose(verify=False)}
    assert "lr_too_high" in found
    assert found["lr_too_high"].evidence["bound"] == pytest.approx(half.lr_max, rel=1e-6)


@pytest.mark.parametrize("kw", [
    dict(optimizer="sgd", flavor="sklearn"), dict(optimizer="sgd", flavor="keras", momentum=0.9, nesterov=True),
    dict(optimizer="rmsprop", flavor="keras"), dict(optimizer="rmsprop", flavor="keras", centered=True, momentum=0.5),
    dict(optimizer="adam", flavor="sklearn", alpha=0.01), dict(optimizer="adamw", flavor="keras", amsgrad=True)],
    ids=lambda kw: f"{kw['flavor']}-{kw['optimizer']}-{len(kw)}")
def test_explain_writes_out_each_flavors_rule_bit_for_bit(kw):
    rng = np.random.default_rng(0)
    Xb = rng.normal(size=(30, 2))
    r = minireg.train(Xb, Xb @ [1.0, 2.0], epochs=3, batch_size=8, trace=True, model="mlp", hidden=(4,), **kw)
    e = r.trace.explain(5)
    assert e.reproduced and e.max_diff == 0, str(e)
    text = str(e)
    assert ("velocity" in text) if kw["optimizer"] == "sgd" else True
    assert ("inside the root" in text or "centered" in text) if kw["optimizer"] == "rmsprop" else True
    assert ("lr_t = lr·√(1 − β2ᵗ)/(1 − β1ᵗ)" in text) if kw["optimizer"].startswith("adam") else True


def test_lr_none_is_the_flavors_default():
    assert minireg.train(X, Y, epochs=1, lr=None).config["lr"] == 0.01
    assert minireg.train(X, Y, epochs=1, lr=None, optimizer="rmsprop", flavor="keras").config["lr"] == 0.001
    assert minireg.train(X, Y, epochs=1, optimizer="adam", flavor="sklearn").config["lr"] == 0.001
