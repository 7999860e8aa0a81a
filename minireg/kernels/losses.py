"""Regression losses with mean reduction, as torch's MSELoss, HuberLoss(delta) and L1Loss.

With r = pred - y over a batch of B rows (one output, so numel = B):
  mse    l = r²                                         dL/dpred = (2/B)·r
  huber  l = ½r² if |r| < δ else δ(|r| − ½δ)            dL/dpred = (1/B)·clip(r, −δ, δ)
  mae    l = |r|                                        dL/dpred = (1/B)·sign(r), exactly 0 at r = 0
  squared_error  l = ½r²   (scikit-learn's, half of mse)  dL/dpred = (1/B)·r
(torch aten/src/ATen/native/cpu/PointwiseOpsKernel.cpp: mse_backward, huber_backward; l1 via sgn.)
"""
from ._jit import element
from .constants import ZERO, HALF, ONE, TWO

MSE, HUBER, MAE, SQUARED_ERROR = 0, 1, 2, 3
CODES = {"mse": MSE, "huber": HUBER, "mae": MAE, "squared_error": SQUARED_ERROR}


@element
def loss_of_residual(code, r, delta, c):
    """Per-row loss l(r)."""
    if code == MSE:
        return r * r
    if code == SQUARED_ERROR:
        return c[HALF] * r * r
    a = abs(r)
    if code == HUBER:
        if a < delta:
            return c[HALF] * r * r
        return delta * (a - c[HALF] * delta)
    return a


@element
def dloss_of_residual(code, r, delta, c):
    """dl/dr, before the 1/B of the mean: 2r, clip(r, −δ, δ), sign(r), r."""
    if code == MSE:
        return c[TWO] * r
    if code == SQUARED_ERROR:
        return r
    if code == HUBER:
        if r <= -delta:
            return -delta
        if r >= delta:
            return delta
        return r
    if r > c[ZERO]:
        return c[ONE]
    if r < c[ZERO]:
        return -c[ONE]
    return r * c[ZERO]  # 0 at r == 0, NaN stays NaN
