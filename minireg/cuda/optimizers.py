"""One elementwise CUDA kernel per optimizer, each built from its module in ``minireg.optim``: the
module's own ``update`` (one parameter's step) and ``state_of`` are compiled as device functions, so
the GPU runs the very source the CPU runs (clipping first, then coupled weight decay, also added
into ``grad`` so the trace records the gradient as the optimizer saw it, or AdamW's decoupled
shrink, then the update; ``upd`` gets theta_new − theta_old exactly, the state rows change in place).

Scalars: ``h`` is the optimizer's Hyper tuple and ``scalars`` its ``step_scalars(h, lr, t)``, computed on
the host in float64 by the same compiled function the CPU loop calls (so the same bits); ``update``
casts them to the run dtype. The norm-clipping factor comes from ``dsc[DSC_COEF]``, written by the
``loss_and_clip`` kernel of the same step. A non-finite new parameter writes the step index into
the divergence flag. With tracing on, ``pold`` keeps the parameters before the step.

A recorded step of a full trace (``row >= 0``) writes its trace row from here, where every value
is at hand: no extra launch per step (the host passes row = -1 and one-row dummies otherwise).
"""
import math

from numba import cuda

from .. import optim
from ._config import device, kernel
from .reduce import DSC_COEF, record_element, record_step, skip_step


@device
def finish_element(i, t, p, pn, dflag, row, grad, upd, state, tr_params, tr_grad, tr_update, tr_state, srows,
                   n_state):
    """After parameter i's update (p before, pn after): its entries of the trace row of a recorded
    step, and the divergence flag when pn is not finite."""
    if row >= 0:
        record_element(i, row, p, grad, upd, state, tr_params, tr_grad, tr_update, tr_state, srows, n_state)
    if not math.isfinite(pn):
        dflag[0] = t


# each optimizer module's ``update`` and ``state_of`` as device functions, for every kernel that steps
# (the per-step kernels here and the one-launch kernels of onelaunch.py)
UPDATE = {module: device(module.update.py_func) for module in optim.MODULES}
STATE_OF = {module: device(module.state_of.py_func) for module in optim.MODULES}


def _step_kernel(module):
    """The CUDA step kernel of one optimizer module. t is the 0-based step index (torch's step count
    is t + 1; ``scalars`` already holds what depends on it)."""
    update = UPDATE[module]
    state_of = STATE_OF[module]

    def step(dflag, t, h, scalars, theta, grad, upd, state, pold, keep_pold, dsc, vclip, lr, row, tr_scalars,
             tr_params, tr_grad, tr_update, tr_state, srows, n_state):
        if skip_step(dflag, t):
            return
        coef = dsc[DSC_COEF]
        s = state_of(state)
        for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
            p = theta[i]
            if keep_pold:
                pold[i] = p
            pn = update(i, theta, grad, upd, s, h, scalars, coef, vclip)
            finish_element(i, t, p, pn, dflag, row, grad, upd, state, tr_params, tr_grad, tr_update, tr_state,
                           srows, n_state)
        if row >= 0 and cuda.grid(1) == 0:
            record_step(row, tr_scalars, dsc, lr)

    step.__name__ = step.__qualname__ = f"{module.__name__.rsplit('.', 1)[1]}_step"
    return kernel(step)


STEP = {module: _step_kernel(module) for module in optim.MODULES}
