"""One pass over the training data: the finiteness and range checks of train()'s validation, and
the conversion into the run's dtype, fused, on numba's threads (minireg/_prepare.py uses them).

The rows are cut into blocks of ``ROWS`` rows, each counted by one parallel iteration into its
entry of ``counts`` (the caller's array, ``blocks(n)`` long: the kernels allocate nothing); a value
is bad when it is NaN, ±inf or beyond ``limit`` in magnitude (``|v| <= limit`` fails for NaN too).
"""
from numba import prange

from ._jit import parallel_kernel

ROWS = 2048


def blocks(n):
    return (n + ROWS - 1) // ROWS


@parallel_kernel
def count_bad(X, limit, counts):
    """How many entries of the 2-D X are not finite or beyond ``limit`` in magnitude."""
    n, d = X.shape
    for b in prange((n + ROWS - 1) // ROWS):
        k = 0
        for r in range(b * ROWS, min(n, (b + 1) * ROWS)):
            row = X[r]
            for j in range(d):
                k += 0 if abs(row[j]) <= limit else 1
        counts[b] = k
    bad = 0
    for b in range(counts.shape[0]):
        bad += counts[b]
    return bad


@parallel_kernel
def convert_count_bad(X, out, limit, counts):
    """out[...] = X cast to out's dtype; returns count_bad(X, limit), from the same pass."""
    n, d = X.shape
    for b in prange((n + ROWS - 1) // ROWS):
        k = 0
        for r in range(b * ROWS, min(n, (b + 1) * ROWS)):
            row = X[r]
            orow = out[r]
            for j in range(d):
                v = row[j]
                k += 0 if abs(v) <= limit else 1
                orow[j] = v
        counts[b] = k
    bad = 0
    for b in range(counts.shape[0]):
        bad += counts[b]
    return bad
