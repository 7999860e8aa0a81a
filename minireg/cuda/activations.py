"""Hidden-layer activations as CUDA device functions.

The device functions are compiled from the very Python source of the CPU kernels
(``minireg.kernels.activations``), so the formulas cannot drift apart: value from the
pre-activation, derivative from the output, constants from the run-dtype ``c`` array.
"""
from ..kernels import activations as _cpu
from ._config import device

IDENTITY, RELU, TANH, SIGMOID = _cpu.IDENTITY, _cpu.RELU, _cpu.TANH, _cpu.SIGMOID
CODES = _cpu.CODES
code_of = _cpu.code_of  # the integer code of a CPU kernel argument (kernel_arg), for the device kernels

activate = device(_cpu.activate.py_func)
derivative_from_output = device(_cpu.derivative_from_output.py_func)
