"""Turn user input into checked float arrays and a resolved configuration.

Every error message of the public API lives here. Each check raises one ValueError or TypeError
that names the argument, what was given and what is allowed, before anything is compiled.
"""
import difflib
import numbers

import numpy as np

MODELS = ("linear", "mlp")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LOSSES = ("mse", "huber", "mae")
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
DTYPES = ("float64", "float32")
DEVICES = ("cpu", "cuda")
INITS = ("torch", "keras", "zeros")

# PyTorch names and PyTorch defaults (torch.optim), beta1/beta2 for Adam's betas.
OPTIMIZER_DEFAULTS = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "centered": False, "momentum": 0.0, "weight_decay": 0.0},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False},
}
_BOOL_HPARAMS = ("nesterov", "centered", "amsgrad")


def _suggest(value, allowed):
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def choice(name, value, allowed):
    """A case-insensitive name out of ``allowed`` (strings)."""
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    shown = ", ".join(repr(a) for a in allowed)
    raise ValueError(f"{name}={value!r} is not one of {shown}.{_suggest(value, allowed)}")


def trace_mode(value):
    if value is False or value is None:
        return False
    if value is True:
        return True
    if isinstance(value, str) and value.lower() == "norms":
        return "norms"
    raise ValueError(f"trace={value!r} is not one of False, True, 'norms'.")


def integer(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def real(name, value, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in the interval given ([low, high], either end optionally open)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    v = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = not np.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}.")
    return v


def flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def _as_numeric(name, a):
    if hasattr(a, "to_numpy") and hasattr(a, "dtypes"):  # pandas DataFrame / Series
        a = a.to_numpy()
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be turned into an array: {exc}") from None
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} has boolean dtype; convert it to float (e.g. {name}.astype(float)) first.")
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; minireg trains on real numbers only.")
    if kind not in "iuf":
        raise TypeError(
            f"{name} has non-numeric dtype {arr.dtype}; pass numbers (convert or encode the columns first)."
        )
    return arr


def _check_finite(name, arr):
    finite = np.isfinite(arr)
    if not finite.all():
        bad = ~finite
        if arr.ndim == 2:
            rows = np.flatnonzero(bad.any(axis=1))
            cols = np.flatnonzero(bad.any(axis=0))
            raise ValueError(
                f"{name} has {int(bad.sum())} NaN/inf value(s) in {rows.size} row(s) "
                f"(first rows {rows[:5].tolist()}) and column(s) {cols[:10].tolist()}; "
                "drop or impute them before training."
            )
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has {rows.size} NaN/inf value(s) (first rows {rows[:5].tolist()}); "
            "drop or impute them before training."
        )


def data_X(X, dtype, name="X"):
    arr = _as_numeric(name, X)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features) or 1-D (one feature); got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples); pass at least one row.")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features; pass at least one column.")
    out = _convert(name, arr, dtype)
    _check_finite(name, out)
    return out


def data_y(y, n, dtype, name="y", x_name="X"):
    arr = _as_numeric(name, y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D or of shape (n_samples, 1); got shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{x_name} has {n} samples but {name} has {arr.shape[0]}; they must have the same length.")
    out = _convert(name, arr, dtype)
    _check_finite(name, out)
    return out


def _convert(name, arr, dtype):
    """A C-contiguous copy in ``dtype`` (never a view of the caller's array)."""
    if arr.dtype.kind in "iu":
        big = np.abs(arr.astype(np.float64)).max(initial=0.0)
        if big > np.finfo(dtype).max:
            raise ValueError(f"{name} has integers too large for {np.dtype(dtype).name} (max {big:.3g}).")
    with np.errstate(over="ignore"):
        return np.array(arr, dtype=dtype, order="C", copy=True)


def hidden_sizes(hidden):
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        sizes = tuple(hidden)
    except TypeError:
        raise TypeError(f"hidden must be an int or a tuple of ints, got {hidden!r}.") from None
    if len(sizes) == 0:
        raise ValueError("hidden=() has no layer; use model='linear' for a network without hidden layers.")
    return tuple(integer("hidden[{}]".format(i), h, 1) for i, h in enumerate(sizes))


def optimizer_hparams(optimizer, given):
    defaults = OPTIMIZER_DEFAULTS[optimizer]
    out = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            every = sorted({k for d in OPTIMIZER_DEFAULTS.values() for k in d})
            known = ", ".join(sorted(defaults))
            where = (
                f" ({key!r} belongs to another optimizer)" if key in every else _suggest(key, sorted(defaults))
            )
            raise TypeError(
                f"train() got an unexpected argument {key!r} for optimizer={optimizer!r}; "
                f"its hyperparameters are: {known}.{where}"
            )
        if key in _BOOL_HPARAMS:
            out[key] = flag(key, value)
        elif key in ("beta1", "beta2"):
            out[key] = real(key, value, low=0.0, high=1.0, high_open=True)
        elif key == "alpha":
            out[key] = real(key, value, low=0.0, high=1.0)
        else:  # momentum, dampening, weight_decay, eps
            out[key] = real(key, value, low=0.0)
    if optimizer == "sgd" and out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
        raise ValueError(
            f"nesterov=True needs momentum > 0 and dampening == 0 (as torch.optim.SGD); "
            f"got momentum={out['momentum']}, dampening={out['dampening']}."
        )
    return out


def init_spec(init, layout, model):
    if isinstance(init, dict):
        missing = [n for n in layout.names if n not in init]
        extra = [k for k in init if k not in layout.shapes]
        if missing or extra:
            raise ValueError(
                f"init dict must hold exactly {list(layout.names)}; missing {missing}, unexpected {extra}."
            )
        out = {}
        for n in layout.names:
            a = _as_numeric(f"init[{n!r}]", init[n])
            if a.shape != layout.shapes[n]:
                raise ValueError(f"init[{n!r}] has shape {a.shape}; expected {layout.shapes[n]}.")
            a = np.array(a, dtype=np.float64, copy=True)
            _check_finite(f"init[{n!r}]", a)
            out[n] = a
        return out
    if not isinstance(init, str):
        raise TypeError(f"init must be one of {INITS} or a dict of arrays, got {type(init).__name__}.")
    init = choice("init", init, INITS)
    if init == "zeros" and model != "linear":
        raise ValueError(
            "init='zeros' is only allowed for model='linear': a network started at zero keeps every hidden "
            "unit identical. Use 'torch' or 'keras'."
        )
    return init


STANDARDIZE = ("zscore", "minmax", "robust")
SCHEDULE_PARAMS = {  # name -> {parameter: default (None = required)}
    None: {},
    "step": {"step_size": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "invscaling": {"power_t": 0.25},
    "cosine": {"T_max": None},  # None here: the number of epochs
    "plateau": {"patience": 10, "factor": 0.1},
}


def standardize_kind(value):
    if value is False or value is None:
        return None
    if value is True:
        return "zscore"
    return choice("standardize", value, STANDARDIZE)


def quantile_pair(name, value):
    if value is None:
        return None
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be None or a pair of quantiles (low_q, high_q), got {value!r}.") from None
    lo = real(f"{name}[0]", lo, low=0.0, high=1.0)
    hi = real(f"{name}[1]", hi, low=0.0, high=1.0)
    if not lo < hi:
        raise ValueError(f"{name}=({lo}, {hi}): the quantiles must be in increasing order, low_q < high_q.")
    return lo, hi


def lr_array(name, value):
    arr = _as_numeric(name, value)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of learning rates, got shape {arr.shape}.")
    arr = arr.astype(np.float64)
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"{name} must hold finite learning rates > 0; found {arr[~(np.isfinite(arr) & (arr > 0))][:3]}.")
    return arr


def optional_positive(name, value):
    return None if value is None else real(name, value, low=0.0, low_open=True)


def schedule_spec(schedule, given, epochs):
    """The schedule's name and its resolved parameters; a parameter given without a schedule that
    uses it is an error (it would otherwise be silently ignored)."""
    if schedule is not None:
        schedule = choice("schedule", schedule, tuple(k for k in SCHEDULE_PARAMS if k))
    wanted = SCHEDULE_PARAMS[schedule]
    for key, value in given.items():
        if value is not None and key not in wanted:
            users = [k for k, v in SCHEDULE_PARAMS.items() if key in v]
            raise ValueError(
                f"{key}={value!r} is a parameter of schedule={' or '.join(repr(u) for u in users)}, "
                f"but schedule={schedule!r}; pass the schedule too or drop {key}."
            )
    out = {}
    for key, default in wanted.items():
        value = given.get(key)
        if value is None:
            value = epochs if key == "T_max" else default
        if value is None:
            raise ValueError(f"schedule={schedule!r} needs {key} (as torch.optim.lr_scheduler does).")
        if key in ("step_size", "T_max"):
            out[key] = integer(key, value, 1)
        elif key == "patience":
            out[key] = integer(key, value, 0)
        elif key in ("gamma", "factor"):
            out[key] = real(key, value, low=0.0, high=1.0, low_open=True)
        else:
            out[key] = real(key, value, low=0.0, low_open=True)
    if schedule == "plateau" and out["factor"] >= 1.0:
        raise ValueError(f"factor must be < 1 for schedule='plateau', got {out['factor']}.")
    return schedule, out


def validation_spec(validation, d, dtype):
    """None, a fraction in (0, 1), or an (X_val, y_val) pair (checked and converted to float64)."""
    if validation is None:
        return None
    if isinstance(validation, tuple):
        if len(validation) != 2:
            raise ValueError(f"validation must be a fraction or a pair (X_val, y_val); got a tuple of {len(validation)}.")
        Xv = data_X(validation[0], np.float64, name="validation X")
        yv = data_y(validation[1], Xv.shape[0], np.float64, name="validation y", x_name="validation X")
        if Xv.shape[1] != d:
            raise ValueError(f"validation X has {Xv.shape[1]} features but X has {d}.")
        return Xv, yv
    return real("validation", validation, low=0.0, high=1.0, low_open=True, high_open=True)
