"""Hidden-layer activations: value from the pre-activation, derivative from the *output*.

The derivatives use the activation's output exactly as PyTorch's backward kernels do
(``threshold_backward(grad, result, 0)``, ``tanh_backward: grad*(1-y*y)``,
``sigmoid_backward: grad*(1-y)*y``), so only outputs need to be stored.
"""
import math

from ._jit import element

IDENTITY, RELU, TANH, SIGMOID = 0, 1, 2, 3
CODES = {"identity": IDENTITY, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}


@element
def constants(c):
    """The run-dtype constants 0, ½, 1, 2 of the vector ``c`` (c[0..3]) as a tuple, for the element
    functions here and in losses.py, which index either form. Read once before a loop: read from the
    array inside it, each is loaded again after every store into an output array (which might be
    ``c``, as far as the compiler knows), and that kept the loops from vectorizing (W2's step went
    from 5.35 to 4.53-4.62 µs with this, benchmarks/RESULTS.md)."""
    return c[0], c[1], c[2], c[3]


@element
def activate(code, z, c):
    """a = f(z). relu keeps NaN as NaN (torch's ``x <= 0 ? 0 : x``), so divergence stays visible."""
    if code == RELU:
        return c[0] if z <= c[0] else z
    if code == TANH:
        return math.tanh(z)
    if code == SIGMOID:
        return c[2] / (c[2] + math.exp(-z))  # torch: 1 / (1 + exp(-x))
    return z


@element
def derivative_from_output(code, a, c):
    """f'(z) written in terms of a = f(z)."""
    if code == RELU:
        return c[0] if a <= c[0] else c[2]
    if code == TANH:
        return c[2] - a * a
    if code == SIGMOID:
        return (c[2] - a) * a
    return c[2]
