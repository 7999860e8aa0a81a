"""One pass over the training data: the finiteness and range checks of train()'s validation, and
the conversion into the run's dtype, fused, on numba's threads (minireg/_prepare.py uses them).

``bad_values(x, limit)`` and ``convert_bad_values(x, out, limit)`` take the values as one flat,
C-ordered vector (``X.reshape(-1)`` of a C-contiguous X: a view) and hand the kernels its first
values as rows of ``WIDTH`` (a view again; the last few values NumPy checks). The kernels cut the
rows into blocks of ``ROWS``, each counted by one parallel iteration into its row of ``counts``,
per column (int32; the kernels allocate nothing), so that a row's test runs as vector compares and
adds, at the pace of a plain read whatever X's own width. (One count per block of X's own rows ran
10-20% slower than a read on 100 columns; a count per column of X's own rows was slower still on
one or two: benchmarks/RESULTS.md.) A value is bad when it is NaN, ±inf or beyond ``limit`` in
magnitude (``|v| <= limit`` fails for NaN too).
"""
import numpy as np
from numba import prange

from ._jit import element, parallel_kernel

WIDTH = 128
ROWS = 256
_ZERO, _ONE = np.int32(0), np.int32(1)


def bad_values(x, limit):
    """How many values of the flat x are not finite or beyond ``limit`` in magnitude."""
    rows, rest = _as_rows(x)
    return count_bad(rows, limit, _counts_for(rows)) + _numpy_count(rest, limit)


def convert_bad_values(x, out, limit):
    """out[:] = x cast to out's dtype (both flat); returns bad_values(x, limit), from the same pass."""
    rows, rest = _as_rows(x)
    bad = convert_count_bad(rows, _as_rows(out)[0], limit, _counts_for(rows))
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 is counted either way
        out[rows.size:] = rest
    return bad + _numpy_count(rest, limit)


def _as_rows(x):
    whole = x.shape[0] // WIDTH * WIDTH
    return x[:whole].reshape(-1, WIDTH), x[whole:]


def _counts_for(rows):
    return np.empty(((rows.shape[0] + ROWS - 1) // ROWS, WIDTH), np.int32)


def _numpy_count(rest, limit):
    with np.errstate(invalid="ignore"):
        return int(np.count_nonzero(~(np.abs(rest) <= limit)))


@element
def _total(counts):
    bad = 0
    for b in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            bad += counts[b, j]
    return bad


@parallel_kernel
def count_bad(X, limit, counts):
    """How many entries of the 2-D X are not finite or beyond ``limit`` in magnitude."""
    n, d = X.shape
    for b in prange((n + ROWS - 1) // ROWS):
        k = counts[b]
        k[:] = 0
        for r in range(b * ROWS, min(n, (b + 1) * ROWS)):
            row = X[r]
            for j in range(d):
                k[j] += _ZERO if abs(row[j]) <= limit else _ONE
    return _total(counts)


@parallel_kernel
def convert_count_bad(X, out, limit, counts):
    """out[...] = X cast to out's dtype; returns count_bad(X, limit), from the same pass."""
    n, d = X.shape
    for b in prange((n + ROWS - 1) // ROWS):
        k = counts[b]
        k[:] = 0
        for r in range(b * ROWS, min(n, (b + 1) * ROWS)):
            row = X[r]
            orow = out[r]
            for j in range(d):
                v = row[j]
                k[j] += _ZERO if abs(v) <= limit else _ONE
                orow[j] = v
    return _total(counts)
