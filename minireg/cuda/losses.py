"""Regression losses (per-row value and derivative) as CUDA device functions.

Compiled from the Python source of the CPU kernels (``minireg.kernels.losses``): torch's MSELoss,
HuberLoss(delta) and L1Loss per row; the 1/B of the mean is applied by the caller.
"""
from ..kernels import losses as _cpu
from ._config import device

MSE, HUBER, MAE = _cpu.MSE, _cpu.HUBER, _cpu.MAE
CODES = _cpu.CODES

loss_of_residual = device(_cpu.loss_of_residual.py_func)
dloss_of_residual = device(_cpu.dloss_of_residual.py_func)
