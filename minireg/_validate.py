"""Turn user input into checked float arrays and a resolved configuration.

Every error message of the public API lives here. Each check raises one ValueError or TypeError
that names the argument, what was given and what is allowed, before anything is compiled.
"""
import difflib
import functools
import itertools
import math
import numbers
import os
from collections.abc import Mapping

import numpy as np

from . import optim
from .layout import n_params
from .trace import row_bytes
from .controls import Scaler

MODELS = ("linear", "mlp")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LOSSES = ("mse", "huber", "mae", "squared_error")
OPTIMIZERS = optim.NAMES
DTYPES = ("float64", "float32")
DEVICES = ("cpu", "cuda")
INITS = ("torch", "keras", "sklearn", "zeros")
FLAVORS = ("torch", "keras", "sklearn")
# the other frameworks' names for train()'s arguments, accepted with their flavor
ALIASES = {
    "keras": {"learning_rate": "lr", "rho": "alpha", "epsilon": "eps", "beta_1": "beta1", "beta_2": "beta2"},
    "sklearn": {"learning_rate_init": "lr", "alpha": "l2", "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps",
                "nesterovs_momentum": "nesterov"},
}

OPTIMIZER_DEFAULTS = optim.DEFAULTS  # PyTorch names and defaults, beta1/beta2 for Adam's betas


def _suggest(value, allowed):
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


_F32_MAX = float(np.finfo(np.float32).max)


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
    raise ValueError(f"trace={value!r} is not one of False, True, 'norms'.{_suggest(value, ('norms',))}")


def run_dtype(value):
    """'float64' or 'float32' from a name ('float32', 'f4', 'single', ...), a numpy dtype or a type
    (np.float32, float)."""
    name = None
    if isinstance(value, str) and value.lower() in DTYPES:
        return value.lower()
    if isinstance(value, (str, type, np.dtype)):
        try:
            name = np.dtype(value).name
        except (TypeError, ValueError):
            name = None
    if name in DTYPES:
        return name
    shown = ", ".join(repr(a) for a in DTYPES)
    raise ValueError(f"dtype={value!r} is not one of {shown} (or np.float64, np.float32).{_suggest(value, DTYPES)}")


def integer(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def real(name, value, *, low=None, high=None, low_open=False, high_open=False, allow_inf=False):
    """A finite real number in the interval given ([low, high], either end optionally open);
    ``allow_inf`` also lets +inf through (for limits where inf means "none")."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    try:
        v = float(value)
    except OverflowError:  # a Python int beyond the float range
        v = math.inf if value > 0 else -math.inf
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if allow_inf and v == math.inf and high is None:
        return v
    bad = not np.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        what = "a number (inf allowed)" if allow_inf and high is None else "a finite number"
        raise ValueError(f"{name} must be {what} in {interval}, got {value!r}.")
    return v


def flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def _pandas_to_numpy(a):
    """A DataFrame's / Series' values; nullable numeric columns (Int64, Float64, ...) become float64
    with NaN for their missing values, so that they get the NaN message, not the object-dtype one."""
    arr = a.to_numpy()
    if arr.dtype != object:
        return arr
    try:
        from pandas.api.types import is_bool_dtype, is_numeric_dtype  # lazy on purpose: optional, slow
    except ImportError:
        return arr
    dtypes = list(a.dtypes) if hasattr(a.dtypes, "__iter__") else [a.dtypes]
    if dtypes and all(is_numeric_dtype(t) and not is_bool_dtype(t) for t in dtypes):
        try:
            return a.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return arr
    return arr


def _non_numeric_columns(a):
    """The names of a DataFrame's columns that are not numbers (category, text, dates, bool), with
    their dtypes; [] for anything else."""
    dtypes = getattr(a, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return []
    try:
        from pandas.api.types import is_bool_dtype, is_numeric_dtype  # lazy on purpose: optional, slow
    except ImportError:
        return []
    return [f"{col!r} ({t})" for col, t in dtypes.items() if not is_numeric_dtype(t) or is_bool_dtype(t)]


def _as_numeric(name, a):
    if hasattr(a, "to_numpy") and hasattr(a, "dtypes"):  # pandas DataFrame / Series
        bad = _non_numeric_columns(a)
        if bad:
            raise TypeError(
                f"{name} has non-numeric column(s) {', '.join(bad[:8])}{' …' if len(bad) > 8 else ''}; "
                "encode them as numbers first (e.g. pandas.get_dummies for categories, .astype(float) for bools).")
        a = _pandas_to_numpy(a)
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
        if kind == "O" and arr.size and all(
                isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in arr.flat):
            raise TypeError(
                f"{name} has dtype object (Python numbers numpy could not store as one numeric type, "
                f"e.g. integers beyond int64); convert it first, e.g. np.asarray({name}, dtype=float)."
            )
        raise TypeError(
            f"{name} has non-numeric dtype {arr.dtype}; pass numbers (convert or encode the columns first)."
        )
    return arr


def _check_finite(name, arr, action="training"):
    finite = np.isfinite(arr)
    if not finite.all():
        bad = ~finite
        if arr.ndim == 2:
            rows = np.flatnonzero(bad.any(axis=1))
            cols = np.flatnonzero(bad.any(axis=0))
            raise ValueError(
                f"{name} has {int(bad.sum())} NaN/inf value(s) in {rows.size} row(s) "
                f"(first rows {rows[:5].tolist()}) and column(s) {cols[:10].tolist()}; "
                f"drop or impute them before {action}."
            )
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has {rows.size} NaN/inf value(s) (first rows {rows[:5].tolist()}); "
            f"drop or impute them before {action}."
        )


def data_X(X, dtype, name="X", action="training"):
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
    _check_finite(name, out, action)
    return out


def data_y(y, n, dtype, name="y", x_name="X", action="training"):
    arr = _as_numeric(name, y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D or of shape (n_samples, 1); got shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{x_name} has {n} samples but {name} has {arr.shape[0]}; they must have the same length.")
    out = _convert(name, arr, dtype)
    _check_finite(name, out, action)
    return out


def _convert(name, arr, dtype):
    """A C-contiguous copy in ``dtype`` (never a view of the caller's array). Finite values too
    large for ``dtype`` (integers, long doubles) are a ValueError, not a silent inf."""
    dtype = np.dtype(dtype)
    if arr.dtype.kind in "iu" and arr.size:
        big = float(np.abs(arr.astype(np.float64)).max())
        if big > np.finfo(dtype).max:
            raise ValueError(f"{name} has integers too large for {dtype.name} (max {big:.3g}).")
    if arr.dtype == dtype:  # nothing to overflow; skip errstate (tens of µs per call)
        return np.array(arr, dtype=dtype, order="C", copy=True)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.array(arr, dtype=dtype, order="C", copy=True)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > dtype.itemsize and not np.isfinite(out).all():
        overflow = np.isfinite(arr) & ~np.isfinite(out)
        if overflow.any():
            big = np.format_float_scientific(np.abs(arr[overflow]).max(), precision=2, unique=False)
            raise ValueError(
                f"{name} has {int(overflow.sum())} value(s) too large for {dtype.name} (largest |value| "
                f"{big} > {np.finfo(dtype).max:.3g}); converting would turn them into inf. Rescale {name} first."
            )
    return out


def _abs_max(arr):
    """max |arr| of a finite float array without allocating |arr|."""
    return max(float(arr.max()), -float(arr.min()))


def fits_float32(name, arr, dtype, hint=""):
    """For a float32 run, refuse (finite, float64) values beyond float32's range: converting them
    would silently turn them into inf."""
    if dtype != "float32" or arr.size == 0:
        return
    big = _abs_max(arr)
    if big > _F32_MAX:
        count = int((np.abs(arr) > _F32_MAX).sum())
        raise ValueError(
            f"{name} has {count} value(s) beyond the float32 range (largest |value| {big:.3g} > {_F32_MAX:.3g}); "
            f"dtype='float32' would turn them into inf. Train with dtype='float64'{hint}."
        )


def scalar_fits_float32(name, value, dtype, positive=False, zero_means=""):
    """For a float32 run, refuse a hyperparameter that float32 would turn into inf, or (``positive``)
    round to 0 and so change its meaning (``zero_means`` says how)."""
    if dtype != "float32" or value is None:
        return
    if abs(value) > _F32_MAX:
        raise ValueError(
            f"{name}={value!r} is beyond the float32 range (max {_F32_MAX:.3g}): dtype='float32' would run "
            f"with {name}=inf. Use dtype='float64' or a smaller {name}."
        )
    if positive and value > 0 and np.float32(value) == 0:
        raise ValueError(
            f"{name}={value!r} rounds to 0 in float32 (the smallest positive float32 is 1.4e-45){zero_means}. "
            f"Use dtype='float64' or a larger {name}."
        )


# z-scoring squares the values: below this magnitude no scaler statistic can overflow float64
_SAFE_TO_SCALE = 1e100


def scalable(name, arr, kind, quantiles, dtype, option):
    """Check that ``arr`` survives the scaling/clipping train will apply (``kind``, ``quantiles``;
    ``option`` names the argument asking for the scaling) and then fits the run's dtype.

    Without scaling that is the float32 range check. With scaling the scaler's statistics are
    computed here, on all rows (train fits them on the training rows), but only where they can go
    wrong: values of 1e100 and more (whose squares/differences can overflow float64), and float32
    runs whose data exceed float32 or use robust scaling (a tiny MAD can blow values up).
    """
    if kind is None and quantiles is None:
        fits_float32(name, arr, dtype, hint=f", or rescale {name} (e.g. {option}=True)")
        return
    if arr.size == 0:
        return
    big = _abs_max(arr)
    if big < _SAFE_TO_SCALE and not (dtype == "float32" and (big > _F32_MAX or kind == "robust")):
        return
    what = " and ".join(([f"{option} ({kind})"] if kind is not None else [])
                        + ([f"winsorize={quantiles}"] if quantiles is not None else []))
    with np.errstate(all="ignore"):
        scaler = Scaler.fit(arr, kind, quantiles)
        out = scaler.transform(arr, np.float64)
    stats_ok = np.isfinite(scaler.center).all() and np.isfinite(scaler.scale).all() and (
        scaler.clip is None or (np.isfinite(scaler.clip[0]).all() and np.isfinite(scaler.clip[1]).all()))
    if not (stats_ok and np.isfinite(out).all()):
        raise ValueError(
            f"{name} cannot be scaled with {what}: its values (largest |value| {big:.3g}) overflow float64 "
            f"in the scaler's statistics (center/scale/quantiles), which would silently turn {name} into "
            f"zeros or NaN. Divide {name} by a power of ten first."
        )
    fits_float32(f"{name} after {what}", out, dtype)


def format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024


@functools.lru_cache(maxsize=1)
def memory_limit():
    """Bytes this process can plausibly use: the physical RAM, or a smaller cgroup (container)
    limit; None where the OS does not tell."""
    limit = None
    try:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            limit = int(text) if limit is None else min(limit, int(text))
    return limit if limit and limit > 0 else None


def check_memory(parts, limit=None):
    """Refuse a run whose buffers (``parts``: {what (and which argument sets it): bytes}) would
    need more than ``limit`` bytes (default: :func:`memory_limit`), before anything is allocated."""
    limit = memory_limit() if limit is None else limit
    need = sum(parts.values())
    if limit is None or need <= limit:
        return need
    worst = max(parts, key=parts.get)
    detail = ", ".join(f"{k}: {format_bytes(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])
                       if v >= need / 100)
    raise ValueError(
        f"this run would need about {format_bytes(need)} of memory but this machine has {format_bytes(limit)}; "
        f"most of it is the {worst}. Needed: {detail}. Nothing was allocated."
    )


def run_memory(*, n, d, n_val, sizes, batch_size, epochs, itemsize, trace, trace_every, trace_budget,
               n_state):
    """Bytes of the buffers train() allocates, by cause (Python ints: no overflow for absurd sizes).
    The trace counts at most ``trace_budget`` (a larger one is refused by its own check)."""
    P = n_params(sizes)
    bs = n if batch_size is None else min(batch_size, n)
    steps = epochs * -(-n // bs)
    parts = {
        f"parameters, gradient and optimizer state (hidden={tuple(sizes[1:-1])})": P * (8 + 8 * itemsize),
        f"activation buffers (batch_size={bs} rows x layer widths {tuple(sizes[1:])})":
            2 * bs * sum(sizes[1:]) * itemsize + max(a * b for a, b in itertools.pairwise(sizes)) * itemsize,
        f"per-epoch history (epochs={epochs})": epochs * (2 * itemsize + 32),
        "training data copies (X, y and their scaled forms)":
            (n + n_val) * (d + 1) * (itemsize + 16) + 8 * max(n, n_val) + 8 * min(n * epochs, max(n, 1 << 22)),
    }
    if trace is not False:
        rows = -(-steps // trace_every) + 1
        per_row = row_bytes(trace, P, n_state, itemsize)
        parts[f"trace (trace={trace!r}, trace_every={trace_every})"] = min(rows * per_row, trace_budget)
    return parts


def hidden_sizes(hidden):
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, (bool, np.bool_)):
        hidden = (hidden,)
    if isinstance(hidden, (str, bytes)):
        raise TypeError(f"hidden must be an int or a tuple of ints, got {hidden!r} ({type(hidden).__name__}).")
    try:
        sizes = tuple(hidden)
    except TypeError:
        raise TypeError(f"hidden must be an int or a tuple of ints, got {hidden!r}.") from None
    if len(sizes) == 0:
        raise ValueError("hidden=() has no layer; use model='linear' for a network without hidden layers.")
    return tuple(integer("hidden[{}]".format(i), h, 1) for i, h in enumerate(sizes))


def optimizer_hparams(optimizer, given, flavor="torch"):
    """The optimizer's defaults updated with ``given`` (a dict), each value checked against its module's
    LIMITS (minireg/optim/), then the module's own checks across hyperparameters."""
    defaults = optim.DEFAULTS[optimizer]
    limits = optim.BY_NAME[optimizer].LIMITS
    out = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            every = sorted({k for d in optim.DEFAULTS.values() for k in d})
            where = f" ({key!r} belongs to another optimizer)" if key in every else _suggest(key, sorted(defaults))
            raise TypeError(f"train() got an unexpected argument {key!r} for optimizer={optimizer!r}; "
                            f"its hyperparameters are: {', '.join(sorted(defaults))}.{where}")
        limit = limits[key]
        if limit is bool:
            out[key] = flag(key, value)
        else:
            out[key] = real(key, value, low=limit.low, high=limit.high, low_open=limit.low_open,
                            high_open=limit.high_open)
    optim.hyper(optimizer, out, flavor)  # raises for what the module refuses (SGD's Nesterov without momentum)
    return out


def index_array(name, value):
    """An integer array of row indices (as int64)."""
    a = np.asarray(value)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer row indices, got an array of dtype {a.dtype}.")
    return a.astype(np.int64)


def row_orders(name, order, epochs, n):
    """``order``: the rows' order for each of the run's epochs, shape (epochs, n), each row a permutation
    of range(n)."""
    if order.shape != (epochs, n):
        raise ValueError(f"{name} has shape {order.shape}; it needs one row order per epoch: shape ({epochs}, {n}) "
                         "(epochs, training rows).")
    ok = (np.sort(order, axis=1) == np.arange(n)).all(axis=1)
    if not ok.all():
        e = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"{name}[{e}] is not a permutation of the {n} training rows (each row index once).")


def init_spec(init, layout, model, dtype="float64"):
    if isinstance(init, Mapping):
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
            a = _convert(f"init[{n!r}]", a, np.float64)
            _check_finite(f"init[{n!r}]", a)
            fits_float32(f"init[{n!r}]", a, dtype)
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
        raise ValueError(f"{name} must hold finite learning rates > 0; "
                         f"found {arr[~(np.isfinite(arr) & (arr > 0))][:3]}.")
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


def validation_spec(validation, d, dtype, x_scaled=False, y_scaled=False):
    """None, a fraction in (0, 1), or an (X_val, y_val) pair (checked and converted to float64;
    unscaled arrays must also fit a float32 run's range)."""
    if validation is None:
        return None
    if isinstance(validation, (tuple, list)):
        if len(validation) != 2:
            raise ValueError(
                f"validation must be a fraction in (0, 1) or a pair (X_val, y_val); got a "
                f"{type(validation).__name__} of {len(validation)}.")
        Xv = data_X(validation[0], np.float64, name="validation X")
        yv = data_y(validation[1], Xv.shape[0], np.float64, name="validation y", x_name="validation X")
        if Xv.shape[1] != d:
            raise ValueError(f"validation X has {Xv.shape[1]} features but X has {d}.")
        if not x_scaled:
            fits_float32("validation X", Xv, dtype)
        if not y_scaled:
            fits_float32("validation y", yv, dtype)
        return Xv, yv
    if isinstance(validation, (bool, np.bool_)) or not isinstance(validation, numbers.Real):
        raise TypeError(
            f"validation must be None, a fraction in (0, 1) or a pair (X_val, y_val), got {validation!r} "
            f"({type(validation).__name__}).")
    return real("validation", validation, low=0.0, high=1.0, low_open=True, high_open=True)
