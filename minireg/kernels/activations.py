"""Hidden-layer activations: value from the pre-activation, derivative from the *output*.

The derivatives use the activation's output exactly as PyTorch's backward kernels do
(``threshold_backward(grad, result, 0)``, ``tanh_backward: grad*(1-y*y)``,
``sigmoid_backward: grad*(1-y)*y``), so only outputs need to be stored.
"""
import math

from ._jit import element
from .constants import ZERO, HALF, ONE, TWO

IDENTITY, RELU, TANH, SIGMOID = 0, 1, 2, 3
CODES = {"identity": IDENTITY, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}


@element
def constants(c):
    """The run-dtype constants 0, ½, 1, 2 of ``c`` as a tuple (the same indices ZERO..TWO), for the
    element functions here and in losses.py, which index either form. Read once before a loop: read
    from the array inside it, each is loaded again after every store into an output array (which
    might be ``c``, as far as the compiler knows), which keeps the loop from vectorizing."""
    return c[ZERO], c[HALF], c[ONE], c[TWO]


@element
def activate(code, z, c):
    """a = f(z). relu keeps NaN as NaN (torch's ``x <= 0 ? 0 : x``), so divergence stays visible."""
    if code == RELU:
        return c[ZERO] if z <= c[ZERO] else z
    if code == TANH:
        return math.tanh(z)
    if code == SIGMOID:
        return c[ONE] / (c[ONE] + math.exp(-z))  # torch: 1 / (1 + exp(-x))
    return z


@element
def derivative_from_output(code, a, c):
    """f'(z) written in terms of a = f(z)."""
    if code == RELU:
        return c[ZERO] if a <= c[ZERO] else c[ONE]
    if code == TANH:
        return c[ONE] - a * a
    if code == SIGMOID:
        return (c[ONE] - a) * a
    return c[ONE]
