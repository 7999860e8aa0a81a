"""The fused training loop: batches → forward → loss → backward → update → trace row.

One call runs a chunk of whole epochs with no Python in between. Per step it
  0. sets the step's learning rate: the epoch's ``lrs`` entry (or, with ``per_step``, the step's
     entry counted from this call's first step), divided by (t+1)^power_t for invscaling (sklearn
     SGDRegressor's per-step schedule; power_t = 0 turns it off),
  1. forwards the batch rows ``order[e][start:start+B]`` and computes the mean batch loss and dL/dpred,
  2. backpropagates into ``grad``, adds the L1 subgradient l1·sign(w) on the first ``l1_end``
     entries and scikit-learn's L2 term (alpha = ``l2``: alpha·W/B on the weights, not the biases,
     and alpha/(2B)·Σ W² in the batch loss), computes the clipping factor (global L2 norm, as
     torch.nn.utils.clip_grad_norm_: coef = min(1, max_norm / (‖g‖ + 1e-6))) and applies the
     optimizer (which writes ``upd``),
  3. writes the trace row when the step is recorded (every ``every``-th step, and the diverging step);
     a full trace's recorded step computes its gradient, update and old parameters in its row,
  4. stops at the first step whose loss or new parameters are not finite.
After each epoch it stores the loss over the whole training set at the epoch's final parameters
(full batch: that is exactly the next step's batch loss, so it is taken from there, not recomputed),
and the loss over the validation rows when there are any.

The first epoch of the call starts at row ``start0`` (a resumed run that stopped part-way into an
epoch). Before every step the loop reads ``stop[0]``: once Ctrl-C has set it, the loop returns
before that step, with -2 and the step's (epoch, first row) in ``status``.

Returns (steps done so far, trace rows written so far, diverging step, -1, or -2 when stopped);
``status`` holds the epoch (and row) where the loop stopped or diverged.
"""
import math

from numba.core import types
from numba.extending import overload

from .. import optim
from ..optim import sgd
from ._jit import element, kernel
from .activations import constants
from .constants import CLIP_EPS, DELTA, HALF, ONE, ZERO
from .losses import dloss_of_residual, loss_of_residual
from .models import backward, forward
from .tiled import tiled_dataset_loss, tiled_loss_grad

TRACE_OFF, TRACE_NORMS, TRACE_FULL = 0, 1, 2
# columns of the float trace table
COL_LOSS, COL_LR, COL_GRAD_NORM, COL_UPDATE_NORM, COL_PARAM_NORM, COL_CLIPPED = 0, 1, 2, 3, 4, 5
N_SCALAR_COLS = 6
# the run-dtype control vector ``cd``
CD_L1, CD_CLIP_NORM, CD_CLIP_VALUE, CD_L2 = 0, 1, 2, 3
N_CONTROLS = 4


def optimizer_step(h, theta, grad, upd, state, lr, t, coef, vclip):
    """One step of h's optimizer over the flat vectors (t: torch's 1-based step count): each parameter's
    ``update`` in turn, with the step's ``step_scalars``; True when every new parameter is finite. A
    module may have a ``step`` of its own (Adam's compiles one loop with and one without weight decay).
    In the compiled loop numba runs the overload below: these same lines, fixed to h's module when it
    compiles. This body runs only when optimizer_step is called from Python."""
    module = optim.module_of(h)
    if hasattr(module, "step"):
        return module.step(h, theta, grad, upd, state, lr, t, coef, vclip)
    s, scalars, ok = module.state_of(state), module.step_scalars(h, lr, t), True
    for i in range(theta.shape[0]):
        if not math.isfinite(module.update(i, theta, grad, upd, s, h, scalars, coef, vclip)):
            ok = False
    return ok


@overload(optimizer_step)
def _optimizer_step_compiled(h, theta, grad, upd, state, lr, t, coef, vclip):
    """What numba compiles for optimizer_step: chosen once, from h's type."""
    module = optim.BY_HYPER.get(getattr(h, "instance_class", None)) if isinstance(h, types.BaseNamedTuple) else None
    if module is None:
        return None
    if hasattr(module, "step"):
        own = module.step
        return lambda h, theta, grad, upd, state, lr, t, coef, vclip: own(h, theta, grad, upd, state, lr, t, coef,
                                                                          vclip)
    state_of, step_scalars, update = module.state_of, module.step_scalars, module.update

    def step(h, theta, grad, upd, state, lr, t, coef, vclip):
        s, scalars, ok = state_of(state), step_scalars(h, lr, t), True
        for i in range(theta.shape[0]):
            if not math.isfinite(update(i, theta, grad, upd, s, h, scalars, coef, vclip)):
                ok = False
        return ok
    return step


@kernel
def batch_loss(y, idx, start, B, acts, pred_off, loss_code, c, scratch, deltas, with_grad):
    """Mean loss of the batch; with_grad also writes dL/dpred = (1/B)·l'(r) into deltas."""
    scratch[3] = B
    nb = scratch[3]
    inv_b = c[ONE] / nb
    s = c[ZERO]
    cc, delta = constants(c), c[DELTA]
    for r in range(B):
        res = acts[pred_off + r] - y[idx[start + r]]
        s += loss_of_residual(loss_code, res, delta, cc)
        if with_grad:
            deltas[pred_off + r] = dloss_of_residual(loss_code, res, delta, cc) * inv_b
    return s / nb


@element
def _set_loss(X, y, ident, theta, model, loss_code, c, work, batch_size, big, one_row, l2):
    """The mean loss over all rows of (X, y) by the path the run takes (the same figure on each), plus
    scikit-learn's alpha/(2n)·Σ W² when ``l2`` (alpha) > 0."""
    sizes, woff, boff, aoff, act = model
    scratch = work[5]
    if big is not None and X.shape[0] >= big[9]:
        mean = tiled_dataset_loss(X, y, ident, theta, model, loss_code, c, big)
    elif one_row is not None:
        mean = linear_dataset_loss(X, y, theta, woff, boff, loss_code, c, scratch)
    else:
        mean = dataset_loss(X, y, theta, model, loss_code, c, work, batch_size)
    if l2 > 0:
        scratch[3] = X.shape[0]
        mean += c[HALF] * (l2 / scratch[3]) * weights_sq_sum(theta, sizes, woff, c)
    return mean


@kernel
def weights_sq_sum(theta, sizes, woff, c):
    """Σ W² over the weight matrices (not the biases)."""
    s = c[ZERO]
    for k in range(sizes.shape[0] - 1):
        for i in range(woff[k], woff[k] + sizes[k] * sizes[k + 1]):
            s += theta[i] * theta[i]
    return s


@kernel
def add_l2(theta, g, sizes, woff, coef):
    """g += coef·W on the weight matrices' entries (scikit-learn's L2 term: coef = alpha/B)."""
    for k in range(sizes.shape[0] - 1):
        for i in range(woff[k], woff[k] + sizes[k] * sizes[k + 1]):
            g[i] += coef * theta[i]


@kernel
def dataset_loss(X, y, theta, model, loss_code, c, work, chunk):
    """Mean loss over all rows, forwarding ``chunk`` rows at a time (the sum runs over rows)."""
    sizes, woff, boff, aoff, act = model
    acts, deltas, grad, upd, pold, scratch, ident, wt = work
    n = X.shape[0]
    pred_off = aoff[aoff.shape[0] - 1]
    s = c[ZERO]
    cc, delta = constants(c), c[DELTA]
    for start in range(0, n, chunk):
        B = min(chunk, n - start)
        forward(X, ident, start, B, theta, sizes, woff, boff, aoff, act, acts, c)
        for r in range(B):
            s += loss_of_residual(loss_code, acts[pred_off + r] - y[start + r], delta, cc)
    scratch[3] = n
    return s / scratch[3]


@kernel
def _sq_norm(v, c):
    """Σ v[i]², as four partial sums over i mod 4, then (s0 + s1) + (s2 + s3): one chain of adds
    waits for each add, four run side by side."""
    s0 = s1 = s2 = s3 = c[ZERO]
    n4 = v.shape[0] - v.shape[0] % 4
    for i in range(0, n4, 4):
        s0 += v[i] * v[i]
        s1 += v[i + 1] * v[i + 1]
        s2 += v[i + 2] * v[i + 2]
        s3 += v[i + 3] * v[i + 3]
    for i in range(n4, v.shape[0]):
        s0 += v[i] * v[i]
    return (s0 + s1) + (s2 + s3)


@kernel
def _clip_factor(grad, controls, c):
    """(norm-clipping factor, whether any clipping changes the gradient)."""
    coef = c[ONE]
    clipped = False
    if controls[CD_CLIP_NORM] > 0:
        coef = controls[CD_CLIP_NORM] / (math.sqrt(_sq_norm(grad, c)) + c[CLIP_EPS])
        if coef < c[ONE]:
            clipped = True
        else:
            coef = c[ONE]
    vclip = controls[CD_CLIP_VALUE]
    if vclip > 0 and not clipped:
        for i in range(grad.shape[0]):
            if abs(grad[i] * coef) > vclip:
                clipped = True
                break
    return coef, clipped


@element
def _record_row(row, vectors, pold, grad, upd, state, srows, tr_params, tr_grad, tr_update, tr_state):
    """The rest of a full trace row: with ``vectors``, params, grad and update (a recorded step writes
    them straight into its row; only a diverging step off the trace_every grid needs the copy), and
    the optimizer's state rows, in explicit loops on row views (numba's slice assignment costs more
    than these copies at P ~ 10)."""
    if vectors:
        p_row, g_row, u_row = tr_params[row], tr_grad[row], tr_update[row]
        for i in range(pold.shape[0]):
            p_row[i] = pold[i]
            g_row[i] = grad[i]
            u_row[i] = upd[i]
    for s in range(srows.shape[0]):
        s_row = tr_state[row, s]
        src = state[srows[s]]
        for i in range(src.shape[0]):
            s_row[i] = src[i]


@kernel
def train_epochs(X, y, theta, state, model, loss_code, h, ctrl, c, work, order, shuffled,
                 epoch0, n_epochs, batch_size, t, row, trace, history, val, start0, stop, status, big, one_row):
    # ``big`` is None (numba then compiles the loop without the large-batch path) or the buffers of
    # kernels/tiled.py: batches of at least big[8] rows, and data sets of at least big[9] rows for
    # the per-epoch losses, take that path
    sizes, woff, boff, aoff, act = model
    lrs, per_step, power_t, l1_end, controls = ctrl
    t_start = t
    acts, deltas, grad, upd, pold, scratch, ident, wt = work
    mode, every, tr_index, tr_scalars, tr_params, tr_grad, tr_update, tr_state, srows = trace
    Xv, yv, val_history = val
    n = X.shape[0]
    pred_off = aoff[aoff.shape[0] - 1]
    full_batch = batch_size >= n
    l1, l2 = controls[CD_L1], controls[CD_L2]
    # ``one_row`` is None, or (batch-1 SGD on the linear model, untraced and unclipped: see
    # batch1_eligible() below) anything else: each epoch's steps then run there
    for e in range(epoch0, epoch0 + n_epochs):
        idx = order[e - epoch0] if shuffled else ident
        first = start0 if e == epoch0 else 0
        if one_row is not None:
            nxt, how = sgd1_rows(X, y, idx, first, theta, woff, boff, h, lrs[e - epoch0], loss_code, c, scratch, stop)
            t += nxt - first
            if how == STOPPED:
                status[0] = e
                status[1] = nxt
                return t, row, -2
            if how == DIVERGED:
                status[0] = e
                status[1] = nxt - 1
                return t, row, t - 1
            first = n  # the epoch's steps are done
        for start in range(first, n, batch_size):
            if stop[0] != 0:
                status[0] = e
                status[1] = start
                return t, row, -2
            B = min(batch_size, n - start)
            lr = lrs[t - t_start] if per_step else lrs[e - epoch0]
            if power_t > 0:
                lr = lr / (t + 1.0) ** power_t
            on_grid = mode != TRACE_OFF and (every == 1 or t % every == 0)
            # a step a full trace records works in its trace row: the gradient, the update and the
            # parameters before the step land there with no copy (the work buffers otherwise)
            if on_grid and mode == TRACE_FULL:
                g, u, p0 = tr_grad[row], tr_update[row], tr_params[row]
            else:
                g, u, p0 = grad, upd, pold
            if big is not None and B >= big[8]:
                loss = tiled_loss_grad(X, y, idx, start, B, theta, model, loss_code, c, big, g)
            else:
                forward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, c)
                loss = batch_loss(y, idx, start, B, acts, pred_off, loss_code, c, scratch, deltas, True)
                backward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, deltas, g, wt, c)
            coef_l2 = c[ZERO]
            if l2 > 0:
                scratch[3] = B
                coef_l2 = l2 / scratch[3]
                loss += c[HALF] * coef_l2 * weights_sq_sum(theta, sizes, woff, c)
            if full_batch and e > 0:
                history[e - 1] = loss
            if l1 > 0:
                for i in range(l1_end):
                    if theta[i] > 0:
                        g[i] += l1
                    elif theta[i] < 0:
                        g[i] -= l1
            if l2 > 0:
                add_l2(theta, g, sizes, woff, coef_l2)
            coef, was_clipped = _clip_factor(g, controls, c)
            if mode != TRACE_OFF:
                for i in range(theta.shape[0]):
                    p0[i] = theta[i]
            ok = optimizer_step(h, theta, g, u, state, lr, t + 1, coef, controls[CD_CLIP_VALUE])
            bad = not (ok and math.isfinite(loss))
            if on_grid or (bad and mode != TRACE_OFF):
                tr_index[row, 0] = t
                tr_index[row, 1] = e
                tr_scalars[row, COL_LOSS] = loss
                tr_scalars[row, COL_LR] = lr
                tr_scalars[row, COL_CLIPPED] = c[ONE] if was_clipped else c[ZERO]
                tr_scalars[row, COL_GRAD_NORM] = math.sqrt(_sq_norm(g, c))
                tr_scalars[row, COL_UPDATE_NORM] = math.sqrt(_sq_norm(u, c))
                tr_scalars[row, COL_PARAM_NORM] = math.sqrt(_sq_norm(p0, c))
                if mode == TRACE_FULL:
                    _record_row(row, not on_grid, p0, g, u, state, srows, tr_params, tr_grad, tr_update, tr_state)
                row += 1
            t += 1
            if bad:
                status[0] = e
                status[1] = start
                return t, row, t - 1
        if not full_batch or e == epoch0 + n_epochs - 1:
            history[e] = _set_loss(X, y, ident, theta, model, loss_code, c, work, batch_size, big, one_row, l2)
        if Xv.shape[0] > 0:
            val_history[e] = _set_loss(Xv, yv, ident, theta, model, loss_code, c, work, batch_size, big, one_row, l2)
    return t, row, -1


@kernel
def loss_and_gradient(X, y, theta, model, loss_code, c, work):
    """Mean loss and its gradient over all rows of X at ``theta`` (work buffers sized for all rows);
    the layer outputs stay in the activation buffer. Used by the diagnosis (curvature, dead units)."""
    sizes, woff, boff, aoff, act = model
    acts, deltas, grad, upd, pold, scratch, ident, wt = work
    n = X.shape[0]
    forward(X, ident, 0, n, theta, sizes, woff, boff, aoff, act, acts, c)
    loss = batch_loss(y, ident, 0, n, acts, aoff[aoff.shape[0] - 1], loss_code, c, scratch, deltas, True)
    backward(X, ident, 0, n, theta, sizes, woff, boff, aoff, act, acts, deltas, grad, wt, c)
    return loss


# ---- batch-1 SGD on the linear model: one fused pass per sample.
# The general loop (loop.py) spends most of a batch-1 step outside the arithmetic: a call each for
# the forward pass, the loss, the backward pass, the clipping factor and the optimizer, each with
# its argument structs, and the checks for the trace, L1 and clipping. For the plainest case, a
# linear model trained by torch's SGD without momentum, one row per step, no trace, no clipping,
# no L1 or L2 term, one lr per epoch, this kernel runs an epoch's steps in one loop with the same
# arithmetic, in the same order, as the general loop's (the same bits: tests/test_batch1.py):
#     pred = (0 + Σ_i x_i·w_i) + b,  r = pred − y,  loss = l(r)/1,  dl = l'(r)·(1/1)
#     g_i = 0 + x_i·dl,  g_b = 0 + dl,  each parameter then p − lr·(g + wd·p) (sgd.without_momentum)
# with nothing else per step: no gradient or update vector, no call (through the optimizer's generic
# step a step took 639 instructions, now 389: count_instructions.py linear-batch1); and it stops
# where the general loop would: before a step once ``stop[0]`` is set, and after the first step
# whose loss or new parameters are not finite.

RAN, STOPPED, DIVERGED = 0, 1, 2


def batch1_eligible(s, batch_size, n, power_t):
    """Whether a run's epochs can run here (``s``: train's Settings; train() passes the loop a
    non-None ``one_row`` then, and numba compiles this path only into the loops of runs that take it)."""
    return (s.device == "cpu" and s.model == "linear" and s.optimizer == "sgd" and s.flavor == "torch"
            and s.hparams.get("momentum", 0) == 0
            and batch_size == 1 and n > 1 and s.trace is False and s.l1 == 0 and s.l2 == 0
            and s.clip_grad_norm is None and s.clip_grad_value is None and s.step_lrs is None and power_t == 0)


@kernel
def sgd1_rows(X, y, idx, first, theta, woff, boff, h, lr, loss_code, c, scratch, stop):
    """Steps on the rows idx[first], idx[first + 1], … with learning rate ``lr``; (next row, RAN |
    STOPPED | DIVERGED). A diverged step is applied, as in the general loop; the next row is then the
    one after it."""
    n, d = X.shape
    w = theta[woff[0]:woff[0] + d]
    bo = boff[0]
    cc = constants(c)
    c0, delta = c[ZERO], c[DELTA]
    dt = theta.dtype.type
    lr, wd = dt(lr), dt(h.weight_decay)  # as sgd.update takes them
    scratch[3] = 1
    inv_b = c[ONE] / scratch[3]
    for start in range(first, n):
        if stop[0] != 0:
            return start, STOPPED
        row = idx[start]
        x = X[row]
        s = c0
        for i in range(d):
            s += x[i] * w[i]
        res = (s + theta[bo]) - y[row]
        loss = (c0 + loss_of_residual(loss_code, res, delta, cc)) / scratch[3]
        dl = dloss_of_residual(loss_code, res, delta, cc) * inv_b
        ok = math.isfinite(loss)
        for i in range(d):
            p = sgd.without_momentum(w[i], dt(c0 + x[i] * dl), lr, wd)  # dt: as stored in a gradient
            w[i] = p
            ok = ok and math.isfinite(p)
        p = sgd.without_momentum(theta[bo], dt(c0 + dl), lr, wd)
        theta[bo] = p
        if not (ok and math.isfinite(p)):
            return start + 1, DIVERGED
    return n, RAN


@kernel
def linear_dataset_loss(X, y, theta, woff, boff, loss_code, c, scratch):
    """loop.dataset_loss of a linear model bit for bit (each row's prediction (0 + Σ_i x_i·w_i) + b,
    the losses added in row order), without its chunks of ``batch_size`` rows: with batch_size 1
    that was a call of the forward pass per row, as dear as the epoch's training."""
    n, d = X.shape
    w = theta[woff[0]:woff[0] + d]
    b = theta[boff[0]]
    cc = constants(c)
    c0, delta = c[ZERO], c[DELTA]
    s = c0
    for r in range(n):
        x = X[r]
        p = c0
        for i in range(d):
            p += x[i] * w[i]
        s += loss_of_residual(loss_code, (p + b) - y[r], delta, cc)
    scratch[3] = n
    return s / scratch[3]
