"""Numba kernels: the math of minireg, one module per concern, no Python objects.

Scalars inside the kernels are typed after the run's dtype (float32 runs stay float32): constants
come from the small ``c`` array (0, 1/2, 1, 2 in the run dtype) rather than from float literals,
which numba would type as float64 and so promote the whole expression.
"""
