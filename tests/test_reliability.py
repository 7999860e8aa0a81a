"""Reliability: every bad input gets one clear error, huge-but-valid input diverges cleanly, inputs are
never modified, memory is refused before it is allocated, and the kernels index within bounds.

Saved runs (atomic writes; a file truncated at any byte offset, corrupt, foreign or newer raises a
clear ValueError, never a wrong result) are covered by tests/test_io.py; the randomized version of
the input checks below is tests/test_fuzz.py.
"""
import os
import subprocess
import sys
import textwrap
import tracemalloc
import types
import warnings

import numpy as np
import pytest
from conftest import linear_data

import minireg
from minireg import _validate as V

F32_MAX = float(np.finfo(np.float32).max)


def _train(X=None, y=None, **kw):
    if X is None:
        X, y = linear_data()
    kw.setdefault("epochs", 2)
    return minireg.train(X, y, **kw)


# --------------------------------------------------------------------------------------------------
# every kind of bad input: one ValueError/TypeError naming the argument, the value and what is allowed

X0, Y0 = linear_data()
_nan_X = X0.copy()
_nan_X[[2, 7], 1] = np.nan
_inf_y = Y0.copy()
_inf_y[5] = np.inf

BAD_DATA = {
    "nan-in-X": ((_nan_X, Y0), {}, ValueError,
                 r"X has 2 NaN/inf value\(s\) in 2 row\(s\) \(first rows \[2, 7\]\) and column\(s\) \[1\]"),
    "inf-in-y": ((X0, _inf_y), {}, ValueError, r"y has 1 NaN/inf value\(s\) \(first rows \[5\]\)"),
    "lengths": ((X0, Y0[:-3]), {}, ValueError, "X has 20 samples but y has 17"),
    "empty": ((np.zeros((0, 2)), np.zeros(0)), {}, ValueError, r"X is empty \(0 samples\)"),
    "no-features": ((np.zeros((20, 0)), Y0), {}, ValueError, "X has 0 features"),
    "3-D": ((X0.reshape(20, 2, 1), Y0), {}, ValueError, r"X must be 2-D .* got shape \(20, 2, 1\)"),
    "y-2-columns": ((X0, np.c_[Y0, Y0]), {}, ValueError, r"y must be 1-D or of shape \(n_samples, 1\)"),
    "strings": ((X0.astype(str), Y0), {}, TypeError, "X has non-numeric dtype <U"),
    "object": ((X0.astype(object), Y0), {}, TypeError, "X has dtype object .*np.asarray"),
    "none": ((None, Y0), {}, TypeError, "X has non-numeric dtype object"),
    "complex": ((X0 + 1j, Y0), {}, TypeError, "X has complex dtype complex128"),
    "boolean-X": ((X0 > 0, Y0), {}, TypeError, "X has boolean dtype"),
    "boolean-y": ((X0, Y0 > 0), {}, TypeError, "y has boolean dtype"),
    "datetime": ((np.zeros((20, 2), "datetime64[s]"), Y0), {}, TypeError, "X has non-numeric dtype datetime64"),
    "ragged": (([[1.0, 2.0], [3.0]], [1.0, 2.0]), {}, ValueError, "X could not be turned into an array"),
    "python-ints-beyond-int64": (([[2 ** 70], [1]], [1.0, 2.0]), {}, TypeError, "X has dtype object .*beyond int64"),
    "validation-nan": ((X0, Y0), {"validation": (_nan_X[:5], Y0[:5])}, ValueError,
                       r"validation X has 1 NaN/inf value\(s\) in 1 row\(s\) \(first rows \[2\]\)"),
    "validation-features": ((X0, Y0), {"validation": (np.zeros((3, 5)), np.zeros(3))}, ValueError,
                            "validation X has 5 features but X has 2"),
}


@pytest.mark.parametrize("name", list(BAD_DATA))
def test_bad_data_gets_one_clear_error(name):
    (X, y), kw, exc, match = BAD_DATA[name]
    with pytest.raises(exc, match=match) as info:
        minireg.train(X, y, **kw)
    assert type(info.value) is exc


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="long double is double here")
def test_long_doubles_beyond_float64_are_an_overflow_not_a_nan():
    X = np.full((4, 1), np.longdouble(10) ** 400)
    with pytest.raises(ValueError, match=r"X has 4 value\(s\) too large for float64 \(largest \|value\| 1.00e\+400"):
        minireg.train(X, np.zeros(4))


BAD_ARGS = [
    # counts and sizes
    ({"batch_size": 0}, ValueError, r"batch_size must be an integer >= 1, got 0"),
    ({"batch_size": 2.5}, TypeError, r"batch_size must be an integer >= 1, got 2.5 \(float\)"),
    ({"batch_size": True}, TypeError, r"batch_size must be an integer >= 1, got True \(bool\)"),
    ({"batch_size": "32"}, TypeError, r"batch_size must be an integer >= 1, got '32' \(str\)"),
    ({"epochs": 0}, ValueError, "epochs must be an integer >= 1, got 0"),
    ({"epochs": -3}, ValueError, "epochs must be an integer >= 1, got -3"),
    ({"epochs": 2.0}, TypeError, r"epochs must be an integer >= 1, got 2.0 \(float\)"),
    ({"epochs": np.float64(2)}, TypeError, "epochs must be an integer"),
    ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
    ({"seed": 1.5}, TypeError, r"seed must be an integer >= 0, got 1.5 \(float\)"),
    ({"seed": "0"}, TypeError, "seed must be an integer"),
    ({"trace_every": 0}, ValueError, "trace_every must be an integer >= 1, got 0"),
    ({"trace_every": 1.5}, TypeError, "trace_every must be an integer"),
    ({"trace_budget": 0}, ValueError, r"trace_budget must be .* in \(0.0, inf\], got 0"),
    ({"trace_budget": -5.0}, ValueError, "trace_budget must be"),
    ({"trace_budget": float("nan")}, ValueError, "trace_budget must be"),
    ({"early_stopping": -1}, ValueError, r"early_stopping \(the patience\) must be an integer >= 0"),
    # real numbers
    ({"lr": 0}, ValueError, r"lr must be a finite number in \(0.0, inf\], got 0"),
    ({"lr": -0.1}, ValueError, "lr must be a finite number .* got -0.1"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number .* got nan"),
    ({"lr": float("inf")}, ValueError, "lr must be a finite number .* got inf"),
    ({"lr": 10 ** 400}, ValueError, "lr must be a finite number"),
    ({"lr": "0.1"}, TypeError, r"lr must be a real number, got '0.1' \(str\)"),
    ({"lr": 1 + 0j}, TypeError, "lr must be a real number"),
    ({"loss": "huber", "delta": 0}, ValueError, r"delta must be a finite number in \(0.0, inf\], got 0"),
    ({"delta": -1.0}, ValueError, "delta must be a finite number"),
    ({"optimizer": "adam", "beta1": 1.0}, ValueError, r"beta1 must be a finite number in \[0.0, 1.0\), got 1.0"),
    ({"optimizer": "adam", "beta2": -0.1}, ValueError, r"beta2 must be a finite number in \[0.0, 1.0\)"),
    ({"optimizer": "adamw", "beta2": float("nan")}, ValueError, "beta2 must be"),
    ({"optimizer": "rmsprop", "alpha": 1.5}, ValueError, r"alpha must be a finite number in \[0.0, 1.0\]"),
    ({"optimizer": "adam", "eps": -1e-8}, ValueError, "eps must be"),
    ({"momentum": -0.5}, ValueError, "momentum must be"),
    ({"weight_decay": float("inf")}, ValueError, "weight_decay must be"),
    ({"clip_grad_norm": 0}, ValueError, "clip_grad_norm must be"),
    ({"clip_grad_value": -1}, ValueError, "clip_grad_value must be"),
    ({"l1": -0.1}, ValueError, "l1 must be"),
    ({"min_delta": -1}, ValueError, "min_delta must be"),
    ({"validation": 0.0}, ValueError, r"validation must be a finite number in \(0.0, 1.0\)"),
    ({"validation": "0.2"}, TypeError, r"validation must be None, a fraction in \(0, 1\) or a pair"),
    ({"validation": (X0[:3], Y0[:3], None)}, ValueError, "validation must be a fraction .* or a pair .* tuple of 3"),
    # names, with a "did you mean"
    ({"model": "mpl"}, ValueError, "model='mpl' is not one of 'linear', 'mlp'. Did you mean 'mlp'"),
    ({"model": "mlp", "activation": "rleu"}, ValueError, "activation='rleu' is not one of .* Did you mean 'relu'"),
    ({"loss": "hubr"}, ValueError, "loss='hubr' is not one of .* Did you mean 'huber'"),
    ({"optimizer": "adm"}, ValueError, "optimizer='adm' is not one of .* Did you mean 'adam'"),
    ({"dtype": "float23"}, ValueError, "dtype='float23' is not one of 'float64', 'float32'"),
    ({"dtype": "float16"}, ValueError, "dtype='float16' is not one of"),
    ({"dtype": np.float16}, ValueError, "dtype=.*float16.* is not one of"),
    ({"dtype": None}, ValueError, "dtype=None is not one of"),
    ({"init": "torh"}, ValueError, "init='torh' is not one of .* Did you mean 'torch'"),
    ({"init": 3}, TypeError, "init must be one of .* or a dict of arrays, got int"),
    ({"trace": "norm"}, ValueError, "trace='norm' is not one of False, True, 'norms'. Did you mean 'norms'"),
    ({"standardize": "zscor"}, ValueError, "standardize='zscor' is not one of .* Did you mean 'zscore'"),
    ({"schedule": "cosin"}, ValueError, "Did you mean 'cosine'"),
    ({"device": "gpu"}, ValueError, "device='gpu' is not one of 'cpu', 'cuda'"),
    ({"momentun": 0.9}, TypeError, "unexpected argument 'momentun' for optimizer='sgd'.* Did you mean 'momentum'"),
    ({"optimizer": "adam", "momentum": 0.9}, TypeError, "'momentum' belongs to another optimizer"),
    ({"shuffle": "yes"}, TypeError, "shuffle must be True or False, got 'yes'"),
    ({"progress": 1}, TypeError, "progress must be True or False"),
    # hidden sizes
    ({"model": "mlp", "hidden": 0}, ValueError, r"hidden\[0\] must be an integer >= 1, got 0"),
    ({"model": "mlp", "hidden": (4, -2)}, ValueError, r"hidden\[1\] must be an integer >= 1, got -2"),
    ({"model": "mlp", "hidden": (4, 2.5)}, TypeError, r"hidden\[1\] must be an integer >= 1, got 2.5"),
    ({"model": "mlp", "hidden": "10"}, TypeError, "hidden must be an int or a tuple of ints, got '10'"),
    ({"model": "mlp", "hidden": 10.0}, TypeError, "hidden must be an int or a tuple of ints, got 10.0"),
    ({"model": "mlp", "hidden": ()}, ValueError, r"hidden=\(\) has no layer"),
    # init dicts
    ({"init": {"W1": np.zeros((2, 1))}}, ValueError, r"init dict must hold exactly \['W1', 'b1'\]; missing \['b1'\]"),
    ({"init": {"W1": np.zeros((2, 1)), "b1": np.zeros(1), "W2": np.zeros(1)}}, ValueError,
     r"unexpected \['W2'\]"),
    ({"init": {"W1": np.zeros(2), "b1": np.zeros(1)}}, ValueError, r"init\['W1'\] has shape \(2,\); expected \(2, 1\)"),
    ({"init": {"W1": np.array([[np.nan], [0.0]]), "b1": np.zeros(1)}}, ValueError,
     r"init\['W1'\] has 1 NaN/inf value\(s\)"),
    ({"init": {"W1": np.zeros((2, 1)), "b1": np.array([np.inf])}}, ValueError, r"init\['b1'\] has 1 NaN/inf"),
    ({"init": {"W1": np.zeros((2, 1), str), "b1": np.zeros(1)}}, TypeError, r"init\['W1'\] has non-numeric dtype"),
    ({"model": "mlp", "init": "zeros"}, ValueError, "init='zeros' is only allowed for model='linear'"),
    # combinations
    ({"model": "mlp", "l1": 0.1}, ValueError, "l1=0.1 is available for model='linear' only"),
    ({"winsorize_y": True}, ValueError, "winsorize_y=True .* pass winsorize"),
    ({"nesterov": True}, ValueError, "nesterov=True needs momentum > 0"),
    ({"gamma": 0.5}, ValueError, "gamma=0.5 is a parameter of schedule="),
    ({"schedule": "step", "step_size": 1, "step_lrs": [0.1] * 2}, ValueError,
     "step_lrs .* cannot be combined with schedule"),
    ({"step_lrs": [0.1] * 3}, ValueError, "step_lrs has 3 entries but the run takes 2 steps"),
    ({"step_lrs": [0.1, -0.1]}, ValueError, "step_lrs must hold finite learning rates > 0"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD_ARGS, ids=[str(sorted(k))[:60] for k, _, _ in BAD_ARGS])
def test_bad_argument_gets_one_clear_error(kwargs, exc, match):
    with pytest.raises(exc, match=match) as info:
        _train(**kwargs)
    assert type(info.value) is exc


@pytest.mark.parametrize("kwargs", [
    {"epochs": np.int64(2), "batch_size": np.int32(7), "trace_every": np.uint8(2), "seed": np.uint64(3),
     "trace": True},
    {"early_stopping": np.int16(1), "validation": 0.25, "schedule": "step", "step_size": np.int64(1)},
    {"model": "mlp", "hidden": np.array([3, 2]), "dtype": np.float32},
    {"model": "mlp", "hidden": np.int64(3), "dtype": np.dtype("float32")},
    {"dtype": "f4"}, {"dtype": "double"}, {"dtype": float}, {"dtype": "FLOAT32"},
    {"lr": np.float32(0.05), "delta": np.float64(2.0), "loss": "huber", "momentum": np.float16(0.5)},
    {"lr": 1, "trace_budget": float("inf"), "trace": True},
    {"shuffle": np.bool_(False), "batch_size": 7},
    {"seed": 2 ** 100},
    {"validation": [X0[:4], Y0[:4]]},  # a list pair works like a tuple
    {"init": types.MappingProxyType({"W1": [[0.5], [0.25]], "b1": [0.0]})},  # any mapping, lists inside
    {"init": {"W1": np.zeros((2, 1), np.int64), "b1": np.zeros(1, np.float32)}},
])
def test_numpy_scalars_and_equivalent_spellings_are_accepted(kwargs):
    r = _train(**kwargs)
    assert np.isfinite(r.theta).all()


def test_equivalent_spellings_give_identical_runs():
    a = _train(dtype="float32", epochs=3, trace=True)
    for dtype in (np.float32, np.dtype("float32"), "f4", "single", "Float32"):
        b = _train(dtype=dtype, epochs=3, trace=True)
        np.testing.assert_array_equal(a.trace.params, b.trace.params)
        assert b.config["dtype"] == "float32"
    c = _train(epochs=np.int64(3), batch_size=np.int32(6), seed=np.int8(0))
    d = _train(epochs=3, batch_size=6, seed=0)
    np.testing.assert_array_equal(c.theta, d.theta)
    assert type(c.config["epochs"]) is int and type(c.config["batch_size"]) is int


def test_linear_model_ignores_hidden_and_activation():
    # documented behaviour: hidden/activation only apply to model="mlp" (their defaults are always
    # passed, e.g. by MiniRegressor, so "given" cannot be told from "default"): model="linear" ignores them
    a = _train()
    b = _train(hidden=(32,), activation="tanh")
    np.testing.assert_array_equal(a.theta, b.theta)
    assert b.config["hidden"] == () and b.config["activation"] is None


def test_cuda_without_a_gpu_is_one_clear_error():
    from numba import cuda
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or cuda.is_available():
        pytest.skip("a GPU (or the simulator) is there")
    with pytest.raises(ValueError, match=r"(?s)device='cuda' needs an NVIDIA GPU .* device='cpu'"):
        _train(device="cuda")


# --------------------------------------------------------------------------------------------------
# float32 runs: values float32 cannot hold are refused instead of silently becoming inf (or 0)


@pytest.mark.parametrize("what,kw,match", [
    ("y", {}, r"y has 20 value\(s\) beyond the float32 range .*dtype='float64' \(predictions come back in y's units"),
    ("y-standardized", {"standardize_y": True}, r"y has 20 value\(s\) beyond the float32 range"),
    ("X", {}, r"X has 1 value\(s\) beyond the float32 range \(largest \|value\| 1e\+200"),
    ("init", {"init": {"W1": np.array([[1e39], [0.0]]), "b1": np.zeros(1)}}, r"init\['W1'\] has 1 value\(s\) beyond"),
    ("validation", {"validation": (np.full((3, 2), 1e39), np.zeros(3))}, "validation X has 6 value"),
    ("lr", {"lr": 1e40}, r"lr=1e\+40 is beyond the float32 range .* lr=inf"),
    ("eps", {"optimizer": "adam", "eps": 1e300}, "eps=1e\\+300 is beyond the float32 range"),
    ("weight_decay", {"weight_decay": 1e39}, "weight_decay=1e\\+39 is beyond"),
    ("delta", {"loss": "huber", "delta": 1e-50}, "delta=1e-50 rounds to 0 in float32.*Huber loss 0"),
    ("clip", {"clip_grad_norm": 1e-60}, "clip_grad_norm=1e-60 rounds to 0 in float32.*turns clipping off"),
    ("clip_value", {"clip_grad_value": 1e-60}, "clip_grad_value=1e-60 rounds to 0"),
    ("lr-underflow", {"lr": 1e-50}, "lr=1e-50 rounds to 0 in float32"),
    ("step_lrs", {"step_lrs": [0.1, 1e40]}, r"step_lrs\[1\]=1e\+40 is beyond the float32 range"),
    ("robust-scaled", {"standardize": "robust"}, "X after standardize \\(robust\\) has .* beyond the float32 range"),
])
def test_float32_refuses_values_it_cannot_hold(what, kw, match):
    X, y = linear_data()
    if what.startswith("y"):
        y = y * 1e50
    if what == "X":
        X[3, 1] = 1e200
    if what == "robust-scaled":  # MAD 0 in column 0: robust scaling leaves the 1e39 outlier as it is
        X[:, 0] = 0.0
        X[0, 0] = 1e39
    with pytest.raises(ValueError, match=match):
        minireg.train(X, y, dtype="float32", epochs=2, **kw)
    with warnings.catch_warnings():  # the same values are fine for a float64 run (which may diverge)
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        minireg.train(X, y, dtype="float64", epochs=2, **kw)


def test_float32_accepts_huge_data_that_scaling_brings_into_range():
    X, y = linear_data()
    r = minireg.train(X * 1e120, y * 1e30, dtype="float32", standardize=True, standardize_y=True, epochs=3)
    assert np.isfinite(r.theta).all() and not r.diverged
    assert np.isfinite(r.predict(X * 1e120)).all()
    with pytest.raises(ValueError, match=r"X after the fitted scaling has .* beyond the float32 range"):
        r.predict(X * 1e160)  # z-scores of about 1e40


def test_scalers_that_would_overflow_are_refused():
    X, y = linear_data()
    # z-scoring divides huge columns by their magnitude first: 1e200 features and targets train
    r = minireg.train(X * 1e200, y * 1e200, standardize=True, standardize_y=True, epochs=3)
    assert np.isfinite(r.theta).all() and np.isfinite(r.predict(X * 1e200)).all()
    np.testing.assert_allclose(r.x_scaler.transform(X * 1e200, np.float64),
                               minireg.train(X, y, standardize=True, epochs=1).x_scaler.transform(X, np.float64),
                               rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"X cannot be scaled with standardize \(minmax\)"):
        Xm = X.copy()
        Xm[0, 0], Xm[1, 0] = 1e308, -1e308
        minireg.train(Xm, y, standardize="minmax")
    r = minireg.train(X * 1e120, y, standardize=True, epochs=3)  # squares of 1e120 overflow; z-scores do not
    assert np.isfinite(r.theta).all()


# --------------------------------------------------------------------------------------------------
# huge but valid values: diverged=True with the trace intact, no exception, no hang


def _assert_clean_divergence(r, caught):
    assert [w.category for w in caught] == [minireg.DivergenceWarning]
    assert r.diverged and r.diverged_at is not None and r.n_steps == r.diverged_at + 1
    tr = r.trace
    np.testing.assert_array_equal(tr.step, np.arange(r.diverged_at + 1))
    assert tr.step[-1] == r.diverged_at
    assert np.isfinite(tr.params).all()  # the parameters before every recorded step were finite
    assert np.isfinite(tr.loss[:-1]).all()
    assert not np.isfinite(tr.loss[-1]) or not np.isfinite(r.theta).all()
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(tr.update[:-1], tr.params[1:] - tr.params[:-1])
        np.testing.assert_array_equal(tr.update[-1], r.theta - tr.params[-1])
    spe = r.config["steps_per_epoch"]
    assert r.history["loss"].size == r.diverged_at // spe


@pytest.mark.parametrize("case", ["features-1e150", "lr-1e10", "targets-1e200", "float32-targets-1e30",
                                  "mlp-momentum-features-1e150", "int64-features"])
def test_huge_valid_values_diverge_with_the_trace_intact(case):
    X, y = linear_data()
    kw = dict(epochs=200, batch_size=8, trace=True)
    if case == "features-1e150":
        X = X * 1e150
    elif case == "lr-1e10":
        kw["lr"] = 1e10
    elif case == "targets-1e200":
        y = y * 1e200
    elif case == "float32-targets-1e30":
        y, kw["dtype"] = y * 1e30, "float32"
    elif case == "mlp-momentum-features-1e150":
        X, kw = X * 1e150, {**kw, "model": "mlp", "hidden": (3,), "optimizer": "sgd", "momentum": 0.9}
    else:
        X, kw["lr"] = (X * 2 ** 60).astype(np.int64), 1.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = minireg.train(X, y, **kw)
    _assert_clean_divergence(r, caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = r.predict(X)  # a diverged model predicts NaN/inf, quietly
    assert pred.shape == (20,)


def test_divergence_without_a_trace_and_with_validation_and_early_stopping():
    X, y = linear_data()
    with pytest.warns(minireg.DivergenceWarning):
        r = minireg.train(X, y * 1e200, epochs=20, batch_size=5, validation=0.25, early_stopping=2)
    assert r.diverged and r.diverged_at == 0 and r.trace is None
    assert r.history["loss"].size == 0 and r.history["val_loss"].size == 0


# --------------------------------------------------------------------------------------------------
# inputs are never modified (nor their flags), whatever their layout


def _kinds(a):
    """(name, array-like) variants of a 2-D or 1-D float64 array."""
    out = {"c-float64": a.copy(), "float32": a.astype(np.float32), "fortran": np.asfortranarray(a)}
    ro = a.copy()
    ro.setflags(write=False)
    out["read-only"] = ro
    if a.ndim == 2:
        wide = np.repeat(a, 2, axis=1)
        out["non-contiguous"] = wide[:, ::2]
    else:
        out["non-contiguous"] = np.repeat(a, 2)[::2]
    out["negative-stride"] = a[::-1]
    out["int64"] = np.round(a * 10).astype(np.int64)
    return out


def _snapshot(v):
    if hasattr(v, "to_numpy"):
        return ("pandas", v.copy(deep=True))
    a = np.asarray(v)
    return ("array", a.copy(), a.flags.writeable, a.flags.c_contiguous, a.flags.f_contiguous, a.strides)


def _unchanged(v, snap):
    if snap[0] == "pandas":
        pd = pytest.importorskip("pandas")
        if isinstance(v, pd.DataFrame):
            pd.testing.assert_frame_equal(v, snap[1])
        else:
            pd.testing.assert_series_equal(v, snap[1])
        return
    a = np.asarray(v)
    np.testing.assert_array_equal(a, snap[1], strict=True)
    assert (a.flags.writeable, a.flags.c_contiguous, a.flags.f_contiguous, a.strides) == snap[2:]


RICH = dict(standardize="robust", standardize_y=True, winsorize=(0.1, 0.9), winsorize_y=True,
            model="mlp", hidden=(3,), optimizer="adam", batch_size=6, epochs=3, trace=True, early_stopping=1)


@pytest.mark.parametrize("kind", ["c-float64", "float32", "fortran", "read-only", "non-contiguous",
                                  "negative-stride", "int64", "pandas"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_inputs_are_never_modified(kind, dtype):
    X, y = linear_data(n=30, d=3)
    Xv, yv = linear_data(n=8, d=3, seed=1)
    if kind == "pandas":
        pd = pytest.importorskip("pandas")
        X, y = pd.DataFrame(X, columns=list("abc")), pd.Series(y, name="t")
        Xv, yv = pd.DataFrame(Xv, columns=list("abc")), pd.Series(yv)
    else:
        X, y, Xv, yv = (_kinds(a)[kind] for a in (X, y, Xv, yv))
    init = {"W1": _kinds(np.full((3, 3), 0.1))[kind if kind != "pandas" else "read-only"],
            "b1": _kinds(np.zeros(3))[kind if kind != "pandas" else "c-float64"],
            "W2": _kinds(np.full((3, 1), 0.2))[kind if kind != "pandas" else "fortran"],
            "b2": _kinds(np.zeros(1))[kind if kind != "pandas" else "float32"]}
    everything = [X, y, Xv, yv, *init.values()]
    snaps = [_snapshot(v) for v in everything]
    r = minireg.train(X, y, **RICH, init=init, validation=(Xv, yv), dtype=dtype)
    for v, s in zip(everything, snaps, strict=True):
        _unchanged(v, s)
    pred_in = X if kind == "pandas" else _kinds(np.asarray(X, dtype=np.float64))[kind]
    snap = _snapshot(pred_in)
    r.predict(pred_in)
    _unchanged(pred_in, snap)
    # the run holds copies, not views: writing to them leaves the caller's arrays alone
    r.data[0][:] = 0
    for v, s in zip(everything, snaps, strict=True):
        _unchanged(v, s)


def test_step_lrs_and_fraction_validation_inputs_are_untouched():
    X, y = linear_data(n=12)
    X.setflags(write=False)
    lrs = np.full(6, 0.1)
    lrs.setflags(write=False)
    lrs0 = lrs.copy()
    minireg.train(X, y, step_lrs=lrs, epochs=3, batch_size=5, validation=0.2, dtype="float32")
    np.testing.assert_array_equal(lrs, lrs0)
    assert not lrs.flags.writeable and not X.flags.writeable


def test_estimator_leaves_its_inputs_alone():
    from minireg import MiniRegressor
    X, y = linear_data(n=30, d=3)
    X = np.asfortranarray(X)
    X.setflags(write=False)
    X0, y0 = X.copy(), y.copy()
    m = MiniRegressor(epochs=3, model="mlp", hidden=(2,)).fit(X, y)
    m.predict(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# --------------------------------------------------------------------------------------------------
# memory: runs that cannot fit are refused before anything is allocated


@pytest.mark.parametrize("kw,culprit", [
    ({"model": "mlp", "hidden": (2 ** 40,), "batch_size": 1},
     r"parameters, gradient and optimizer state \(hidden=\(1099511627776,\)\)"),
    ({"model": "mlp", "hidden": (2 ** 40, 2 ** 40)}, "parameters, gradient and optimizer state"),  # overflows int64
    ({"model": "mlp", "hidden": (2 ** 62, 2 ** 62, 2 ** 62)}, "parameters"),
    ({"epochs": 10 ** 12}, r"per-epoch history \(epochs=1000000000000\)"),
    ({"model": "mlp", "hidden": (2 ** 34, 1), "batch_size": 20}, r"activation buffers \(batch_size=20 rows"),
    ({"epochs": 10 ** 10, "trace": "norms", "trace_budget": float("inf")}, r"trace \(trace='norms', trace_every=1\)"),
])
def test_runs_that_cannot_fit_in_memory_are_refused_before_allocating(kw, culprit):
    X, y = linear_data()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"this run would need about .* of memory but this machine has .*; "
                                             rf"most of it is the {culprit}.*Nothing was allocated"):
            minireg.train(X, y, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2 ** 20  # numpy reports its allocations to tracemalloc: nothing big was made


def test_memory_check_counts_every_buffer_and_takes_a_limit():
    parts = V.run_memory(n=1000, d=10, n_val=0, sizes=(10, 100, 1), batch_size=50, epochs=10, itemsize=8,
                         trace=True, trace_every=1, trace_budget=2 ** 30, n_state=2)
    P = 10 * 100 + 100 + 100 + 1
    trace = [v for k, v in parts.items() if k.startswith("trace")][0]
    assert trace == (200 + 1) * (16 + 6 * 8 + 5 * P * 8)
    assert V.check_memory(parts, limit=10 ** 12) == sum(parts.values())
    with pytest.raises(ValueError, match="most of it is the trace"):
        V.check_memory(parts, limit=10 ** 6)
    # a trace above its budget counts as the budget: its own check refuses it with a better message
    capped = V.run_memory(n=1000, d=10, n_val=0, sizes=(10, 100, 1), batch_size=50, epochs=10, itemsize=8,
                          trace=True, trace_every=1, trace_budget=1000, n_state=2)
    assert [v for k, v in capped.items() if k.startswith("trace")] == [1000]
    assert V.memory_limit() is None or V.memory_limit() > 2 ** 26


def test_trace_budget_refusal_still_comes_first():
    # the existing budget check (tests/test_engine.py) keeps its message for traces too big for the budget
    X, y = linear_data()
    with pytest.raises(ValueError, match=r"the trace would need .* trace_budget"):
        minireg.train(X, y, epochs=10 ** 7, trace=True)


def test_memory_refusal_on_a_small_limit(monkeypatch):
    monkeypatch.setattr(V, "memory_limit", lambda: 2 ** 20)
    X, y = linear_data()
    with pytest.raises(ValueError, match=r"activation buffers \(batch_size=20 rows x layer widths \(20000, 1\)\)"
                                         r"|parameters, gradient"):
        minireg.train(X, y, model="mlp", hidden=(20000,))
    minireg.train(X, y, model="mlp", hidden=(20,), epochs=2)  # small runs still go through


# --------------------------------------------------------------------------------------------------
# predict and the other entry points validate too


def test_predict_validates_its_input():
    X, y = linear_data()
    r = minireg.train(X, y, epochs=2, standardize=True)
    bad = X[:3].copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"X has 1 NaN/inf value\(s\) .* before predicting"):
        r.predict(bad)
    with pytest.raises(ValueError, match="X has 3 features, but the model was trained on 2"):
        r.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="must be 2-D"):
        r.predict(np.zeros((1, 4, 2)))
    with pytest.raises(TypeError, match="X has non-numeric dtype"):
        r.predict(X.astype(str))
    with pytest.raises(TypeError, match="boolean"):
        r.predict(X > 0)
    with pytest.raises(ValueError, match="empty"):
        r.predict(np.zeros((0, 2)))
    tiny = minireg.train(X * 1e-10, y, epochs=2, standardize=True)  # scale 1e-10: 1e300 / 1e-10 overflows
    with pytest.raises(ValueError, match="X cannot be scaled with the scaler fitted in training"):
        tiny.predict(np.full((2, 2), 1e300))
    wide = np.repeat(X, 2, axis=1)[:, ::2]
    np.testing.assert_array_equal(r.predict(X), r.predict(np.asfortranarray(X)))
    np.testing.assert_array_equal(r.predict(X), r.predict(wide))
    np.testing.assert_array_equal(r.predict(X[:, :1].ravel()[:, None].repeat(2, 1)),
                                  r.predict(np.c_[X[:, 0], X[:, 0]]))


def test_other_entry_points_validate_data_first():
    X, y = linear_data()
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"X has 1 NaN/inf"):
        minireg.check_data(bad, y)
    with pytest.raises(ValueError, match=r"X has 1 NaN/inf"):
        minireg.stability_bound(bad, y)
    with pytest.raises(ValueError, match="optimizer='adm' is not one of"):
        minireg.stability_bound(X, y, optimizer="adm")
    with pytest.raises(ValueError, match=r"X has 1 NaN/inf"):
        minireg.lr_range_test(bad, y)
    with pytest.raises(ValueError, match="X has 20 samples but y has 19"):
        minireg.check_data(X, y[:-1])
    from minireg import MiniRegressor
    with pytest.raises(ValueError, match="lr must be a finite number"):
        MiniRegressor(lr=-1).fit(X, y)
    with pytest.raises(ValueError, match=r"hidden\[0\] must be an integer >= 1"):
        MiniRegressor(model="mlp", hidden=(0,)).fit(X, y)
    with pytest.raises(ValueError, match="y has 20 value.* beyond the float32 range"):
        MiniRegressor(dtype="float32", standardize_y=False).fit(X, y * 1e200)
    with pytest.raises(FileNotFoundError):
        minireg.load("/nonexistent/run.npz")


# --------------------------------------------------------------------------------------------------
# the compiled kernels never index out of bounds (numba's boundscheck, compiled fresh)

_BOUNDSCHECK_SCRIPT = textwrap.dedent("""
    import warnings
    import numpy as np
    from numba import config, njit
    assert config.BOUNDSCHECK, "NUMBA_BOUNDSCHECK did not take effect"

    @njit
    def _oob(a, i):
        return a[i]
    try:
        _oob(np.zeros(3), 3)
    except IndexError:
        pass
    else:
        raise AssertionError("boundscheck is not active")

    import minireg
    warnings.simplefilter("ignore", minireg.DivergenceWarning)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(11, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=11)
    Xv, yv = rng.normal(size=(7, 3)), rng.normal(size=7)
    mlp = dict(model="mlp", hidden=(4, 3), activation="tanh")
    cases = [
        dict(batch_size=4, epochs=3, trace=True),                                  # partial last batch
        dict(batch_size=4, epochs=3, shuffle=False, trace="norms", trace_every=2),
        dict(**mlp, batch_size=4, epochs=3, trace=True, trace_every=3, validation=(Xv, yv)),
        dict(**mlp, optimizer="adam", amsgrad=True, batch_size=5, epochs=4, validation=0.3,
             early_stopping=1, trace=True),
        dict(**mlp, optimizer="rmsprop", centered=True, momentum=0.5, batch_size=3, epochs=2, trace=True,
             clip_grad_norm=0.1, clip_grad_value=0.05),
        dict(optimizer="sgd", momentum=0.9, nesterov=True, l1=0.1, batch_size=2, epochs=2, trace=True,
             schedule="invscaling"),
        dict(optimizer="adamw", weight_decay=0.1, epochs=2, trace=True, standardize=True, loss="huber"),
        dict(model="mlp", hidden=(5,), activation="relu", loss="mae", batch_size=20, epochs=2, trace="norms",
             schedule="plateau", patience=0),
        dict(lr=1e6, epochs=5, batch_size=4, trace=True),                              # diverges
        dict(lr=1e6, epochs=5, batch_size=4, trace=True, trace_every=4, **mlp),        # diverges between rows
        dict(step_lrs=np.full(9, 0.05), epochs=3, batch_size=4, trace=True),
    ]
    for kw in cases:
        r = minireg.train(X, y, **kw)
        r.predict(X)
        r.predict(Xv[:1])
    for kw in (cases[2], dict(**mlp, optimizer="adam", batch_size=4, epochs=2, trace=True, validation=0.3,
                              early_stopping=0, clip_grad_norm=0.5), cases[8]):
        r = minireg.train(X, y, dtype="float32", **kw)
        r.predict(X)
    print("BOUNDSCHECK-OK", len(cases) + 3)
""")


def test_kernels_stay_in_bounds_under_numba_boundscheck(tmp_path):
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
           "MINIREG_NUMBA_CACHE": "1", "MINIREG_FASTMATH": "0"}
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = subprocess.run([sys.executable, "-c", _BOUNDSCHECK_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "BOUNDSCHECK-OK" in proc.stdout


def test_cached_kernels_are_dropped_when_any_kernel_source_changes(tmp_path, monkeypatch):
    """numba keys a cached function by its own file; a kernel that inlines code from another file
    would load stale machine code after that file changed. _jit.drop_stale_cache removes this
    package's cache entries when the digest of the kernel sources differs from the one stored."""
    from types import SimpleNamespace

    from minireg.kernels import _jit
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    ours = cache / "loop.train_epochs-94.py311.nbi", cache / "loop.train_epochs-94.py311.1.nbc"
    theirs = cache / "someone_else.f-3.py311.nbi"
    for f in (*ours, theirs):
        f.write_bytes(b"x")
    (cache / _jit._STAMP).write_text("an older digest")
    disp = SimpleNamespace(_cache=SimpleNamespace(_cache_path=str(cache)))
    monkeypatch.setattr(_jit, "_checked", set())
    monkeypatch.setattr(_jit, "CACHE", True)

    assert _jit.drop_stale_cache(disp) is disp
    assert not any(f.exists() for f in ours), "stale entries of minireg's kernels were kept"
    assert theirs.exists(), "an entry of another module was removed"
    assert (cache / _jit._STAMP).read_text() == _jit._sources_digest()

    # same sources (another process, or the next import): what was compiled since is kept
    for f in ours:
        f.write_bytes(b"y")
    monkeypatch.setattr(_jit, "_checked", set())
    _jit.drop_stale_cache(disp)
    assert all(f.exists() for f in ours)
    # a kernel source edited since: its digest differs, the entries go
    monkeypatch.setattr(_jit, "_checked", set())
    monkeypatch.setattr(_jit, "_digest", ["a digest of edited sources"])
    _jit.drop_stale_cache(disp)
    assert not any(f.exists() for f in ours)


_SAVE_AT_ONCE = textwrap.dedent("""
    import sys, time
    from numba.core import caching
    save_index = caching.IndexDataCacheFile._save_index

    def slow(self, overloads):  # widens the gap between reading the index and writing the data
        time.sleep(2.0)
        save_index(self, overloads)
    caching.IndexDataCacheFile._save_index = slow
    import twice_mod
    print(twice_mod.twice(int(sys.argv[1])) if sys.argv[2] == "int" else twice_mod.twice(float(sys.argv[1])))
""")


def test_two_processes_saving_one_kernel_at_once_keep_both_signatures(tmp_path):
    """numba's cache save picks the first free data file without a lock: two processes compiling
    two signatures of one kernel at once (two pytest workers, a sweep's processes) took the same
    file, and the index sent one signature to the other's machine code. _jit.serialize_saves
    locks the saves: afterwards a third process loads both signatures from the cache."""
    (tmp_path / "twice_mod.py").write_text("from minireg.kernels._jit import kernel\n\n\n@kernel\n"
                                           "def twice(x):\n    return 2 * x\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "MINIREG_NUMBA_CACHE": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))])}
    env.pop("NUMBA_DISABLE_JIT", None)
    procs = [subprocess.Popen([sys.executable, "-c", _SAVE_AT_ONCE, "3", kind], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for kind in ("int", "float")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip() for o in outs] == ["6", "6.0"]
    check = ("import twice_mod; a, b = twice_mod.twice(3), twice_mod.twice(3.0); "
             "print(a, b, sum(twice_mod.twice.stats.cache_hits.values()), len(twice_mod.twice.stats.cache_misses))")
    out = subprocess.run([sys.executable, "-c", check], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["6", "6.0", "2", "0"], out.stdout


def test_prefault_populates_trace_rows_without_touching_their_contents(monkeypatch):
    """minireg._prefault faults in the pages of rows r0..r1 on a helper thread while the kernel
    writes them: the rows it covers must then be resident, and what the writer put there (before,
    during or after) must be exactly what is read back."""
    import resource
    import threading

    from minireg import _prefault

    monkeypatch.delenv("MINIREG_PREFAULT", raising=False)
    if _prefault._madvise() is None:
        pytest.skip("madvise(MADV_POPULATE_WRITE) is not available here")
    import mmap
    rows, width = 8192, 512                       # 32 MiB of float64 per array
    # fresh anonymous mappings: np.empty may be served from heap memory a previous test touched
    arrays = [np.frombuffer(mmap.mmap(-1, rows * width * 8), np.float64).reshape(rows, width) for _ in range(2)]
    arrays[0][:8] = 7.0                           # written before: must survive populating
    written = threading.Event()

    def writer():                                 # writes while the helper populates
        for r in range(8, 64):
            arrays[0][r] = r
            arrays[1][r] = -r
        written.set()

    w = threading.Thread(target=writer)
    pf = _prefault.Prefault(arrays, 0, rows // 2)
    assert pf._thread is not None
    w.start()
    w.join()
    pf._thread.join()                             # let it finish (train() stops it when the kernel returns)
    pf.stop()
    if not _prefault._state["supported"]:
        pytest.skip("this kernel refused MADV_POPULATE_WRITE")
    assert written.is_set()
    assert pf.populated >= 2 * (rows // 2) * width * 8 - 2 * _prefault.CHUNK
    np.testing.assert_array_equal(arrays[0][:8], 7.0)
    np.testing.assert_array_equal(arrays[0][8:64, 0], np.arange(8, 64))
    np.testing.assert_array_equal(arrays[1][8:64, -1], -np.arange(8, 64))
    # the populated half takes (almost) no page faults when written; the other half does
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays[0][64:rows // 2] = 1.0                 # (other threads' faults count too: a margin)
    covered = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays[0][rows // 2:] = 1.0
    uncovered = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # (huge pages or not: 16 MiB take at least 8 faults unless populated)
    assert uncovered >= 8 and covered < uncovered / 2, (covered, uncovered)
    # too little to be worth a thread, or switched off: nothing is started
    small = _prefault.Prefault([np.empty((10, 10))], 0, 10)
    assert small._thread is None
    small.stop()
    monkeypatch.setenv("MINIREG_PREFAULT", "0")
    assert _prefault.Prefault(arrays, 0, rows)._thread is None
