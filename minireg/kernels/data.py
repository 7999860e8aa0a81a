"""One pass over the training data: the finiteness and range checks of train()'s validation, and
the conversion into the run's dtype, fused, on numba's threads (minireg/_prepare.py uses them).

The rows are cut into blocks of ``ROWS`` rows, each counted by one parallel iteration into its
row of ``counts`` (``counts_for(X)``: int32, one column per feature; the kernels allocate nothing).
Counting per column lets the test of a row run as vector compares and adds across it, as a plain
read of the row does (one count per block ran 10-20% slower than a read: benchmarks/RESULTS.md).
A value is bad when it is NaN, ±inf or beyond ``limit`` in magnitude (``|v| <= limit`` fails for
NaN too).
"""
import numpy as np
from numba import prange

from ._jit import element, parallel_kernel

ROWS = 2048
_ZERO, _ONE = np.int32(0), np.int32(1)


def counts_for(X):
    """The counts array of the kernels below for X."""
    return np.empty(((X.shape[0] + ROWS - 1) // ROWS, X.shape[1]), np.int32)


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
