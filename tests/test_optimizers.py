"""One or two steps of every optimizer and variant, computed by hand with small explicit numbers (as
scikit-learn's sklearn/neural_network/tests/test_stochastic_optimizers.py does), against
minireg.train (``r.trace.step(i)``) and against minireg.reference.

The problem: the linear model y = w·x + b on two rows, x = (1, 2), y = (1, 3), from w = 0.5, b = 0,
full batch, MSE. The predictions are (0.5, 1), the residuals r = (−0.5, −2), dL/dpred = 2r/2 = r, so
the first gradient is g = (gw, gb) = (1·−0.5 + 2·−2, −0.5 − 2) = (−4.5, −2.5), and the loss is
(0.25 + 4)/2 = 2.125. Each test's numbers are chosen so that the usual mistakes (a dampened first
momentum buffer, eps inside the square root, Keras' eps placement, AdamW's shrink after the
moments, AMSGrad's max over the bias-corrected v, ...) give a visibly different answer: the
``wrong`` values in the tests are those mistakes' results, asserted to differ.
"""
import math

import numpy as np
import pytest

import minireg
from minireg import reference as R

X = np.array([[1.0], [2.0]])
Y = np.array([1.0, 3.0])
INIT = {"W1": np.array([[0.5]]), "b1": np.array([0.0])}
P0 = np.array([0.5, 0.0])
G0 = np.array([-4.5, -2.5])
TOL = dict(rtol=1e-12, atol=1e-15)


def _flat(named):
    return np.array([named["W1"].item(), named["b1"].item()])


@pytest.fixture(params=["train", "reference"])
def engine(request):
    return request.param


def run(engine, optimizer, lr, steps=1, **kw):
    """The first ``steps`` steps, each as {loss, params, grad, update, state{name}} with flat
    (w, b) vectors: from minireg.train's trace or from minireg.reference."""
    kw = dict(optimizer=optimizer, lr=lr, epochs=steps, init=INIT, **kw)
    if engine == "train":
        r = minireg.train(X, Y, trace=True, progress=False, **kw)
        out = []
        for i in range(steps):
            s = r.trace.step(i)
            out.append(dict(loss=s["loss"], params=_flat(s["params"]), grad=_flat(s["grad"]),
                             update=_flat(s["update"]), state={k: _flat(v) for k, v in s["state"].items()}))
        return out
    ref = R.train_reference(X, Y, trace=True, **kw)
    return [dict(loss=ref.losses[i], params=ref.params_before[i], grad=ref.grad[i], update=ref.update[i],
                 state={k: v[i] for k, v in ref.state.items()}) for i in range(steps)]


def close(got, want):
    np.testing.assert_allclose(got, want, **TOL)


def differs(got, wrong):
    assert np.max(np.abs(np.asarray(got) - np.asarray(wrong))) > 1e-4, (got, wrong)


# --------------------------------------------------------------------------------------------------
# the gradient every test starts from


def test_first_gradient_and_loss(engine):
    s = run(engine, "sgd", 0.1)[0]
    close(s["loss"], 2.125)
    close(s["params"], P0)
    close(s["grad"], G0)


@pytest.mark.parametrize("loss, delta, want_loss, want_grad", [
    # huber: l = ½r² (|r| < δ) or δ(|r| − ½δ): (0.125 + 1.5)/2; dL/dpred = clip(r, −1, 1)/2 = (−0.25, −0.5)
    ("huber", 1.0, (0.125 + 1.5) / 2, [1 * -0.25 + 2 * -0.5, -0.25 - 0.5]),
    # mae: l = |r|: (0.5 + 2)/2; dL/dpred = sign(r)/2 = (−0.5, −0.5)
    ("mae", 1.0, 1.25, [1 * -0.5 + 2 * -0.5, -1.0]),
])
def test_first_gradient_of_huber_and_mae(engine, loss, delta, want_loss, want_grad):
    s = run(engine, "sgd", 0.1, loss=loss, delta=delta)[0]
    close(s["loss"], want_loss)
    close(s["grad"], want_grad)


# --------------------------------------------------------------------------------------------------
# SGD


def test_sgd_plain(engine):
    s = run(engine, "sgd", 0.1)[0]
    close(s["update"], [0.45, 0.25])             # −lr·g
    assert s["state"] == {}


def test_sgd_coupled_weight_decay(engine):
    s = run(engine, "sgd", 0.1, weight_decay=0.1)[0]
    close(s["grad"], [-4.5 + 0.1 * 0.5, -2.5])   # g + wd·p, recorded as the optimizer saw it
    close(s["update"], [0.445, 0.25])


def test_sgd_first_momentum_buffer_is_the_gradient_without_dampening(engine):
    s0, s1 = run(engine, "sgd", 0.1, steps=2, momentum=0.9, dampening=0.5)
    close(s0["state"]["momentum_buffer"], G0)            # torch: buf = clone(g) on the first step
    differs(s0["state"]["momentum_buffer"], 0.5 * G0)    # not (1 − τ)·g
    close(s0["update"], [0.45, 0.25])
    # the second step: p1 = (0.95, 0.25), predictions (1.2, 2.15), r = (0.2, −0.85)
    close(s1["grad"], [0.2 + 2 * -0.85, 0.2 - 0.85])
    buf1 = 0.9 * G0 + 0.5 * np.array([-1.5, -0.65])     # μ·buf + (1 − τ)·g
    close(s1["state"]["momentum_buffer"], buf1)
    close(s1["update"], -0.1 * buf1)
    differs(s1["state"]["momentum_buffer"], 0.9 * G0 + np.array([-1.5, -0.65]))   # dampening ignored


def test_sgd_nesterov(engine):
    s = run(engine, "sgd", 0.1, momentum=0.9, nesterov=True)[0]
    close(s["state"]["momentum_buffer"], G0)
    close(s["update"], -0.1 * (G0 + 0.9 * G0))          # g + μ·buf
    differs(s["update"], -0.1 * G0)                      # heavy-ball would step by buf alone


# --------------------------------------------------------------------------------------------------
# RMSprop (alpha 0.99: v = 0.01·g² = (0.2025, 0.0625) after the first step)


def test_rmsprop_eps_outside_the_square_root(engine):
    s = run(engine, "rmsprop", 0.01, eps=0.05)[0]
    close(s["state"]["square_avg"], [0.01 * 4.5 ** 2, 0.01 * 2.5 ** 2])
    close(s["update"], [0.01 * 4.5 / (0.45 + 0.05), 0.01 * 2.5 / (0.25 + 0.05)])   # lr·g/(√v + ε)
    differs(s["update"], [0.01 * 4.5 / math.sqrt(0.2025 + 0.05), 0.01 * 2.5 / math.sqrt(0.0625 + 0.05)])


def test_rmsprop_alpha(engine):
    s = run(engine, "rmsprop", 0.01, alpha=0.75, eps=0.0)[0]
    close(s["state"]["square_avg"], [0.25 * 20.25, 0.25 * 6.25])
    close(s["update"], [0.01 * 4.5 / math.sqrt(0.25 * 20.25), 0.01 * 2.5 / math.sqrt(0.25 * 6.25)])  # = lr·2


def test_rmsprop_centered(engine):
    s = run(engine, "rmsprop", 0.01, centered=True, eps=0.0)[0]
    ga = [-0.045, -0.025]                                 # ḡ = (1 − α)·g
    close(s["state"]["grad_avg"], ga)
    close(s["update"], [0.01 * 4.5 / math.sqrt(0.2025 - 0.045 ** 2), 0.01 * 2.5 / math.sqrt(0.0625 - 0.025 ** 2)])
    differs(s["update"], [0.01 * 4.5 / 0.45, 0.01 * 2.5 / 0.25])   # uncentered: 0.1


def test_rmsprop_momentum_and_weight_decay(engine):
    s0, s1 = run(engine, "rmsprop", 0.01, steps=2, momentum=0.5, weight_decay=1.0, eps=0.0)
    g = np.array([-4.5 + 0.5, -2.5])                    # g + wd·p
    close(s0["grad"], g)
    v = 0.01 * g * g
    buf = g / np.sqrt(v)                                 # μ·0 + g/avg
    close(s0["state"]["momentum_buffer"], buf)
    close(s0["update"], -0.01 * buf)
    g1, v1 = s1["grad"], 0.99 * v + 0.01 * s1["grad"] ** 2
    close(s1["state"]["square_avg"], v1)
    close(s1["state"]["momentum_buffer"], 0.5 * buf + g1 / np.sqrt(v1))
    close(s1["update"], -0.01 * (0.5 * buf + g1 / np.sqrt(v1)))


# --------------------------------------------------------------------------------------------------
# Adam / AdamW (β1 0.9, β2 0.999: m = 0.1·g, v = 0.001·g², and √v/√(1 − β2) = |g| on the first step)


def test_adam_first_step(engine):
    s = run(engine, "adam", 0.1, eps=0.5)[0]
    close(s["state"]["exp_avg"], 0.1 * G0)
    close(s["state"]["exp_avg_sq"], 0.001 * G0 ** 2)
    # p1 = p0 − lr/(1 − β1)·m/(√v/√(1 − β2) + ε) = p0 − lr·g/(|g| + ε)
    close(s["update"], [0.1 * 4.5 / 5.0, 0.1 * 2.5 / 3.0])
    # Keras / sklearn: p −= lr·√(1 − β2)/(1 − β1) · m/(√v + ε), ε added to the raw √v
    keras = [0.1 * math.sqrt(0.001) / 0.1 * (0.1 * a) / (math.sqrt(0.001) * a + 0.5) for a in (4.5, 2.5)]
    differs(s["update"], keras)


def test_adam_coupled_weight_decay(engine):
    s = run(engine, "adam", 0.1, eps=0.5, weight_decay=1.0)[0]
    close(s["grad"], [-4.0, -2.5])                       # g + wd·p, into the moments
    close(s["state"]["exp_avg"], [-0.4, -0.25])
    close(s["update"], [0.1 * 4.0 / 4.5, 0.1 * 2.5 / 3.0])


def test_adamw_decoupled_shrink_before_the_moments(engine):
    s = run(engine, "adamw", 0.1, eps=0.5, weight_decay=1.0)[0]
    close(s["grad"], G0)                                 # the gradient is not touched
    close(s["state"]["exp_avg"], 0.1 * G0)
    # p ← p·(1 − lr·wd) = (0.45, 0), then the Adam step of g: (+0.09, +0.25/3)
    close(s["params"] + s["update"], [0.45 + 0.09, 0.1 * 2.5 / 3.0])
    differs(s["params"] + s["update"], [(0.5 + 0.09) * 0.9, 0.1 * 2.5 / 3.0 * 0.9])   # shrink after the step
    assert run(engine, "adamw", 0.1)[0]["update"][0] != run(engine, "adam", 0.1)[0]["update"][0]  # default wd 0.01


def test_adam_bias_correction_on_the_second_step(engine):
    s0, s1 = run(engine, "adam", 0.1, steps=2, beta1=0.5, beta2=0.75, eps=0.0)
    g1 = s1["grad"]
    m = 0.5 * (0.5 * G0) + 0.5 * g1                      # m + (1 − β1)(g − m)
    v = 0.75 * (0.25 * G0 ** 2) + 0.25 * g1 ** 2
    close(s1["state"]["exp_avg"], m)
    close(s1["state"]["exp_avg_sq"], v)
    close(s1["update"], -0.1 / (1 - 0.5 ** 2) * m / (np.sqrt(v) / math.sqrt(1 - 0.75 ** 2)))


def test_amsgrad_keeps_the_max_of_the_raw_v(engine):
    # β2 = 0.25 so that the raw v falls on the second step: v0 = 0.75·g0², v1 = 0.25·v0 + 0.75·g1²
    s0, s1 = run(engine, "adam", 0.1, steps=2, amsgrad=True, beta2=0.25, eps=0.0)
    g1 = s1["grad"]
    close(g1, [-3.7, -2.0])                              # p1 = (0.6, 0.1): r = (−0.3, −1.7)
    v0 = 0.75 * G0 ** 2
    v1 = 0.25 * v0 + 0.75 * g1 ** 2
    assert np.all(v1 < v0)
    close(s1["state"]["exp_avg_sq"], v1)
    close(s1["state"]["max_exp_avg_sq"], v0)             # max(v̂, v) over the raw v
    m = 0.9 * (0.1 * G0) + 0.1 * g1
    bc2 = 1 - 0.25 ** 2
    close(s1["update"], -0.1 / (1 - 0.9 ** 2) * m / (np.sqrt(v0) / math.sqrt(bc2)))
    differs(s1["update"], -0.1 / (1 - 0.9 ** 2) * m / (np.sqrt(v1) / math.sqrt(bc2)))   # no max: plain Adam
    # the max of the bias-corrected values would keep v0/(1 − β2) = g0² instead of v0/(1 − β2²)
    corrected = np.maximum(v0 / 0.75, v1 / bc2)
    differs(s1["update"], -0.1 / (1 - 0.9 ** 2) * m / np.sqrt(corrected))


# --------------------------------------------------------------------------------------------------
# Adagrad (torch.optim.Adagrad: the sum of squares starts at initial_accumulator_value)


def test_adagrad_first_step(engine):
    s = run(engine, "adagrad", 0.1, eps=0.5)[0]
    close(s["state"]["sum"], G0 ** 2)
    close(s["update"], [0.1 * 4.5 / (4.5 + 0.5), 0.1 * 2.5 / (2.5 + 0.5)])   # lr·g/(√sum + ε)
    differs(s["update"], [0.1 * 4.5 / math.sqrt(20.25 + 0.5), 0.1 * 2.5 / math.sqrt(6.25 + 0.5)])


def test_adagrad_initial_accumulator_and_weight_decay(engine):
    s = run(engine, "adagrad", 0.1, initial_accumulator_value=1.0, weight_decay=1.0, eps=0.0)[0]
    g = np.array([-4.0, -2.5])
    close(s["grad"], g)
    close(s["state"]["sum"], 1.0 + g ** 2)
    close(s["update"], [0.1 * 4.0 / math.sqrt(17.0), 0.1 * 2.5 / math.sqrt(7.25)])


def test_adagrad_lr_decay_from_the_second_step(engine):
    s0, s1 = run(engine, "adagrad", 0.1, steps=2, lr_decay=0.5, eps=0.0)
    close(s0["update"], [0.1, 0.1])                     # clr = lr/(1 + 0·decay): lr·g/|g|
    g1 = s1["grad"]
    total = G0 ** 2 + g1 ** 2
    close(s1["state"]["sum"], total)
    close(s1["update"], -(0.1 / (1 + 1 * 0.5)) * g1 / np.sqrt(total))
    differs(s1["update"], -0.1 * g1 / np.sqrt(total))
