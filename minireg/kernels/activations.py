"""Hidden-layer activations: value from the pre-activation, derivative from the *output*.

The derivatives use the activation's output exactly as PyTorch's backward kernels do
(``threshold_backward(grad, result, 0)``, ``tanh_backward: grad*(1-y*y)``,
``sigmoid_backward: grad*(1-y)*y``), so only outputs need to be stored.

The CPU kernels take a model's activation as ``kernel_arg(name)``: None for the linear model (no
hidden layer), else the activation's integer code. numba compiles a kernel once per argument type,
so a linear run compiles the linear model's passes only, without any hidden-layer loop
(``by_model``). Every activation shares one type (an integer), and so one compiled network pass
(its loops chosen by the code at run time): a type per activation compiled an MLP's first run
about 1 s faster, but made the test suite, which trains every activation with every optimizer,
compile each combination again (14.6 instead of 7 minutes). The CUDA kernels take the code,
IDENTITY for the linear model (``code_of``).
"""
import math

from numba.core import types
from numba.extending import overload

from ._jit import element
from .constants import ZERO, HALF, ONE, TWO

IDENTITY, RELU, TANH, SIGMOID = 0, 1, 2, 3
CODES = {"identity": IDENTITY, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}


def kernel_arg(name):
    """What the CPU kernels take for a model's hidden activation ``name``: None for the linear model
    (``name`` None), else its code."""
    return None if name is None else CODES[name]


def code_of(act):
    """The integer code of a kernel argument: IDENTITY for None (the linear model's output)."""
    return IDENTITY if act is None else act


def by_model(act, linear, network):
    """``linear`` for the linear model (act None), else ``network``: two kernels of one signature. In
    compiled code the choice is made from act's type, so the other kernel is not compiled."""
    return linear if act is None else network


@overload(by_model, inline="always")
def _by_model_compiled(act, linear, network):
    if isinstance(act, types.NoneType):
        return lambda act, linear, network: linear
    return lambda act, linear, network: network


@overload(code_of, inline="always")
def _code_of_compiled(act):
    if isinstance(act, types.NoneType):
        return lambda act: IDENTITY
    if isinstance(act, types.Integer):
        return lambda act: act
    return None


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
