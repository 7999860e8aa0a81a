"""Step-by-step parity with PyTorch in float64, against the stored reference trajectories.

The fixtures come from tests/fixtures/make_torch_fixtures.py (which needs torch); this test does not.
Every optimizer variant × loss × model × activation × (full batch, minibatch), 30 steps each:
trace params, batch losses, gradients, optimizer state, per-epoch losses and final params agree
within 1e-12.
"""
import json
import pathlib

import numpy as np
import pytest

import minireg

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "torch_parity.npz"
TOL = 1e-12

_data = np.load(FIXTURE)
ALL_CASES = json.loads(str(_data["cases"]))
CASES = [c for c in ALL_CASES if "controls" not in c]
CONTROL_CASES = [c for c in ALL_CASES if "controls" in c]
X, Y = _data["X"], _data["y"]


def _case_id(c):
    hp = ",".join(f"{k}={v}" for k, v in c["hparams"].items())
    model = c["model"] if c["model"] == "linear" else f"mlp-{c['activation']}"
    return f"{c['id']}-{c['optimizer']}({hp})-{c['loss']}-{model}-bs{c['batch_size']}"


def _run(case):
    init = {k.split("/")[-1]: _data[k] for k in _data.files if k.startswith(f"init/{case['model']}/")}
    kw = dict(case["hparams"], **case.get("controls", {}))
    return minireg.train(
        X, Y, model=case["model"], hidden=tuple(case["hidden"]), activation=case["activation"] or "relu",
        loss=case["loss"], delta=case["delta"], optimizer=case["optimizer"], epochs=case["epochs"],
        batch_size=case["batch_size"], shuffle=False, init=init, trace=True, **kw)


def _reference(case):
    return {k.split("/", 1)[1]: _data[k] for k in _data.files if k.startswith(f"{case['id']}/")}


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_pytorch_step_by_step(case):
    ref = _reference(case)
    r = _run(case)
    tr = r.trace
    assert not r.diverged
    assert r.n_steps == case["steps"] == len(tr)
    np.testing.assert_allclose(tr.params, ref["params"], rtol=0, atol=TOL)
    np.testing.assert_allclose(tr.loss, ref["loss"], rtol=0, atol=TOL)
    np.testing.assert_allclose(tr.grad, ref["grad"], rtol=0, atol=TOL)
    for name, rows in tr.state.items():
        np.testing.assert_allclose(rows, ref[f"state_{name}"], rtol=0, atol=TOL, err_msg=name)
    np.testing.assert_allclose(r.history["loss"], ref["epoch_loss"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.theta, ref["final"], rtol=0, atol=TOL)


@pytest.mark.parametrize("case", CONTROL_CASES, ids=lambda c: _case_id(c) + "-" + ",".join(
    f"{k}={v}" for k, v in c["controls"].items()))
def test_controls_match_pytorch_step_by_step(case):
    """clip_grad_norm_/clip_grad_value_, lr schedulers and the L1 penalty, step by step."""
    ref = _reference(case)
    r = _run(case)
    tr = r.trace
    np.testing.assert_allclose(tr.lr, ref["lr"], rtol=1e-13, atol=0)
    np.testing.assert_array_equal(tr.clipped, ref["clipped"])
    np.testing.assert_allclose(tr.params, ref["params"], rtol=0, atol=TOL)
    np.testing.assert_allclose(tr.loss, ref["loss"], rtol=0, atol=TOL)
    np.testing.assert_allclose(tr.grad, ref["grad"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.history["loss"], ref["epoch_loss"], rtol=0, atol=TOL)
    np.testing.assert_allclose(r.theta, ref["final"], rtol=0, atol=TOL)


def test_control_fixtures_exercise_what_they_test():
    """Clipping must both happen and not happen somewhere; every schedule must move the lr."""
    for case in CONTROL_CASES:
        ref = _reference(case)
        ctl = case["controls"]
        if "clip_grad_norm" in ctl or "clip_grad_value" in ctl:
            assert 0 < ref["clipped"].sum() < len(ref["clipped"]), _case_id(case)
        if "schedule" in ctl:
            assert len(np.unique(ref["lr"])) > 1, _case_id(case)
        if "l1" in ctl:
            assert ref["final"][0] != 0


def test_fixture_covers_the_whole_grid():
    """Guards against a regenerated fixture silently dropping part of the grid."""
    opts = {(c["optimizer"], json.dumps(c["hparams"], sort_keys=True)) for c in CASES}
    assert {o for o, _ in opts} == {"sgd", "rmsprop", "adam", "adamw", "adagrad"}
    assert len(opts) >= 20
    assert {c["loss"] for c in CASES} == {"mse", "huber", "mae"}
    assert {c["activation"] for c in CASES if c["model"] == "mlp"} == {"relu", "tanh", "sigmoid", "identity"}
    assert {c["batch_size"] for c in CASES} == {None, 4}
    assert min(c["steps"] for c in CASES) >= 30
    assert len(CASES) == len(opts) * 3 * 5 * 2
