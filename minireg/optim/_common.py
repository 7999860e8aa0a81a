"""What every optimizer module shares: the compile decorators and gradient clipping."""
import math
from typing import NamedTuple

from ..kernels._jit import element, kernel  # noqa: F401  (re-exported for the optimizer modules)


# whose arithmetic an optimizer follows (train(flavor=...)): the code in each Hyper's ``flavor`` field
TORCH, KERAS, SKLEARN = 0, 1, 2
FLAVORS = {"torch": TORCH, "keras": KERAS, "sklearn": SKLEARN}


@element
def clipped(g, coef, vclip):
    """The gradient the optimizer uses: coef·g (coef is the global norm-clipping factor, 1 without
    clipping), then clamped to ±vclip when vclip > 0 — torch's clip_grad_norm_ then clip_grad_value_
    on p.grad before optimizer.step()."""
    g = g * coef
    # the test of vclip on its own, outside the comparisons: the loops then hoist it and vectorize
    # with two compares per element (an infinite bound is never passed; vclip keeps the run's dtype)
    bound = vclip if vclip > 0 else math.inf
    if g > bound:
        return vclip
    if g < -bound:
        return -vclip
    return g


class Real(NamedTuple):
    """The allowed interval of a real hyperparameter: [low, high], either end optionally open
    (high=None: no upper limit)."""
    low: float = 0.0
    high: float = None
    low_open: bool = False
    high_open: bool = False
