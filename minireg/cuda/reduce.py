"""Deterministic block reductions (device functions) and the single-block kernels built on them.

Every reduction has a fixed shape for a given launch geometry: thread ``tid`` sums the elements
``tid, tid + TPB, ...`` in order, then the block combines the TPB partial sums in a binary tree in
shared memory. So results do not change from run to run; they differ from the CPU's left-to-right
sums only by rounding (the tests hold them to 1e-10 in float64).
"""
import math

from numba import cuda

from ..kernels.constants import CLIP_EPS, ONE, ZERO
from ..kernels.loop import COL_CLIPPED, COL_GRAD_NORM, COL_LOSS, COL_LR, COL_PARAM_NORM, COL_UPDATE_NORM
from ._config import TPB, device, kernel

# the per-step device scalars (``dsc``) written by loss_and_clip, read by the optimizers and the trace
DSC_LOSS, DSC_COEF, DSC_CLIPPED = 0, 1, 2


@device
def imin(a, b):
    """min(a, b) of two integers (numba.cuda's built-in target does not type the vararg min())."""
    return b if b < a else a


@device
def block_sum(sh, v):
    """Sum of ``v`` over the TPB threads of a 1-D block; every thread gets the result.
    ``sh`` is a shared array of at least TPB elements of the run dtype."""
    tid = cuda.threadIdx.x
    sh[tid] = v
    cuda.syncthreads()
    s = TPB // 2
    while s > 0:
        if tid < s:
            sh[tid] = sh[tid] + sh[tid + s]
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    cuda.syncthreads()
    return r


@device
def sum_strided(v, n, zero):
    """This thread's share of sum(v[:n]): v[tid] + v[tid + TPB] + ... (left to right)."""
    s = zero
    for i in range(cuda.threadIdx.x, n, TPB):
        s += v[i]
    return s


@device
def sq_strided(v, n, zero):
    """This thread's share of sum(v[:n]**2)."""
    s = zero
    for i in range(cuda.threadIdx.x, n, TPB):
        s += v[i] * v[i]
    return s


@device
def skip_step(dflag, t):
    """True once an earlier step has diverged: every kernel of a later step is then a no-op, so
    nothing after the diverging step changes the parameters, the state or the trace."""
    f = dflag[0]
    return f >= 0 and f < t


@device
def clip_factor(grad, P, clip_norm, vclip, red, c):
    """(norm-clipping factor, whether any clipping changes the gradient), as the CPU's _clip_factor."""
    coef = c[ONE]
    was_clipped = False
    if clip_norm > 0:
        coef = clip_norm / (math.sqrt(block_sum(red, sq_strided(grad, P, c[ZERO]))) + c[CLIP_EPS])
        if coef < c[ONE]:
            was_clipped = True
        else:
            coef = c[ONE]
    if vclip > 0 and not was_clipped:
        found = 0
        for i in range(cuda.threadIdx.x, P, TPB):
            if abs(grad[i] * coef) > vclip:
                found = 1
        was_clipped = cuda.syncthreads_or(found) != 0
    return coef, was_clipped


# ------------------------------------------------------------------------------------------------
# single-block kernels: the scalars of a step and of an epoch, and the trace rows


@kernel
def loss_and_clip(dflag, t, lpart, nparts, nb, history, hist_idx, grad, clip_norm, vclip, dsc, c):
    """One block of TPB threads, after the backward pass of step t:
    batch loss = Σ lpart / B (also stored in history[hist_idx] when hist_idx >= 0: the full-batch
    loss of the previous epoch), the norm-clipping factor min(1, max_norm / (‖g‖ + 1e-6)) and
    whether any clipping changes the gradient (as the CPU's _clip_factor); writes them to ``dsc``
    and flags the step when the loss is not finite."""
    if skip_step(dflag, t):
        return
    sh = cuda.shared.array(TPB, dtype=grad.dtype)
    tid = cuda.threadIdx.x
    P = grad.shape[0]
    loss = block_sum(sh, sum_strided(lpart, nparts, c[ZERO])) / nb
    coef, was_clipped = clip_factor(grad, P, clip_norm, vclip, sh, c)
    if tid == 0:
        dsc[DSC_LOSS] = loss
        dsc[DSC_COEF] = coef
        dsc[DSC_CLIPPED] = c[ONE] if was_clipped else c[ZERO]
        if hist_idx >= 0:
            history[hist_idx] = loss
        if not math.isfinite(loss):
            dflag[0] = t


@kernel
def mean_loss(dflag, t, lpart, nparts, nd, out, e, c):
    """out[e] = Σ lpart / n: the loss over a whole data set at the end of an epoch (t = the steps
    done by then, so nothing is written once the run has diverged)."""
    if skip_step(dflag, t):
        return
    sh = cuda.shared.array(TPB, dtype=lpart.dtype)
    total = block_sum(sh, sum_strided(lpart, nparts, c[ZERO]))
    if cuda.threadIdx.x == 0:
        out[e] = total / nd


@device
def record_element(i, row, p_old, grad, upd, state, tr_params, tr_grad, tr_update, tr_state, srows, n_state):
    """Parameter i's entries of a full trace row: params before the step, grad, update, the used
    state rows (the optimizer kernels call this for each parameter of a recorded step)."""
    tr_params[row, i] = p_old
    tr_grad[row, i] = grad[i]
    tr_update[row, i] = upd[i]
    for s in range(n_state):
        tr_state[row, s, i] = state[srows[s], i]


@device
def record_step(row, tr_scalars, dsc, lr):
    """The scalar columns of a full trace row that the step itself knows (its norms are taken from
    the stored rows afterwards, as on the CPU)."""
    tr_scalars[row, COL_LOSS] = dsc[DSC_LOSS]
    tr_scalars[row, COL_LR] = lr
    tr_scalars[row, COL_CLIPPED] = dsc[DSC_CLIPPED]


@kernel
def record_scalars(dflag, t, row, tr_scalars, dsc, lr, with_norms, pold, grad, upd, c):
    """The scalar columns of step t's trace row. with_norms (trace="norms"): also the norms of the
    parameters before the step, of the gradient as the optimizer saw it and of the update; a full
    trace leaves them, like the CPU kernel, to be taken from its stored rows."""
    if skip_step(dflag, t):
        return
    if with_norms:
        sh = cuda.shared.array(TPB, dtype=grad.dtype)
        P = grad.shape[0]
        g2 = block_sum(sh, sq_strided(grad, P, c[ZERO]))
        u2 = block_sum(sh, sq_strided(upd, P, c[ZERO]))
        p2 = block_sum(sh, sq_strided(pold, P, c[ZERO]))
        if cuda.threadIdx.x == 0:
            tr_scalars[row, COL_GRAD_NORM] = math.sqrt(g2)
            tr_scalars[row, COL_UPDATE_NORM] = math.sqrt(u2)
            tr_scalars[row, COL_PARAM_NORM] = math.sqrt(p2)
    if cuda.threadIdx.x == 0:
        record_step(row, tr_scalars, dsc, lr)


@kernel
def record_vectors(dflag, t, row, tr_params, tr_grad, tr_update, tr_state, srows, n_state, pold, grad, upd,
                   state):
    """The vector columns of step t's trace row from the device buffers, which no later step
    touched: a diverging step that was not a recorded one gets its row after the fact."""
    if skip_step(dflag, t):
        return
    for i in range(cuda.grid(1), grad.shape[0], cuda.gridsize(1)):
        record_element(i, row, pold[i], grad, upd, state, tr_params, tr_grad, tr_update, tr_state, srows,
                       n_state)
