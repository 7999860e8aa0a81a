"""One kernel launch for a whole call of the training loop, one block per run.

For a small model the per-layer path (loop.py) is launch-bound: ~12 launches a step, each tens of
µs of numba's launch path, around a few µs of arithmetic. Here the whole call of
``train_epochs_cuda`` (every epoch and batch: forward, loss, backward, L1, clipping, the
optimizer's update, trace rows, divergence, the per-epoch training and validation losses) runs in
ONE launch, the threads of one block cooperating with ``cuda.syncthreads()`` between the phases of
a step. With R blocks the same launch trains R runs side by side (``minireg.sweep(device="cuda")``):
runs that share the data, the architecture, the loss, the optimizer and its hyperparameters, the
controls, the batch size and the trace settings, and differ in their initial parameters, their row
orders (seed) and their learning rates (lr, schedule, step_lrs).

Which path runs (``plan``, recorded as ``result.config["cuda_path"]`` and ``"cuda_path_why"``):
  - ``MINIREG_CUDA_ONE_LAUNCH=never``: the per-layer path; ``always``: this one, whatever the size;
  - ``auto`` (default): this one when a step's work B·P (batch rows × parameters) is at most
    ``ONE_LAUNCH_WORK`` (2**20 by default; where one SM per run stops beating the whole GPU
    behind ~12 launches a step is for a GPU to tell: benchmarks/bench_cuda.py), else the per-layer path.
Every feature of the training loop runs on both paths (the CUDA backend's: no l2), so the size is
the only criterion. train() calls the loop once per chunk of epochs, once per epoch with early
stopping, a plateau schedule, checkpoints, and for the first epoch of a run that may show a
progress bar (progress=None or True): one launch per call.

Memory of a block: the block's working set is 4·P + 2·B·H values of the run dtype (the parameters,
the gradient, the update and the parameters before the step; the activations and deltas of B =
batch rows over the H = Σ fan_out units of all layers) plus TPB values for the block reductions.
When that fits SHARED_BYTES (48 KiB, what a block may use without opting in, which numba's launch
does not do), it lives in dynamic shared memory (``cuda.shared.array(0, ...)``, sized at launch);
otherwise in the block's row of a global scratch array (slower, still one launch). The optimizer
state, the data, the row orders and the trace stay in global memory.

Step scalars: the lr of every step (the epoch's or step_lrs' entry, invscaling applied) and the
optimizer's ``step_scalars`` are computed on the host by the compiled function the CPU loop runs
(``_fill_table``: float ** int by squaring, as numba compiles it), into a float64 table of the
launch's steps (one table per distinct learning-rate sequence, runs point to theirs), so they are
the CPU's to the last bit. A call is cut into several launches only where the tables (TABLE_BYTES),
the shuffled row orders (ORDER_BYTES) or the trace rows (TRACE_BYTES) of its steps would not fit one
upload; the per-run position (step, trace row, epoch, batch, diverged) stays on the device between
them.

Arithmetic: every activation, delta and weight-gradient entry is one thread's sum over its shared
index in increasing order from 0, as the CPU kernels add them (so in the simulator those values are
the CPU's bits; on a GPU, up to NVVM's FMA contraction). The batch loss, the data-set losses and the
norms are block reductions (a fixed tree), equal to the CPU's sums up to rounding.

Divergence: a step whose loss or any new parameter is not finite is the block's last: it is
applied and recorded (its trace row always written), nothing after it, as on the CPU. Ctrl-C is
seen by the host between launches only.
"""
import math

import numpy as np
from numba import cuda, literal_unroll
from numba.core import types
from numba.extending import overload

from .. import optim
from ..kernels._jit import kernel as cpu_kernel
from ..kernels.constants import DELTA, ONE, ZERO
from ..kernels.loop import (CD_CLIP_NORM, CD_CLIP_VALUE, CD_L1, COL_CLIPPED, COL_GRAD_NORM, COL_LOSS, COL_LR,
                            COL_PARAM_NORM, COL_UPDATE_NORM, N_SCALAR_COLS, TRACE_FULL, TRACE_NORMS, TRACE_OFF)
from . import _config
from ._config import SHARED_BYTES, TPB, device, kernel
from .activations import activate, code_of, derivative_from_output
from .losses import dloss_of_residual, loss_of_residual
from .models import with_l1
from .optimizers import STATE_OF, UPDATE
from .reduce import block_sum, clip_factor, imin, sq_strided

ONE_LAUNCH = _config.ONE_LAUNCH
ONE_LAUNCH_WORK = _config.ONE_LAUNCH_WORK
# host-to-device uploads per launch: the step-scalar tables and the shuffled row orders
TABLE_BYTES = 64 << 20
ORDER_BYTES = 256 << 20
# device memory for the trace rows of one launch (copied to the host after each)
TRACE_BYTES = 256 << 20
# the per-run position kept on the device: step, trace row, diverging step (-1), epoch, batch in it
S_T, S_ROW, S_DIV, S_E, S_K = 0, 1, 2, 3, 4
N_STATUS = 5
PATH_ONE, PATH_MULTI = "one-launch", "multi-launch"


# ------------------------------------------------------------------------------------------------
# which path, and where the block's working set lives

def work_elements(sizes, bs):
    """Values of the run dtype a block works on: theta, grad, upd, params before the step (P each),
    activations and deltas of bs rows (bs·Σ fan_out each)."""
    sizes = [int(v) for v in sizes]
    P = sum(sizes[k] * sizes[k + 1] + sizes[k + 1] for k in range(len(sizes) - 1))
    return 4 * P + 2 * bs * sum(sizes[1:])


def shared_bytes(sizes, bs, itemsize):
    """Dynamic shared memory the block needs for its working set, or 0 when it does not fit
    SHARED_BYTES next to the static reduction buffer (TPB values): the working set then goes to a
    global scratch row."""
    dyn = work_elements(sizes, bs) * itemsize
    return dyn if dyn + TPB * itemsize <= SHARED_BYTES else 0


def plan(sizes, bs, itemsize):
    """(path, why) for a run of these layer sizes and batch rows (see the module docstring)."""
    sizes = [int(v) for v in sizes]
    P = sum(sizes[k] * sizes[k + 1] + sizes[k + 1] for k in range(len(sizes) - 1))
    mode = ONE_LAUNCH
    if mode not in _config.ONE_LAUNCH_MODES:
        raise ValueError(f"minireg.cuda.onelaunch.ONE_LAUNCH={mode!r} must be one of "
                         f"{', '.join(_config.ONE_LAUNCH_MODES)}.")
    if mode == "never":
        return PATH_MULTI, "MINIREG_CUDA_ONE_LAUNCH=never"
    if mode == "auto" and bs * P > ONE_LAUNCH_WORK:
        return PATH_MULTI, f"a step's work B·P = {bs}·{P} is above ONE_LAUNCH_WORK = {ONE_LAUNCH_WORK}"
    where = "shared memory" if shared_bytes(sizes, bs, itemsize) else "global memory (over the shared budget)"
    why = "MINIREG_CUDA_ONE_LAUNCH=always" if mode == "always" else f"B·P = {bs}·{P} <= {ONE_LAUNCH_WORK}"
    return PATH_ONE, f"{why}; working set of {work_elements(sizes, bs) * itemsize} bytes in {where}"


# ------------------------------------------------------------------------------------------------
# the step-scalar table (host, compiled like the CPU loop)

def step_scalars_of(h, lr, t):
    """``step_scalars`` of h's optimizer module (compiled: the overload below picks the module)."""
    return optim.module_of(h).step_scalars(h, lr, t)


@overload(step_scalars_of)
def _step_scalars_compiled(h, lr, t):
    module = optim.BY_HYPER.get(getattr(h, "instance_class", None)) if isinstance(h, types.BaseNamedTuple) else None
    if module is None:
        return None
    own = module.step_scalars
    return lambda h, lr, t: own(h, lr, t)


@cpu_kernel
def _fill_table(h, base, power_t, t0, out):
    """out[k] = (lr, *step_scalars(h, lr, t0 + k + 1)) of step t0 + k, lr = base[k] / (t0+k+1)^power_t
    under invscaling: the CPU loop's expressions, in float64."""
    for k in range(base.shape[0]):
        lr = base[k]
        if power_t > 0:
            lr = lr / (t0 + k + 1.0) ** power_t
        out[k, 0] = lr
        j = 1
        for v in literal_unroll(step_scalars_of(h, lr, t0 + k + 1)):
            out[k, j] = v
            j += 1


def n_scalars(h):
    return len(optim.module_of(h).step_scalars.py_func(h, 0.01, 1))


# ------------------------------------------------------------------------------------------------
# device functions: the phases of a step, run by every thread of the block

@device
def forward_rows(X, idx, start, B, th, sizes, woff, boff, aoff, act, acts, c):
    """Every layer's outputs for rows idx[start:start+B] into acts (layer k's row r, unit j at
    aoff[k] + r·fan_out + j): output p of a layer is thread p mod TPB's, Σ_i in order, then + b,
    then the activation (hidden layers); a barrier after each layer."""
    tid = cuda.threadIdx.x
    L = sizes.shape[0] - 1
    for k in range(L):
        fi = sizes[k]
        fo = sizes[k + 1]
        wo = woff[k]
        bo = boff[k]
        out = aoff[k]
        a_in = aoff[k - 1] if k > 0 else 0
        for p in range(tid, B * fo, TPB):
            r = p // fo
            j = p - r * fo
            s = c[ZERO]
            if k == 0:
                xr = idx[start + r]
                for i in range(fi):
                    s += X[xr, i] * th[wo + i * fo + j]
            else:
                q = a_in + r * fi
                for i in range(fi):
                    s += acts[q + i] * th[wo + i * fo + j]
            z = s + th[bo + j]  # bias after the product, as torch's addmm
            if k < L - 1:
                z = activate(act, z, c)
            acts[out + p] = z
        cuda.syncthreads()


@device
def rows_loss(y, idx, start, B, acts, pred_off, loss_code, c, deltas, inv_b, with_grad):
    """This thread's share of Σ l(pred − y) over the B rows; with_grad also writes dL/dpred =
    l'(r)·(1/B) into deltas."""
    s = c[ZERO]
    for r in range(cuda.threadIdx.x, B, TPB):
        res = acts[pred_off + r] - y[idx[start + r]]
        s += loss_of_residual(loss_code, res, c[DELTA], c)
        if with_grad:
            deltas[pred_off + r] = dloss_of_residual(loss_code, res, c[DELTA], c) * inv_b
    return s


@device
def backward_rows(X, idx, start, B, th, sizes, woff, boff, aoff, act, acts, deltas, grad, l1, l1_end, c):
    """The gradient of every layer from the output deltas: gW[i, j] = Σ_r A[r, i]·D[r, j] (+ L1's
    subgradient on the first l1_end entries), gb[j] = Σ_r D[r, j], Δ_prev[r, i] = (Σ_j D[r, j]·W[i, j])·
    f'(A[r, i]); each entry one thread's sum in index order. A barrier after each layer."""
    tid = cuda.threadIdx.x
    L = sizes.shape[0] - 1
    for k in range(L - 1, -1, -1):
        fi = sizes[k]
        fo = sizes[k + 1]
        wo = woff[k]
        d_off = aoff[k]
        a_in = aoff[k - 1] if k > 0 else 0
        nw = fi * fo
        for q in range(tid, nw + fo, TPB):
            s = c[ZERO]
            if q < nw:
                i = q // fo
                j = q - i * fo
                if k == 0:
                    for r in range(B):
                        s += X[idx[start + r], i] * deltas[d_off + r * fo + j]
                else:
                    for r in range(B):
                        s += acts[a_in + r * fi + i] * deltas[d_off + r * fo + j]
                grad[wo + q] = with_l1(s, th, wo + q, l1, l1_end)
            else:
                j = q - nw
                for r in range(B):
                    s += deltas[d_off + r * fo + j]
                grad[boff[k] + j] = s
        if k > 0:
            for p in range(tid, B * fi, TPB):
                r = p // fi
                i = p - r * fi
                s = c[ZERO]
                for j in range(fo):
                    s += deltas[d_off + r * fo + j] * th[wo + i * fo + j]
                deltas[a_in + p] = s * derivative_from_output(act, acts[a_in + p], c)
        cuda.syncthreads()


@device
def dataset_loss(X, y, ident, nrows, bs, th, sizes, woff, boff, aoff, act, acts, pred_off, loss_code, c, red, tmp):
    """Mean loss over rows 0..nrows-1 of (X, y), forwarding bs rows at a time through acts."""
    s = c[ZERO]
    for start in range(0, nrows, bs):
        B = imin(bs, nrows - start)
        forward_rows(X, ident, start, B, th, sizes, woff, boff, aoff, act, acts, c)
        s += rows_loss(y, ident, start, B, acts, pred_off, loss_code, c, acts, c[ZERO], False)
        cuda.syncthreads()  # before the next rows overwrite acts
    total = block_sum(red, s)
    tmp[0] = nrows  # the count in the run dtype, as the CPU's scratch
    return total / tmp[0]


@device
def record_row(r, drow, t, e, loss, lr, was_clipped, mode, P, pold, grad, upd, state_r, srows, n_srows, tr_index,
               tr_scalars, tr_params, tr_grad, tr_update, tr_state, red, c):
    """Trace row drow of run r for step t: index, loss, lr, clipped; trace="norms" the three norms
    (block reductions); a full trace the vectors and the used state rows (its norms are taken from
    them on the host, as on the per-layer path)."""
    tid = cuda.threadIdx.x
    if mode == TRACE_FULL:
        for i in range(tid, P, TPB):
            tr_params[r, drow, i] = pold[i]
            tr_grad[r, drow, i] = grad[i]
            tr_update[r, drow, i] = upd[i]
            for s in range(n_srows):
                tr_state[r, drow, s, i] = state_r[srows[s], i]
    g2 = c[ZERO]
    u2 = c[ZERO]
    p2 = c[ZERO]
    if mode == TRACE_NORMS:
        g2 = block_sum(red, sq_strided(grad, P, c[ZERO]))
        u2 = block_sum(red, sq_strided(upd, P, c[ZERO]))
        p2 = block_sum(red, sq_strided(pold, P, c[ZERO]))
    if tid == 0:
        tr_index[r, drow, 0] = t
        tr_index[r, drow, 1] = e
        tr_scalars[r, drow, COL_LOSS] = loss
        tr_scalars[r, drow, COL_LR] = lr
        tr_scalars[r, drow, COL_CLIPPED] = c[ONE] if was_clipped else c[ZERO]
        if mode == TRACE_NORMS:
            tr_scalars[r, drow, COL_GRAD_NORM] = math.sqrt(g2)
            tr_scalars[r, drow, COL_UPDATE_NORM] = math.sqrt(u2)
            tr_scalars[r, drow, COL_PARAM_NORM] = math.sqrt(p2)


# ------------------------------------------------------------------------------------------------
# the kernel, one per optimizer module (its update compiled in)

def _runs_kernel(module):
    update = UPDATE[module]
    state_of = STATE_OF[module]

    def runs(X, y, Xv, yv, nv, ident, order, order_e0, shuffled, theta, state, scratch, use_shared, sizes, woff,
             boff, aoff, act, loss_code, c, controls, l1_end, h, table, tab_of, e_end, max_steps, t0, row_base, bs,
             mode, every, tr_index, tr_scalars, tr_params, tr_grad, tr_update, tr_state, srows, n_srows, history,
             val_history, status):
        """Run blockIdx.x from its position in ``status`` for at most max_steps steps, up to the end of
        epoch e_end − 1 (see the module docstring); every thread of the block runs every line."""
        r = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        st = status[r]
        if st[S_DIV] >= 0:  # diverged in an earlier launch of the call
            return
        P = theta.shape[1]
        if use_shared:
            work = cuda.shared.array(0, dtype=theta.dtype)
        else:
            work = scratch[r]
        red = cuda.shared.array(TPB, dtype=theta.dtype)
        tmp = cuda.local.array(1, dtype=theta.dtype)
        L = sizes.shape[0] - 1
        pred_off = aoff[L - 1]
        nact = pred_off + bs
        th = work[0:P]
        grad = work[P:2 * P]
        upd = work[2 * P:3 * P]
        pold = work[3 * P:4 * P]
        acts = work[4 * P:4 * P + nact]
        deltas = work[4 * P + nact:4 * P + 2 * nact]
        own = theta[r]
        for i in range(tid, P, TPB):
            th[i] = own[i]
        cuda.syncthreads()
        state_r = state[r]
        s_rows = state_of(state_r)
        tab = table[tab_of[r]]
        n = X.shape[0]
        full_batch = bs >= n
        spe = (n + bs - 1) // bs
        l1 = controls[CD_L1]
        clip_norm = controls[CD_CLIP_NORM]
        vclip = controls[CD_CLIP_VALUE]
        traced = mode != TRACE_OFF
        t = st[S_T]
        row = st[S_ROW]
        e = st[S_E]
        k = st[S_K]
        diverged = -1
        done = 0
        while e < e_end and done < max_steps:
            idx = order[r, e - order_e0] if shuffled else ident
            while k < spe and done < max_steps:
                start = k * bs
                B = imin(bs, n - start)
                forward_rows(X, idx, start, B, th, sizes, woff, boff, aoff, act, acts, c)
                tmp[0] = B
                nb = tmp[0]
                part = rows_loss(y, idx, start, B, acts, pred_off, loss_code, c, deltas, c[ONE] / nb, True)
                loss = block_sum(red, part) / nb  # its barriers also publish the output deltas
                backward_rows(X, idx, start, B, th, sizes, woff, boff, aoff, act, acts, deltas, grad, l1, l1_end, c)
                if full_batch and e > 0 and tid == 0:
                    history[r, e - 1] = loss  # the full-batch loss at the end of the previous epoch
                coef, was_clipped = clip_factor(grad, P, clip_norm, vclip, red, c)
                sc = tab[t - t0]
                scalars = sc[1:]
                bad = 0
                for i in range(tid, P, TPB):
                    pold[i] = th[i]
                    if not math.isfinite(update(i, th, grad, upd, s_rows, h, scalars, coef, vclip)):
                        bad = 1
                is_bad = cuda.syncthreads_or(bad) != 0 or not math.isfinite(loss)
                if traced and (every == 1 or t % every == 0 or is_bad):
                    record_row(r, row - row_base, t, e, loss, sc[0], was_clipped, mode, P, pold, grad, upd, state_r,
                               srows, n_srows, tr_index, tr_scalars, tr_params, tr_grad, tr_update, tr_state, red,
                               c)
                    row += 1
                t += 1
                done += 1
                if is_bad:
                    diverged = t - 1
                    break
                k += 1
            if diverged >= 0 or k < spe:  # diverged, or this launch's steps end inside the epoch
                break
            if not full_batch or e == e_end - 1:
                v = dataset_loss(X, y, ident, n, bs, th, sizes, woff, boff, aoff, act, acts, pred_off, loss_code,
                                 c, red, tmp)
                if tid == 0:
                    history[r, e] = v
            if nv > 0:
                v = dataset_loss(Xv, yv, ident, nv, bs, th, sizes, woff, boff, aoff, act, acts, pred_off,
                                 loss_code, c, red, tmp)
                if tid == 0:
                    val_history[r, e] = v
            e += 1
            k = 0
        cuda.syncthreads()
        for i in range(tid, P, TPB):
            own[i] = th[i]
        if tid == 0:
            st[S_T] = t
            st[S_ROW] = row
            st[S_DIV] = diverged
            st[S_E] = e
            st[S_K] = k

    runs.__name__ = runs.__qualname__ = f"{module.__name__.rsplit('.', 1)[1]}_runs"
    return kernel(runs)


KERNELS = {module: _runs_kernel(module) for module in optim.MODULES}


# ------------------------------------------------------------------------------------------------
# host side

def _cdiv(a, b):
    return -(-a // b)


class RunSet:
    """Device data and buffers of R runs trained side by side (R = 1 for train())."""

    def __init__(self, X, y, Xv, yv, model, c, bs, R, P, n_state, dtype):
        sizes, woff, boff, aoff, act = model
        self.X, self.Xv = X, Xv  # host references: a Context rebinds when train() passes other arrays
        self.R, self.P, self.bs = R, P, bs
        self.dtype = np.dtype(dtype)
        self.n, self.nv = X.shape[0], Xv.shape[0]
        self.d_X = cuda.to_device(X)
        self.d_y = cuda.to_device(y)
        self.d_Xv = cuda.to_device(Xv) if self.nv else self.d_X
        self.d_yv = cuda.to_device(yv) if self.nv else self.d_y
        self.d_ident = cuda.to_device(np.arange(max(self.n, self.nv), dtype=np.int64))
        self.sizes = np.asarray(sizes, np.int64)
        self.d_model = tuple(cuda.to_device(np.asarray(a, np.int64)) for a in (sizes, woff, boff, aoff))
        self.act = code_of(act)
        self.d_c = cuda.to_device(np.asarray(c))
        self.n_state = n_state
        self.shared = shared_bytes(self.sizes, bs, self.dtype.itemsize)
        elems = work_elements(self.sizes, bs)
        self.d_scratch = cuda.device_array((1, 1) if self.shared else (R, elems), self.dtype)
        self.d_no_order = cuda.to_device(np.zeros((1, 1, 1), np.int64))

    def run(self, h, loss_code, controls, l1_end, epoch0, n_epochs, k_first, t, row, thetas, states, orders,
            tables, tab_of, trace, histories, val_histories, stop=None):
        """Train every run of the set from epoch0 (batch k_first), step t, trace row row, for n_epochs
        epochs. ``thetas``/``states``: the runs' host arrays (P,), (rows, P), updated in place;
        ``orders(e_from, e_to)``: the row orders of those epochs, (R, e_to − e_from, n) int64 (None when
        unshuffled); ``tables``: (U, steps of the call) float64 base lrs, and power_t per table, as
        (base, power_t) pairs; ``tab_of[r]``: run r's table; ``trace``: (mode, every, srows, per-run
        host trace arrays (index, scalars, params, grad, update, state) or None); histories: per-run
        host arrays. Returns an (R, N_STATUS) int64 array: each run's step, trace row, diverging step
        (-1), and the epoch and batch where it stopped (-2 in S_DIV: stopped by ``stop``)."""
        R, P, n, bs = self.R, self.P, self.n, self.bs
        spe = _cdiv(n, bs)
        module = optim.module_of(h)
        kern = KERNELS[module]
        K1 = n_scalars(h) + 1
        mode, every, srows, host_tr = trace
        S = int(np.asarray(srows).shape[0])
        e_end = epoch0 + n_epochs
        total_steps = (spe - k_first) + (n_epochs - 1) * spe
        d_theta = cuda.to_device(np.ascontiguousarray(np.stack([np.asarray(a) for a in thetas])))
        d_state = cuda.to_device(np.ascontiguousarray(np.stack([np.asarray(a) for a in states])))
        d_hist = cuda.to_device(np.ascontiguousarray(np.stack(histories)))
        nv = self.nv
        d_val = cuda.to_device(np.ascontiguousarray(np.stack(val_histories))) if nv else d_hist
        status = np.zeros((R, N_STATUS), np.int64)
        status[:, S_T], status[:, S_ROW], status[:, S_DIV], status[:, S_E], status[:, S_K] = t, row, -1, epoch0, k_first
        d_status = cuda.to_device(status)
        d_tab_of = cuda.to_device(np.asarray(tab_of, np.int64))
        d_controls = cuda.to_device(np.asarray(controls))
        sr = np.zeros(max(S, 1), np.int64)
        sr[:S] = srows
        d_srows = cuda.to_device(sr)
        U = len(tables)
        # steps per launch: the tables of its steps and the row orders of its epochs fit one upload each
        cap_steps = max(1, TABLE_BYTES // (U * K1 * 8))
        if mode != TRACE_OFF:  # and the device trace rows of its steps fit TRACE_BYTES
            per_row = 2 * 8 + N_SCALAR_COLS * self.dtype.itemsize
            if mode == TRACE_FULL:
                per_row += (3 + S) * P * self.dtype.itemsize
            cap_steps = min(cap_steps, max(1, TRACE_BYTES // (R * per_row) - 1) * every)
        cap_epochs = max(1, ORDER_BYTES // (R * n * 8)) if orders is not None else n_epochs
        e, k, done_steps = epoch0, k_first, 0
        d_tr, tr_rows = None, 0
        sizes_d, woff_d, boff_d, aoff_d = self.d_model
        cfg = (R, TPB, 0, self.shared) if self.shared else (R, TPB)
        stopped = False
        while done_steps < total_steps:
            live = status[:, S_DIV] < 0
            if not live.any():
                break
            if stop is not None and stop[0] != 0:
                stopped = True
                break
            m = min(cap_epochs, e_end - e)  # epochs this launch may touch
            steps = min(cap_steps, (spe - k) + (m - 1) * spe, total_steps - done_steps)
            t0 = t + done_steps
            tab = np.empty((U, steps, K1), np.float64)
            for u, (base, power_t) in enumerate(tables):
                _fill_table(h, np.ascontiguousarray(base[done_steps:done_steps + steps], np.float64),
                            float(power_t), t0, tab[u])
            d_tab = cuda.to_device(tab)
            e_last = e + (k + steps - 1) // spe  # the last epoch with a step in this launch
            if orders is not None:
                d_order, order_e0 = cuda.to_device(np.ascontiguousarray(orders(e, e_last + 1))), e
            else:
                d_order, order_e0 = self.d_no_order, 0
            # the runs still going are all at the same step and trace row; a step is recorded when on
            # the trace_every grid, or when it diverges
            row0 = int(status[live, S_ROW][0])
            rows = (_cdiv(t0 + steps, every) - _cdiv(t0, every) + 1) if mode != TRACE_OFF else 0
            if mode != TRACE_OFF and (d_tr is None or tr_rows < rows):
                d_tr, tr_rows = self._trace_buffers(rows, mode, S), rows
            tr = d_tr if mode != TRACE_OFF else self._no_trace()
            kern[cfg](self.d_X, self.d_y, self.d_Xv, self.d_yv, nv, self.d_ident, d_order, order_e0,
                      orders is not None, d_theta, d_state, self.d_scratch, bool(self.shared), sizes_d, woff_d, boff_d,
                      aoff_d, self.act, int(loss_code), self.d_c, d_controls, int(l1_end), h, d_tab, d_tab_of, e_end,
                      steps, t0, row0, bs, int(mode), int(every), *tr, d_srows, S, d_hist, d_val, d_status)
            status = d_status.copy_to_host()
            if mode != TRACE_OFF:
                self._copy_trace(tr, host_tr, row0, np.where(live, status[:, S_ROW] - row0, 0), mode, S)
            done_steps += steps
            e, k = e + (k + steps) // spe, (k + steps) % spe
        theta_all = d_theta.copy_to_host()
        state_all = d_state.copy_to_host()
        hist = d_hist.copy_to_host()
        val = d_val.copy_to_host() if nv else None
        lo = max(0, epoch0 - 1)
        for r in range(R):
            thetas[r][...] = theta_all[r]
            states[r][...] = state_all[r]
            hi = int(status[r, S_E]) + 1
            histories[r][lo:hi] = hist[r, lo:hi]
            if nv:
                val_histories[r][lo:hi] = val[r, lo:hi]
        if stopped:
            status[status[:, S_DIV] < 0, S_DIV] = -2
        return status

    def _trace_buffers(self, rows, mode, S):
        R, P, dt = self.R, self.P, self.dtype
        index = cuda.device_array((R, rows, 2), np.int64)
        scal = cuda.device_array((R, rows, N_SCALAR_COLS), dt)
        if mode == TRACE_FULL:
            vec = tuple(cuda.device_array((R, rows, P), dt) for _ in range(3))
            st = cuda.device_array((R, rows, max(S, 1), P), dt)
        else:
            vec = tuple(cuda.device_array((1, 1, 1), dt) for _ in range(3))
            st = cuda.device_array((1, 1, 1, 1), dt)
        return (index, scal, *vec, st)

    def _no_trace(self):
        if getattr(self, "_dummy_tr", None) is None:
            dt = self.dtype
            self._dummy_tr = (cuda.device_array((1, 1, 2), np.int64), cuda.device_array((1, 1, N_SCALAR_COLS), dt),
                              *(cuda.device_array((1, 1, 1), dt) for _ in range(3)),
                              cuda.device_array((1, 1, 1, 1), dt))
        return self._dummy_tr

    def _copy_trace(self, tr, host_tr, row0, hi, mode, S):
        """Each run's new trace rows (hi[r] device rows from 0) into its host arrays from row0."""
        index, scal, params, grad, update, st = tr
        nr = int(hi.max())
        if nr <= 0:
            return
        parts = [index[:, :nr].copy_to_host(), scal[:, :nr].copy_to_host()]
        if mode == TRACE_FULL:
            parts += [params[:, :nr].copy_to_host(), grad[:, :nr].copy_to_host(), update[:, :nr].copy_to_host(),
                      st[:, :nr].copy_to_host() if S else None]
        for r, arrays in enumerate(host_tr):
            m = int(hi[r])
            if m <= 0:
                continue
            for dst, src in zip(arrays, parts, strict=False):
                if src is not None and dst is not None:
                    dst[row0:row0 + m] = src[r, :m]


def call_lrs(lrs, per_step, epoch0, n_epochs, k_first, spe):
    """The base lr (before invscaling) of every step of a call, float64."""
    lrs = np.asarray(lrs, np.float64)
    steps = (spe - k_first) + (n_epochs - 1) * spe
    if per_step:
        return lrs[:steps]
    per_epoch = np.full(n_epochs, spe)
    per_epoch[0] = spe - k_first
    return np.repeat(lrs[:n_epochs], per_epoch)


def train_epochs_one(ctx, X, y, theta, state, model, loss_code, h, ctrl, c, work, order, shuffled, epoch0, n_epochs,
                     batch_size, t, row, trace, history, val, start0=0, stop=None, status=None):
    """``minireg.kernels.loop.train_epochs`` (same arguments, semantics and host-side effects) in one
    launch (or a few, see TABLE_BYTES/ORDER_BYTES), for one run."""
    if len(ctrl) == 5:
        lrs, per_step, power_t, l1_end, controls = ctrl
    else:
        (lrs, power_t, l1_end, controls), per_step = ctrl, False
    mode, every, tr_index, tr_scalars, tr_params, tr_grad, tr_update, tr_state, srows = trace
    Xv, yv, val_history = val
    n = X.shape[0]
    bs = min(batch_size, n)
    rs = ctx.one
    if rs is None or rs.X is not X or rs.Xv is not Xv:
        rs = ctx.one = RunSet(X, y, Xv, yv, model, c, bs, 1, theta.shape[0], state.shape[0], theta.dtype)
    spe = _cdiv(n, bs)
    k_first = int(start0) // bs
    status = np.zeros(2, np.int64) if status is None else status
    orders = (lambda a, b: np.asarray(order)[a - epoch0:b - epoch0][None]) if shuffled else None
    base = call_lrs(lrs, per_step, epoch0, n_epochs, k_first, spe)
    host_tr = [(tr_index, tr_scalars, tr_params, tr_grad, tr_update, tr_state)] if mode != TRACE_OFF else []
    st = rs.run(h, loss_code, controls, l1_end, epoch0, n_epochs, k_first, int(t), int(row), [theta], [state],
                orders, [(base, power_t)], [0], (mode, every, srows, host_tr), [history],
                [val_history] if Xv.shape[0] else [None], stop)[0]
    div = int(st[S_DIV])
    if div == -2:
        status[0], status[1] = st[S_E], st[S_K] * bs
        return int(st[S_T]), int(st[S_ROW]), -2
    if div >= 0:
        status[0], status[1] = st[S_E], st[S_K] * bs
    return int(st[S_T]), int(st[S_ROW]), div
