"""train()'s data preparation with as few passes over X as it takes.

Without scaling or winsorizing, X goes to the kernels in the run's dtype as given, with no copy,
when it already has that dtype and C order; its validation (NaN/inf, and float32's range for a
float32 run) is then one parallel pass over it (kernels/data.py). Otherwise one pass converts and
checks at once (for an X in another order than C, NumPy converts and the copy is checked). Any
bad value falls back to _validate's checks, which name the rows and columns.
With scaling or winsorizing, X is taken in float64 as before (the scaler's statistics need it).
"""
import numpy as np

from . import _validate as V
from .kernels import data

_F32_MAX = float(np.finfo(np.float32).max)
# below this many values X is checked by NumPy (and converted by _validate's path), a few ms at
# most: the one-pass kernels would cost a small run's first call their compilation (seconds)
_SMALL = 1 << 20


def training_X(X, dtype, scale_kind, winsorize):
    """X validated for a run of ``dtype``: in the run's dtype (X itself where it can be) when it is not
    scaled, else a float64 copy, checked by V.scalable like before."""
    if scale_kind is not None or winsorize is not None:
        X64 = V.data_X(X, np.float64)
        V.scalable("X", X64, scale_kind, winsorize, dtype, "standardize")
        return X64
    arr = V._as_numeric("X", X)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8) or arr.ndim != 2 or 0 in arr.shape:
        return _slow(X, dtype)  # integers, half and long doubles, shape errors: the general path
    dt = np.dtype(dtype)
    same = arr.dtype == dt and arr.flags.c_contiguous
    if arr.size < _SMALL:  # NumPy's checks: small data needs no compiled (and first compiled) kernel
        return arr if same and np.isfinite(arr).all() else _slow(X, dtype)
    out = arr if same else np.empty(arr.shape, dt)
    if same:
        bad = _count_bad(arr.reshape(-1), dt)  # reshape: a view, the kernels read X as one vector
    elif arr.flags.c_contiguous:
        limit = arr.dtype.type(_F32_MAX if dt == np.float32 and arr.dtype == np.float64 else np.finfo(arr.dtype).max)
        bad = data.convert_bad_values(arr.reshape(-1), out.reshape(-1), limit)
    else:  # another order: NumPy converts, then the copy is checked (a value too large for float32 is inf there)
        with np.errstate(over="ignore", invalid="ignore"):
            out[...] = arr
        bad = _count_bad(out.reshape(-1), dt)
    if bad:
        return _slow(X, dtype)  # raises, naming the bad values
    return out


def _count_bad(flat, dt):
    return data.bad_values(flat, dt.type(np.finfo(dt).max))


def _slow(X, dtype):
    X64 = V.data_X(X, np.float64)
    V.scalable("X", X64, None, None, dtype, "standardize")
    return X64


def to_run_dtype(scaler, V_, dtype):
    """``scaler.transform(V_, dtype)`` bit for bit, with no copy for an identity scaler and an array
    already in ``dtype`` and C order (the kernels only read it), and one temporary otherwise."""
    if scaler.identity:
        return np.ascontiguousarray(V_, dtype=dtype)
    tmp = np.array(V_, dtype=np.float64, copy=True)
    if scaler.clip is not None:
        np.clip(tmp, *scaler.clip, out=tmp)
    np.subtract(tmp, scaler.center, out=tmp)
    np.divide(tmp, scaler.scale, out=tmp)
    return np.ascontiguousarray(tmp, dtype=dtype)
