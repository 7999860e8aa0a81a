"""The constants the kernels compute with, in the run's dtype, by name.

A float literal in a numba kernel is a float64, and it would turn a float32 run's arithmetic into
float64; so the kernels read their constants from a small array in the run's dtype, ``c``, made by
``run_constants``, at these indices.
"""
import numpy as np

ZERO, HALF, ONE, TWO = 0, 1, 2, 3
DELTA = 4  # the Huber loss's delta
CLIP_EPS = 5  # clip_grad_norm's 1e-6 in max_norm / (‖g‖ + 1e-6), as torch.nn.utils.clip_grad_norm_
N_CONSTANTS = 6


def run_constants(delta, dtype):
    """The array ``c`` of a run: c[ZERO] = 0, c[HALF] = ½, c[ONE] = 1, c[TWO] = 2, c[DELTA], c[CLIP_EPS]."""
    return np.array([0.0, 0.5, 1.0, 2.0, delta, 1e-6], dtype)
