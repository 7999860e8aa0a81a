"""Fuzzing train(), TrainResult.predict and MiniRegressor with hypothesis.

Every generated case must either return a result whose trace, parameters and history are consistent
with each other and with the arguments, or raise one ValueError/TypeError with a message — nothing
else: no other exception, no crash, no warning other than one DivergenceWarning per diverged run,
and the caller's arrays untouched.

Profiles (registered here): "dev" (300 examples, the default), "ci" (2,000 examples, derandomized so
that a failure reproduces; chosen when the CI environment variable is set) and "thorough" (20,000;
``MINIREG_FUZZ_PROFILE=thorough``, which also picks any other profile by name). Data stay tiny
(n <= 12 rows, d <= 3 features, hidden <= (4, 4), epochs <= 3) so that a case costs about a
millisecond: the kernels compile once (warmed below for float64 and float32) and are cached on disk.
"""
import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import minireg
from minireg import _validate as V

# "ci" replaces hypothesis' built-in profile of that name (which hypothesis itself loads when CI is
# set); the tests below take their settings from these profiles explicitly.
_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("ci", max_examples=2000, derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", max_examples=300, **_COMMON)
settings.register_profile("thorough", max_examples=20000, **_COMMON)
PROFILE = os.environ.get("MINIREG_FUZZ_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
FUZZ = settings.get_profile(PROFILE)
FUZZ_SMALL = settings(FUZZ, max_examples=max(50, FUZZ.max_examples // 5))
FUZZ_LIGHT = settings(FUZZ, max_examples=max(20, FUZZ.max_examples // 20))

SPECIALS = [np.nan, np.inf, -np.inf, 1e150, -1e200, 1e300, 1e-300, -0.0, 5e-324, 3.5e38, 1e39, -1e20]
OPTIMIZER_PARAMS = {k: set(v) for k, v in V.OPTIMIZER_DEFAULTS.items()}


@pytest.fixture(scope="module", autouse=True)
def warm_kernels():
    """Compile (or load from numba's disk cache) every kernel signature the fuzzer reaches, for
    float64 and float32, before hypothesis starts timing examples."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(9, 2)), rng.normal(size=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dtype in ("float64", "float32"):
            for kw in (dict(), dict(model="mlp", hidden=(3, 2), trace=True, batch_size=4, validation=0.3,
                                    early_stopping=1, optimizer="adam"),
                       dict(trace="norms", step_lrs=np.full(6, 0.1), batch_size=4, epochs=2, lr=1e9)):
                r = minireg.train(X, y, dtype=dtype, **{"epochs": 2, **kw})
                r.predict(X)


# --------------------------------------------------------------------------------------------------
# strategies


def _strategy(v):
    return v if isinstance(v, st.SearchStrategy) else st.sampled_from(v)


_INDEX = {k: st.integers(0, k - 1) for k in range(1, 65)}


class _Draw:
    """Helpers around hypothesis' draw: values that are mostly valid, sometimes (in a "dirty" case,
    one value in eight) invalid, and keyword arguments that are mostly left at their defaults.
    Strategies are built once (module level) and each keyword costs one draw for "whether and
    which kind" plus one for the value: generating a case stays cheaper than running it."""

    def __init__(self, draw, dirty):
        self.draw, self.dirty = draw, dirty

    def pick(self, good, bad):
        bad_now = self.dirty and self.draw(_INDEX[8]) == 0
        return self.draw(_strategy(bad if bad_now else good))

    def maybe(self, kwargs, name, good, bad, p=3):
        """Set kwargs[name] with probability 1/p (to an invalid value in one case of eight if dirty)."""
        r = self.draw(_INDEX[8 * p])
        if r < 8:
            kwargs[name] = self.draw(_strategy(bad if self.dirty and r == 0 else good))


def _container(draw, a, kind):
    """The array ``a`` (2-D X or 1-D y) in another container, layout or dtype."""
    if kind == "array":
        return a
    if kind == "list":
        return a.tolist()
    if kind == "pandas" and a.ndim <= 2:
        pd = pytest.importorskip("pandas")
        return pd.DataFrame(a) if a.ndim == 2 else pd.Series(a)
    if kind == "pandas":
        return a.tolist()
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "non-contiguous":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if kind == "read-only":
        a = a.copy()
        a.setflags(write=False)
        return a
    if kind == "reversed":
        return a[::-1]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # NaN/inf cast to int: part of the fuzz, not of the test
        return a.astype({"float32": np.float32, "float16": np.float16, "int": np.int64, "uint8": np.uint8,
                         "bool": bool, "object": object, "complex": complex, "str": str}[kind])


GOOD_KINDS = st.sampled_from(["array"] * 8 + ["list", "pandas", "fortran", "non-contiguous", "read-only",
                                              "reversed", "float32", "int"])
BAD_KINDS = st.sampled_from(["float16", "uint8", "bool", "object", "complex", "str"])
_X_SCALE = (st.sampled_from([1.0, 1.0, 1.0, 0.01, 100.0]), st.sampled_from([1e20, 1e150, 1e-200, 1e39]))
_Y_NOISE = (st.sampled_from([0.1, 1.0, 10.0]), st.sampled_from([1e200, 1e40, 0.0]))
_SHAPES = (st.just("ok"), st.sampled_from(["1-D", "3-D", "empty", "no-features", "short-y", "y-2-columns",
                                           "y-column"]))
_SPECIAL = st.sampled_from(SPECIALS)
_SEED = st.integers(0, 2 ** 32 - 1)


@st.composite
def data(draw, dirty):
    h = _Draw(draw, dirty)
    n, d = draw(_INDEX[12]) + 1, draw(_INDEX[3]) + 1
    rng = np.random.default_rng(draw(_SEED))
    X = rng.normal(size=(n, d)) * h.pick(*_X_SCALE)
    y = X @ rng.normal(size=d) + rng.normal(size=n) * h.pick(*_Y_NOISE)
    for a in (X, y):
        if dirty and draw(_INDEX[4]) == 0:
            flat = a.reshape(-1)
            for _ in range(draw(_INDEX[3]) + 1):
                flat[draw(_INDEX[flat.size])] = draw(_SPECIAL)
    shape = h.pick(*_SHAPES)
    if shape == "1-D" or (shape == "ok" and d == 1 and draw(_INDEX[6]) == 0):
        X = X[:, 0]
    elif shape == "3-D":
        X = X[:, :, None]
    elif shape == "empty":
        X, y = X[:0], y[:0]
    elif shape == "no-features":
        X = X[:, :0]
    elif shape == "short-y":
        y = y[:-1]
    elif shape == "y-2-columns":
        y = np.c_[y, y]
    elif shape == "y-column":
        y = y[:, None]
    X = _container(draw, X, h.pick(GOOD_KINDS, BAD_KINDS))
    y = _container(draw, y, h.pick(GOOD_KINDS, BAD_KINDS))
    return X, y, (n, d)


_INIT_FLAWS = (st.sampled_from(["none"] * 3 + ["lists", "float32", "int"]),
               st.sampled_from(["missing", "extra", "shape", "nan", "huge", "str"]))


def _init_dict(draw, h, sizes):
    names_shapes = minireg.Layout(sizes).shapes
    rng = np.random.default_rng(draw(_INDEX[64]))
    init = {k: rng.uniform(-1, 1, s) for k, s in names_shapes.items()}
    flaw = h.pick(*_INIT_FLAWS)
    k = sorted(init)[draw(_INDEX[len(init)])]
    if flaw == "lists":
        init = {k: v.tolist() for k, v in init.items()}
    elif flaw == "float32":
        init[k] = init[k].astype(np.float32)
    elif flaw == "int":
        init[k] = np.round(init[k]).astype(np.int64)
    elif flaw == "missing":
        del init[k]
    elif flaw == "extra":
        init["W9"] = np.zeros(1)
    elif flaw == "shape":
        init[k] = init[k].reshape(-1)[:-1] if init[k].size > 1 else np.zeros((1, 1, 1))
    elif flaw == "nan":
        init[k].reshape(-1)[0] = np.nan
    elif flaw == "huge":
        init[k].reshape(-1)[0] = 1e39
    elif flaw == "str":
        init[k] = init[k].astype(str)
    return init


def _s(good, bad):
    return _strategy(good), _strategy(bad)


_UNIT = st.floats(0, 0.99)
# keyword -> (valid values, invalid values); drawn in this order, each with probability 1/p
HPARAMS = {
    "momentum": _s(_UNIT, [-0.1, math.nan]), "dampening": _s(_UNIT, [-1.0]),
    "weight_decay": _s(st.floats(0, 0.1), [math.inf, 1e39]), "alpha": _s(_UNIT, [1.5]),
    "eps": _s([1e-8, 1e-3, 0.0], [-1e-8, 1e300]), "beta1": _s(_UNIT, [1.0, -0.1]),
    "beta2": _s(_UNIT, [1.0, math.nan]), "nesterov": _s([False, False, True], ["yes", 1]),
    "centered": _s(st.booleans(), [None]), "amsgrad": _s(st.booleans(), [0]),
}
MODEL = _s(["linear", "mlp", "MLP"], ["mpl", None, 3])
HIDDEN = _s(st.one_of(st.integers(1, 4), st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple)),
            [0, -1, (), (2, 0), "4", 2.5, None, (True,)])
OPTIMIZER = _s(["sgd", "rmsprop", "adam", "adamw", "SGD"], ["adm", None])
EPOCHS = _s(st.integers(1, 3), [0, -1, 2.0, None, True])
VALIDATION = _s([None, 0.25, 0.5, "pair", "pair-list"],
                [1.0, 0.0, "0.2", "pair-nan", "pair-wrong-d", "pair-short-y", "triple"])
SCHEDULE = _s([None, None, "step", "exponential", "invscaling", "cosine", "plateau", "step_lrs"],
              ["cosin", "step-without-size", "orphan-gamma", "plateau-factor-1", "step_lrs-wrong",
               "step_lrs-with-schedule", "step_lrs-negative"])
KWARGS_A = {  # (name, p, good, bad), before the optimizer
    "activation": (3, *_s(["relu", "tanh", "sigmoid", "identity"], ["rleu", None])),
    "loss": (3, *_s(["mse", "huber", "mae", "Huber"], ["l2", None])),
    "delta": (3, *_s(st.floats(0.01, 10), [0, -1.0, math.nan, math.inf, "1", True, 1e-300, 1e300])),
}
KWARGS_B = {
    "lr": (2, *_s(st.one_of(st.floats(1e-4, 2.0), st.sampled_from([1e3, 1e10, 1e30, 1e200, 1e300])),
                  [0, -1, math.nan, math.inf, "0.1", None, 1e-50, 1e40, 10 ** 400])),
    "batch_size": (2, *_s(st.one_of(st.none(), st.integers(1, 13), st.just(np.int32(3))), [0, -2, 2.5, True, "4"])),
    "shuffle": (3, *_s(st.booleans(), ["yes", 1, None])),
    "seed": (3, *_s(st.one_of(st.integers(0, 2 ** 32), st.none()), [-1, 1.5, "0"])),
    "dtype": (2, *_s(["float64", "float32", np.float32, np.float64, "f4"], ["float16", None, int, "complex64"])),
    "trace": (2, *_s([False, True, "norms", None, "NORMS"], ["all", 1])),
    "trace_every": (3, *_s(st.integers(1, 4), [0, -1, 1.5])),
    "trace_budget": (6, *_s([2 ** 30, math.inf, 3000], [0, -1, math.nan])),
    "standardize": (3, *_s([False, True, "zscore", "minmax", "robust", None], ["std", 1])),
    "standardize_y": (3, *_s(st.booleans(), [1, "yes"])),
    "winsorize": (5, *_s(st.one_of(st.none(), st.tuples(st.floats(0, 0.4), st.floats(0.6, 1))),
                         [(0.9, 0.1), (0, 1.5), 0.1, (math.nan, 0.5)])),
}
WINSORIZE_Y = _s(st.booleans(), ["x"])
EARLY = (3, *_s(st.one_of(st.none(), st.integers(0, 2)), [-1, 1.5]))
MIN_DELTA = _s([0.0, 1e-3], [-1.0, math.nan])
RESTORE = _s(st.booleans(), ["no"])
CLIP_NORM = _s(st.one_of(st.none(), st.floats(1e-3, 10)), [0, -1, 1e-60, math.inf])
CLIP_VALUE = _s(st.one_of(st.none(), st.floats(1e-3, 10)), [0, -1, 1e-60])
L1 = _s([0.0, 0.01, 0.1], [-0.1, math.nan])
INIT_LINEAR = _s(["torch", "keras", "zeros", "dict"], ["torh", 3])
INIT_MLP = _s(["torch", "keras", "dict"], ["zeros", None])
PROGRESS = _s([None, False], ["x"])
DEVICE = _s(["cpu", "CPU"], ["gpu"])
FOREIGN = st.sampled_from(["momentun", "beta1", "centered", "betas", "lr_decay"])
_F01 = st.floats(0.1, 1.0)
_F0109 = st.floats(0.1, 0.9)


@st.composite
def train_cases(draw):
    dirty = draw(_INDEX[3]) == 0
    h = _Draw(draw, dirty)
    X, y, (n, d) = draw(data(dirty))
    kw = {}
    model = h.pick(*MODEL)
    if draw(st.booleans()):
        kw["model"] = model
    mlp = str(model).lower() == "mlp"
    if mlp:
        kw["hidden"] = h.pick(*HIDDEN)
    for name, (p, good, bad) in KWARGS_A.items():
        h.maybe(kw, name, good, bad, p)
    if draw(_INDEX[4]):
        kw["optimizer"] = h.pick(*OPTIMIZER)
    opt = str(kw.get("optimizer", "sgd")).lower()
    for name in sorted(OPTIMIZER_PARAMS.get(opt, ())):
        h.maybe(kw, name, *HPARAMS[name], p=4)
    if kw.get("nesterov") is True and not dirty:  # torch's rule, so that clean cases can use nesterov
        kw.update(momentum=0.5, dampening=0.0)
    if dirty and draw(_INDEX[10]) == 0:
        kw[draw(FOREIGN)] = 0.5
    kw["epochs"] = h.pick(*EPOCHS)
    if isinstance(kw["epochs"], int) and draw(_INDEX[10]) == 0:
        kw["epochs"] = np.int64(kw["epochs"])
    for name, (p, good, bad) in KWARGS_B.items():
        h.maybe(kw, name, good, bad, p)
    if "winsorize" in kw or dirty:
        h.maybe(kw, "winsorize_y", *WINSORIZE_Y)
    validation = h.pick(*VALIDATION)
    if validation is not None and draw(_INDEX[3]) == 0:
        if isinstance(validation, str) and validation.startswith("pair") or validation == "triple":
            rng = np.random.default_rng(1)
            Xv, yv = rng.normal(size=(3, d)), rng.normal(size=3)
            if validation == "pair-nan":
                Xv[1, 0] = np.nan
            elif validation == "pair-wrong-d":
                Xv = rng.normal(size=(3, d + 1))
            elif validation == "pair-short-y":
                yv = yv[:2]
            kw["validation"] = ([Xv, yv] if validation == "pair-list" else (Xv, yv, yv) if validation == "triple"
                                else (Xv, yv))
        else:
            kw["validation"] = validation
    h.maybe(kw, "early_stopping", *EARLY[1:], p=EARLY[0])
    if "early_stopping" in kw or dirty:
        h.maybe(kw, "min_delta", *MIN_DELTA)
        h.maybe(kw, "restore_best", *RESTORE)
    h.maybe(kw, "clip_grad_norm", *CLIP_NORM, p=4)
    h.maybe(kw, "clip_grad_value", *CLIP_VALUE, p=4)
    if not mlp or dirty:
        h.maybe(kw, "l1", *L1, p=4)
    schedule = h.pick(*SCHEDULE)
    if schedule == "step":
        kw.update(schedule="step", step_size=draw(_INDEX[3]) + 1, gamma=draw(_F01))
    elif schedule == "exponential":
        kw.update(schedule="exponential", gamma=draw(_F01))
    elif schedule == "invscaling":
        kw.update(schedule="invscaling", power_t=draw(_F01))
    elif schedule == "cosine":
        kw.update(schedule="cosine", T_max=draw(_INDEX[4]) + 1)
    elif schedule == "plateau":
        kw.update(schedule="plateau", patience=draw(_INDEX[3]), factor=draw(_F0109))
    elif schedule == "cosin":
        kw["schedule"] = "cosin"
    elif schedule == "step-without-size":
        kw["schedule"] = "step"
    elif schedule == "orphan-gamma":
        kw["gamma"] = 0.5
    elif schedule == "plateau-factor-1":
        kw.update(schedule="plateau", factor=1.0)
    elif schedule is not None and schedule.startswith("step_lrs"):
        steps = max(1, _expected_steps(_n_rows(X), kw) or 1)
        lrs = np.geomspace(1e-3, 1.0, steps)
        if schedule == "step_lrs-wrong":
            lrs = lrs[:-1] if steps > 1 else np.r_[lrs, lrs]
        elif schedule == "step_lrs-with-schedule":
            kw["schedule"] = "exponential"
            kw["gamma"] = 0.5
        elif schedule == "step_lrs-negative":
            lrs[0] = -1.0
        kw["step_lrs"] = lrs
    h.maybe(kw, "init", *(INIT_MLP if mlp else INIT_LINEAR), p=4)
    if kw.get("init") == "dict":
        hid = kw.get("hidden", ())
        hid = (hid,) if isinstance(hid, int) and not isinstance(hid, bool) else hid
        ok = mlp and isinstance(hid, tuple) and hid and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hid)
        kw["init"] = _init_dict(draw, h, (d, *(hid if ok else ()), 1))
    h.maybe(kw, "progress", *PROGRESS, p=6)
    h.maybe(kw, "device", *DEVICE, p=8)
    return X, y, kw


def _n_rows(X):
    return len(X) if hasattr(X, "__len__") else 0


def _expected_steps(n_all, kw):
    """Steps of a run with these (assumed valid) arguments; None where that cannot be told."""
    try:
        n = n_all
        val = kw.get("validation")
        if isinstance(val, float):
            n = n_all - min(max(1, int(round(val * n_all))), n_all - 1)
        bs = kw.get("batch_size")
        bs = n if bs is None else min(int(bs), n)
        return int(kw.get("epochs", 100)) * -(-n // bs)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


# --------------------------------------------------------------------------------------------------
# the checks


def _snapshot(v):
    if hasattr(v, "to_numpy"):
        return ("pandas", v.copy(deep=True))
    if isinstance(v, list):
        return ("list", repr(v))
    if isinstance(v, dict):
        return ("dict", {k: _snapshot(a) for k, a in v.items()})
    if isinstance(v, (tuple,)):
        return ("tuple", [_snapshot(a) for a in v])
    if isinstance(v, np.ndarray) and v.dtype == object:  # NaN != NaN inside object arrays
        return ("list", repr(v.tolist()))
    if isinstance(v, np.ndarray):
        return ("array", v.copy(), v.flags.writeable, v.strides)
    return ("other", v)


def _same(v, snap):
    kind = snap[0]
    if kind == "pandas":
        assert v.equals(snap[1])
    elif kind == "list":
        assert repr(v.tolist() if isinstance(v, np.ndarray) else v) == snap[1]
    elif kind == "dict":
        assert list(v) == list(snap[1])
        for k in v:
            _same(v[k], snap[1][k])
    elif kind == "tuple":
        for a, s in zip(v, snap[1], strict=True):
            _same(a, s)
    elif kind == "array":
        np.testing.assert_array_equal(v, snap[1], strict=True)
        assert (v.flags.writeable, v.strides) == snap[2:]


def _call(fn, *args, strict=True, **kwargs):
    """(result, None, warnings) or (None, the ValueError/TypeError, warnings); any other exception
    fails the test. ``strict``: exactly ValueError or TypeError, not a subclass (LinAlgError, ...)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out, err = fn(*args, **kwargs), None
        except (ValueError, TypeError) as exc:
            out, err = None, exc
    if err is not None:
        assert str(err).strip(), f"{type(err).__name__} without a message"
        assert not strict or type(err) in (ValueError, TypeError), type(err)
    return out, err, [w for w in caught]


def _check_run(r, X, kw, caught):
    cfg = r.config
    dtype = np.dtype(cfg["dtype"])
    note(f"config: steps_per_epoch={cfg['steps_per_epoch']} n={cfg['n_samples']} diverged_at={r.diverged_at}")
    # warnings: exactly one DivergenceWarning per diverged run, nothing else
    cats = [w.category for w in caught]
    assert all(c is minireg.DivergenceWarning for c in cats), [str(w.message) for w in caught]
    assert len(cats) == int(r.diverged)
    # sizes the arguments imply
    n_all = _n_rows(X)
    val = kw.get("validation")
    n = n_all - min(max(1, int(round(val * n_all))), n_all - 1) if isinstance(val, float) else n_all
    bs = n if kw.get("batch_size") is None else min(int(kw["batch_size"]), n)
    spe = -(-n // bs)
    epochs = int(kw.get("epochs", 100))
    assert (cfg["n_samples"], cfg["effective_batch_size"], cfg["steps_per_epoch"]) == (n, bs, spe)
    # steps and history
    if r.diverged:
        assert r.n_steps == r.diverged_at + 1 and r.stopped_epoch is None
        done = r.diverged_at // spe
    elif r.stopped_epoch is not None:
        assert kw.get("early_stopping") is not None
        done = r.stopped_epoch + 1
        assert r.n_steps == done * spe
    else:
        done = epochs
        assert r.n_steps == epochs * spe
    assert r.n_steps <= epochs * spe
    for key, col in r.history.items():
        assert col.shape == (done,), key
    assert ("val_loss" in r.history) == (val is not None)
    # parameters
    assert r.theta.dtype == dtype and r.theta.shape == (r.layout.size,)
    assert list(r.params) == list(r.layout.names)
    assert r.diverged or np.isfinite(r.theta).all()
    # trace
    mode = V.trace_mode(kw.get("trace", False))
    tr = r.trace
    if mode is False:
        assert tr is None
        return
    every = int(kw.get("trace_every", 1))
    steps = list(range(0, r.n_steps, every))
    if r.diverged and r.diverged_at % every:
        steps.append(r.diverged_at)
    np.testing.assert_array_equal(tr.step, steps)
    assert len(tr) == len(steps)
    np.testing.assert_array_equal(tr.epoch, np.asarray(tr.step) // spe)
    if r.diverged:
        assert tr.step[-1] == r.diverged_at
        assert not np.isfinite(tr.loss[-1]) or not np.isfinite(r.theta).all()
    assert np.isfinite(tr.loss[:-1] if r.diverged else tr.loss).all()
    assert tr.loss.dtype == dtype
    if kw.get("clip_grad_norm") is None and kw.get("clip_grad_value") is None:
        assert not tr.clipped.any()
    if kw.get("schedule") is None and kw.get("step_lrs") is None:
        assert (tr.lr == dtype.type(cfg["lr"])).all()
    if kw.get("step_lrs") is not None:
        np.testing.assert_array_equal(tr.lr, np.asarray(kw["step_lrs"])[np.asarray(tr.step)].astype(dtype))
    if mode == "norms":
        assert tr.params is None and tr.grad is None and tr.state == {}
        return
    P = r.layout.size
    for block in (tr.params, tr.grad, tr.update, *tr.state.values()):
        assert block.shape == (len(steps), P) and block.dtype == dtype
    assert set(tr.state) <= {"momentum_buffer", "square_avg", "grad_avg", "exp_avg", "exp_avg_sq",
                             "max_exp_avg_sq"}
    assert np.isfinite(tr.params).all()
    with np.errstate(invalid="ignore", over="ignore"):
        if every == 1:  # consecutive rows are consecutive steps: the update is exactly the change
            np.testing.assert_array_equal(tr.update[:-1], tr.params[1:] - tr.params[:-1])
        restored = kw.get("early_stopping") is not None and kw.get("restore_best", True) and not r.diverged
        if tr.step[-1] == r.n_steps - 1 and not restored:
            np.testing.assert_array_equal(tr.update[-1], r.theta - tr.params[-1])
    one = tr.step(int(tr.step[-1]))
    assert set(one["params"]) == set(r.layout.names)


@FUZZ
@given(train_cases())
def test_train_returns_a_consistent_result_or_one_clear_error(case):
    X, y, kw = case
    note(f"kwargs: {kw!r}")
    snaps = [_snapshot(v) for v in (X, y, kw.get("init"), kw.get("validation"), kw.get("step_lrs"))]
    r, err, caught = _call(minireg.train, X, y, **kw)
    for v, s in zip((X, y, kw.get("init"), kw.get("validation"), kw.get("step_lrs")), snaps, strict=True):
        _same(v, s)  # inputs are never modified, whether the call succeeded or not
    if err is not None:
        note(f"error: {type(err).__name__}: {err}")
        event(f"{type(err).__name__}: {' '.join(str(err).split()[:2])}")
        assert caught == [], [str(w.message) for w in caught]
        return
    event("diverged" if r.diverged else "trained")
    _check_run(r, X, kw, caught)
    pred, err, caught = _call(r.predict, X)
    assert err is None, err
    assert caught == [], [str(w.message) for w in caught]
    assert pred.shape == (_n_rows(X),) and pred.dtype == r.theta.dtype


# --------------------------------------------------------------------------------------------------
# predict on fixed models with fuzzed X


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        return {
            "linear-scaled": minireg.train(X, y, standardize=True, standardize_y=True, epochs=3),
            "mlp-float32": minireg.train(X, y, model="mlp", hidden=(4, 4), activation="tanh", dtype="float32",
                                         standardize="robust", epochs=3),
            "mlp-relu": minireg.train(X, y, model="mlp", hidden=(2,), epochs=3, winsorize=(0.1, 0.9)),
            "diverged": minireg.train(X, y * 1e200, epochs=3),
        }


@st.composite
def predict_inputs(draw):
    n = draw(st.integers(0, 6))
    d = draw(st.sampled_from([3, 3, 3, 0, 1, 2, 4]))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    X = rng.normal(size=(n, d)) * draw(st.sampled_from([1.0, 1.0, 1e30, 1e45, 1e300, 1e-300]))
    if X.size and draw(st.integers(0, 3)) == 0:
        X.reshape(-1)[draw(st.integers(0, X.size - 1))] = draw(st.sampled_from(SPECIALS))
    shape = draw(st.sampled_from(["ok"] * 5 + ["1-D", "3-D"]))
    if shape == "1-D":
        X = X.reshape(-1)
    elif shape == "3-D":
        X = X[..., None]
    kind = draw(st.one_of(GOOD_KINDS, BAD_KINDS))
    return _container(draw, X, kind), draw(st.sampled_from(["linear-scaled", "mlp-float32", "mlp-relu",
                                                            "diverged"]))


@FUZZ_SMALL
@given(predict_inputs())
def test_predict_returns_predictions_or_one_clear_error(models, case):
    X, name = case
    r = models[name]
    snap = _snapshot(X)
    pred, err, caught = _call(r.predict, X)
    _same(X, snap)
    assert caught == [], [str(w.message) for w in caught]
    if err is not None:
        return
    A = np.asarray(X, dtype=np.float64)
    assert A.ndim in (1, 2) and np.isfinite(A).all() and A.shape[0] > 0
    assert pred.shape == (A.shape[0],) and pred.dtype == r.theta.dtype
    if name == "linear-scaled" and np.abs(A).max() < 1e30:
        W, b = r.params["W1"], r.params["b1"]
        z = (A - r.x_scaler.center) / r.x_scaler.scale
        expected = (z @ W + b)[:, 0] * r.y_scaler.scale + r.y_scaler.center
        np.testing.assert_allclose(pred, expected, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# the scikit-learn estimator, lightly


@st.composite
def estimator_cases(draw):
    dirty = draw(st.integers(0, 2)) == 0
    h = _Draw(draw, dirty)
    X, y, _ = draw(data(dirty))
    params = {"epochs": h.pick(st.integers(1, 3), [0, 1.5])}
    h.maybe(params, "model", ["linear", "mlp"], ["mpl"])
    h.maybe(params, "hidden", st.integers(1, 4), [0])
    h.maybe(params, "optimizer", ["sgd", "adam", "rmsprop"], ["adm"])
    h.maybe(params, "lr", st.floats(1e-4, 1.0), [-1.0, 1e10])
    h.maybe(params, "batch_size", st.one_of(st.none(), st.integers(1, 5)), [0])
    h.maybe(params, "dtype", ["float64", "float32"], ["float16"])
    h.maybe(params, "trace", [False, True, "norms"], ["all"])
    h.maybe(params, "optimizer_params", [None, {}], [{"momentun": 0.9}, {"lr": 0.1}, [1]])
    return X, y, params


@FUZZ_LIGHT
@given(estimator_cases())
def test_estimator_fits_and_predicts_or_gives_one_clear_error(case):
    from minireg import MiniRegressor
    X, y, params = case
    note(f"params: {params!r}")
    m = MiniRegressor(**params)
    fitted, err, caught = _call(m.fit, X, y, strict=False)
    if err is not None:
        return
    cats = {w.category.__name__ for w in caught}
    assert cats <= {"DivergenceWarning", "DataConversionWarning"}, [str(w.message) for w in caught]
    pred, err, caught = _call(fitted.predict, X)
    assert err is None, err
    assert pred.shape == (_n_rows(X),)
    assert {w.category.__name__ for w in caught} <= {"DivergenceWarning"}
    if fitted.diverged_:
        assert np.isnan(pred).all()
