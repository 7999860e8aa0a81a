"""The host driver of the CUDA backend: ``train_epochs_cuda`` has exactly the arguments, the
semantics and the host-visible side effects of ``minireg.kernels.loop.train_epochs`` (read its
docstring). A run whose step is small goes to ``onelaunch.py`` (the whole call in one kernel launch;
its docstring has the rule); the others run every step as a short sequence of kernel launches on
one stream (the "multi-launch" path):

    forward_hidden × (L−1) → forward_out (loss, dL/dpred) → [grad_weights (+ reduce_segments),
    delta_prev] per layer from the last → loss_and_clip → <optimizer>_step → record_* (traced steps)

Nothing is copied between the steps. The data (X, y, validation rows), the row index, the
constants and every buffer stay on the device in a :class:`Context` for the whole run (train()
calls this once per chunk of epochs, once per epoch with early stopping or a plateau schedule);
each call uploads the parameters and the optimizer state (P numbers each; the host may have
touched them between calls) and, when shuffling, the permutations of its epochs, and copies back
only what changed: the parameters, the state, the new trace rows and the history entries of the
epochs it ran.

Divergence: the optimizer (non-finite new parameter) and loss_and_clip (non-finite loss) write the
step index into a device flag; every kernel of a later step reads it first and does nothing, so the
diverging step is the last one that changes anything, as on the CPU. The host reads the flag (a
synchronization) only every CHECK_EVERY launched steps and at the end of the call, then stops
launching. A trace row is written for every recorded step (t % every == 0); when the diverging
step was not one, its row is written after the fact from the device buffers, which no later step
touched.

Step scalars (the step's lr under invscaling, and the optimizer's ``step_scalars``, e.g. Adam's
lr/(1−β1ᵗ) and √(1−β2ᵗ)) are computed on the host by the compiled functions the CPU loop runs (float
** int by squaring, as numba compiles it), so they are the CPU's to the last bit.
"""

import numpy as np
from numba import cuda

from .. import optim
from ..kernels._jit import kernel as cpu_kernel
from ..kernels.loop import CD_CLIP_NORM, CD_CLIP_VALUE, CD_L1, N_SCALAR_COLS, TRACE_FULL, TRACE_OFF
from . import models as M
from . import onelaunch
from .activations import code_of
from . import optimizers as OPT
from . import reduce as R
from ._config import BT, CHECK_EVERY, CW, TILE, TPB

# grid-stride kernels never need more blocks than this
_MAX_BLOCKS = 4096
# the epoch-end losses forward this many bytes of hidden activations at a time, at most
_EVAL_BYTES = 64 << 20


@cpu_kernel  # a CPU function, compiled with the CPU kernels' options
def _step_lrs(base_lrs, power_t, t0, out):
    """out[k] = the lr of step t = t0 + k, base_lrs[k] divided by (t+1)^power_t under invscaling, in
    float64, with the CPU loop's expression."""
    for k in range(base_lrs.shape[0]):
        lr = base_lrs[k]
        if power_t > 0:
            lr = lr / (t0 + k + 1.0) ** power_t
        out[k] = lr


def _cdiv(a, b):
    return -(-a // b)


def _sm_count():
    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # the simulator's device has no attributes
        return 1


class Context:
    """Device-resident data and buffers of one training run (created by train(), bound on the
    first call of train_epochs_cuda)."""

    def __init__(self):
        self.bound = False
        self.path = self.path_why = None  # onelaunch.plan's choice, made on the first call
        self.one = None  # the one-launch path's RunSet

    # ---------------------------------------------------------------------------- setup (once)
    def bind(self, X, y, theta, state, model, c, batch_size, history, val, n_state):
        sizes, woff, boff, aoff, act = model
        Xv, yv, val_history = val
        self.X, self.y, self.Xv, self.yv = X, y, Xv, yv  # host references: same run, same arrays
        self.dtype = theta.dtype
        self.dt = theta.dtype.type
        self.sizes = [int(s) for s in sizes]
        self.woff = [int(v) for v in woff]
        self.boff = [int(v) for v in boff]
        self.aoff = [int(v) for v in aoff]
        self.act = code_of(act)
        self.L = len(self.sizes) - 1
        self.P = theta.shape[0]
        n, nv = X.shape[0], Xv.shape[0]
        self.n, self.nv = n, nv
        bs = min(batch_size, n)
        self.bs = bs
        P = self.P
        self.d_X = cuda.to_device(X)
        self.d_y = cuda.to_device(y)
        self.d_Xv = cuda.to_device(Xv) if nv else None
        self.d_yv = cuda.to_device(yv) if nv else None
        self.d_ident = cuda.to_device(np.arange(max(n, nv), dtype=np.int64))
        self.d_c = cuda.to_device(c)
        self.d_theta = cuda.device_array(P, self.dtype)
        self.d_state = cuda.device_array(state.shape, self.dtype)
        self.d_grad = cuda.to_device(np.zeros(P, self.dtype))
        self.d_upd = cuda.to_device(np.zeros(P, self.dtype))
        self.d_pold = cuda.to_device(np.zeros(P, self.dtype))
        nacts = bs * sum(self.sizes[1:])
        self.d_acts = cuda.to_device(np.zeros(max(nacts, 1), self.dtype))
        self.d_deltas = cuda.to_device(np.zeros(max(nacts, 1), self.dtype))
        self.d_lpart = cuda.to_device(np.zeros(_cdiv(bs, TPB), self.dtype))
        self.d_dsc = cuda.to_device(np.zeros(4, self.dtype))
        self.d_flag = cuda.to_device(np.full(1, -1, np.int64))
        self.h_flag = np.full(1, -1, np.int64)
        self.d_hist = cuda.to_device(history)
        self.d_val = cuda.to_device(val_history) if nv else self.d_hist
        # split-K over the batch rows for the weight gradients: enough blocks to fill the device
        self.target_blocks = 4 * _sm_count()
        self.seg_min = 4 * TILE
        part = 0
        for k in range(self.L):  # sized for any batch of at most bs rows (a last, smaller batch can
            fi, fo = self.sizes[k], self.sizes[k + 1]  # get more segments than bs rows once rounded)
            nseg = self._max_segments(bs, fi, fo)
            if nseg > 1:
                part = max(part, nseg * (fi * fo + fo))
        self.d_part = cuda.to_device(np.zeros(max(part, 1), self.dtype))
        # epoch-end losses: whole chunks of rows (a multiple of TPB, so the per-block loss partials
        # of consecutive chunks line up) through their own activation buffer
        m = max(n, nv)
        hid = sum(self.sizes[1:-1])
        cap = max(TPB, _EVAL_BYTES // max(1, hid * self.dtype.itemsize))
        rows = min(_cdiv(m, TPB) * TPB, max(_cdiv(bs, TPB) * TPB, cap // TPB * TPB))
        self.eval_rows = rows
        self.aoff_eval = [0] + list(np.cumsum(self.sizes[1:-1]) * rows)
        self.d_acts_eval = cuda.to_device(np.zeros(max(rows * hid, 1), self.dtype))
        self.d_lpart_eval = cuda.to_device(np.zeros(_cdiv(m, TPB), self.dtype))
        self.n_state = n_state
        # what the optimizer kernels get for the trace arrays when they record nothing (trace_buffers
        # replaces d_srows by the used state rows of a full trace)
        dummy2 = cuda.device_array((1, 1), self.dtype)
        self.no_trace = (cuda.device_array((1, N_SCALAR_COLS), self.dtype), dummy2, dummy2, dummy2,
                         cuda.device_array((1, 1, 1), self.dtype))
        self.d_srows = cuda.to_device(np.zeros(1, np.int64))
        self.trace_rows = 0
        self.d_tr = None
        self.bound = True

    def _max_segments(self, B, fi, fo):
        """Segments wanted for B rows before rounding their rows up to whole tiles: never fewer
        than segments() gives for B rows, and not decreasing in B, so it bounds every batch <= B."""
        out_blocks = _cdiv(fi, CW) if fo == 1 else _cdiv(fi, BT) * _cdiv(fo, BT)
        return max(1, min(_cdiv(self.target_blocks, out_blocks), _cdiv(B, self.seg_min), 65535))

    def segments(self, B, fi, fo):
        """(number of row segments, rows per segment) of the weight-gradient kernel of a layer for
        B rows: grad_one_output when fo == 1, else grad_weights."""
        seg_rows = _cdiv(_cdiv(B, self._max_segments(B, fi, fo)), TILE) * TILE
        return _cdiv(B, seg_rows), seg_rows

    def trace_buffers(self, rows, mode, srows):
        """Device trace rows for one call (row 0 = the call's first row), reused when large enough."""
        if self.d_tr is not None and self.trace_rows >= rows and self.trace_mode == mode:
            return self.d_tr
        P, S = self.P, self.n_state
        scal = cuda.device_array((rows, N_SCALAR_COLS), self.dtype)
        if mode == TRACE_FULL:
            vec = tuple(cuda.device_array((rows, P), self.dtype) for _ in range(3))
            st = cuda.device_array((rows, max(S, 1), P), self.dtype)
            sr = np.zeros(max(S, 1), np.int64)
            sr[:S] = srows
            self.d_srows = cuda.to_device(sr)
        else:
            vec, st = (None, None, None), None
        self.d_tr = (scal, *vec, st)
        self.trace_rows, self.trace_mode = rows, mode
        return self.d_tr

    # ---------------------------------------------------------------------------- launches
    def forward(self, t, d_X, d_y, idx, start, B, acts, aoff, loss_code, inv_b, with_grad, lpart, part0):
        """Forward rows idx[start:start+B] of d_X; the loss partials go to lpart[part0:], dL/dpred
        to the deltas when with_grad."""
        c, th, fl, sz = self.d_c, self.d_theta, self.d_flag, self.sizes
        for k in range(self.L - 1):
            fi, fo = sz[k], sz[k + 1]
            M.forward_hidden[(_cdiv(B, BT), _cdiv(fo, BT)), (TILE, TILE)](
                fl, t, d_X, idx, start, B, acts, aoff[k - 1] if k else -1, aoff[k], th, self.woff[k],
                self.boff[k], fi, fo, self.act, c)
        k = self.L - 1
        M.forward_out[_cdiv(B, TPB), TPB](
            fl, t, d_X, idx, start, B, acts, aoff[k - 1] if k else -1, th, self.woff[k], self.boff[k],
            sz[k], d_y, loss_code, c, inv_b, self.d_deltas, aoff[k], with_grad, lpart, part0)

    def backward(self, t, idx, start, B, l1, l1_end):
        c, th, fl, sz, aoff = self.d_c, self.d_theta, self.d_flag, self.sizes, self.aoff
        for k in range(self.L - 1, -1, -1):
            fi, fo = sz[k], sz[k + 1]
            a_in = aoff[k - 1] if k else -1
            nseg, seg_rows = self.segments(B, fi, fo)
            lend = l1_end if k == 0 else 0
            if nseg == 1:  # the sums go straight into the gradient, L1 included
                out, w_base, b_base, stride, lend_here = self.d_grad, self.woff[k], self.boff[k], 0, lend
            else:  # per-segment partials, then reduce_segments adds them in order (and L1)
                out, w_base, b_base, stride, lend_here = self.d_part, 0, fi * fo, fi * fo + fo, 0
            if fo == 1:
                M.grad_one_output[(_cdiv(fi, CW), nseg), TPB](
                    fl, t, self.d_X, idx, start, B, self.d_acts, a_in, self.d_deltas, aoff[k], fi, seg_rows, out,
                    w_base, b_base, stride, th, self.woff[k], l1, lend_here, c)
            else:
                M.grad_weights[(_cdiv(fo, BT), _cdiv(fi, BT), nseg), (TILE, TILE)](
                    fl, t, self.d_X, idx, start, B, self.d_acts, a_in, self.d_deltas, aoff[k], fi, fo, seg_rows,
                    out, w_base, b_base, stride, th, self.woff[k], l1, lend_here, c)
            if nseg > 1:
                M.reduce_segments[min(_cdiv(stride, TPB), _MAX_BLOCKS), TPB](
                    fl, t, self.d_part, nseg, stride, fi, fo, self.d_grad, self.woff[k], self.boff[k], th, l1,
                    lend, c)
            if k > 0:
                M.delta_prev[(_cdiv(B, BT), _cdiv(fi, BT)), (TILE, TILE)](
                    fl, t, B, self.d_deltas, aoff[k], self.d_acts, aoff[k - 1], th, self.woff[k], fi, fo,
                    self.act, c)

    def dataset_loss(self, t, d_X, d_y, nrows, out, e, loss_code):
        """out[e] = mean loss over the nrows rows of d_X at the current parameters."""
        R_ = self.eval_rows
        for start in range(0, nrows, R_):
            B = min(R_, nrows - start)
            self.forward(t, d_X, d_y, self.d_ident, start, B, self.d_acts_eval, self.aoff_eval, loss_code,
                         self.dt(1), 0, self.d_lpart_eval, start // TPB)
        R.mean_loss[1, TPB](self.d_flag, t, self.d_lpart_eval, _cdiv(nrows, TPB), self.dt(nrows), out, e,
                            self.d_c)

    def read_flag(self):
        self.d_flag.copy_to_host(self.h_flag)
        return int(self.h_flag[0])


def train_epochs_cuda(ctx, X, y, theta, state, model, loss_code, h, ctrl, c, work, order, shuffled,
                      epoch0, n_epochs, batch_size, t, row, trace, history, val, start0=0, stop=None,
                      status=None):
    """``minireg.kernels.loop.train_epochs`` on the GPU; see the module docstring. The host loop
    reads ``stop[0]`` before every step (Ctrl-C) and returns -2 with (epoch, row) in ``status``.
    A small run goes to onelaunch.py instead (chosen on the first call, kept for the run)."""
    if ctx.path is None:
        ctx.path, ctx.path_why = onelaunch.plan(model[0], min(batch_size, X.shape[0]), theta.dtype.itemsize)
    if ctx.path == onelaunch.PATH_ONE:
        return onelaunch.train_epochs_one(ctx, X, y, theta, state, model, loss_code, h, ctrl, c, work, order,
                                          shuffled, epoch0, n_epochs, batch_size, t, row, trace, history, val,
                                          start0, stop, status)
    module = optim.module_of(h)
    step_kernel = OPT.STEP[module]
    if len(ctrl) == 5:
        lrs, per_step, power_t, l1_end, controls = ctrl
    else:  # (lrs, power_t, l1_end, cd): one lr per epoch
        (lrs, power_t, l1_end, controls), per_step = ctrl, False
    lrs = np.asarray(lrs, np.float64)
    power_t = float(power_t)
    mode, every, tr_index, tr_scalars, tr_params, tr_grad, tr_update, tr_state, srows = trace
    Xv, yv, val_history = val
    if not ctx.bound or ctx.X is not X or ctx.Xv is not Xv:
        ctx.bind(X, y, theta, state, model, c, batch_size, history, val, srows.shape[0])
    dt = ctx.dt
    n = X.shape[0]
    nv = Xv.shape[0]
    bs = min(batch_size, n)
    full_batch = batch_size >= n
    spe = _cdiv(n, bs)
    P = ctx.P
    t, row = int(t), int(row)
    t_in, row_in = t, row
    every = int(every)
    traced = mode != TRACE_OFF
    full = mode == TRACE_FULL
    S = ctx.n_state

    ctx.d_theta.copy_to_device(theta)
    ctx.d_state.copy_to_device(state)
    d_order = cuda.to_device(np.ascontiguousarray(order[:n_epochs])) if shuffled else None
    d_tr = None
    if traced:
        d_tr = ctx.trace_buffers(_cdiv(n_epochs * spe, every) + 1, mode, srows)
        d_scal, d_params, d_grad_tr, d_update, d_state_tr = d_tr
    l1 = controls[CD_L1]
    clip_norm = controls[CD_CLIP_NORM]
    vclip = controls[CD_CLIP_VALUE]
    l1_end = int(l1_end)
    loss_code = int(loss_code)
    fl, c_d = ctx.d_flag, ctx.d_c
    opt_grid = min(_cdiv(P, TPB), _MAX_BLOCKS)
    sched = np.empty(spe)

    def base_lrs(t0, e, k):  # the lrs before invscaling of steps t0..t0+k-1, all of epoch e
        return lrs[t0 - t_in:t0 - t_in + k] if per_step else np.full(k, lrs[e - epoch0])

    k_first = int(start0) // bs  # the first epoch of a resumed run may start part-way in
    status = np.zeros(2, np.int64) if status is None else status

    def epoch_of(steps):  # the epochs of steps counted from this call's first step t_in
        steps = np.asarray(steps) - t_in
        first = spe - k_first
        return np.where(steps < first, epoch0, epoch0 + 1 + (steps - first) // spe)

    since_check = 0
    diverged = -1
    stopped = False
    for e in range(epoch0, epoch0 + n_epochs):
        idx = d_order[e - epoch0] if shuffled else ctx.d_ident
        k0 = k_first if e == epoch0 else 0
        _step_lrs(base_lrs(t, e, spe - k0), power_t, t, sched)
        for k in range(k0, spe):
            start = k * bs
            if stop is not None and stop[0] != 0:
                stopped = True
                status[0], status[1] = e, start
                break
            B = min(bs, n - start)
            nb = dt(B)
            ctx.forward(t, ctx.d_X, ctx.d_y, idx, start, B, ctx.d_acts, ctx.aoff, loss_code, dt(1) / nb, 1,
                        ctx.d_lpart, 0)
            ctx.backward(t, idx, start, B, l1, l1_end)
            R.loss_and_clip[1, TPB](fl, t, ctx.d_lpart, _cdiv(B, TPB), nb, ctx.d_hist,
                                    e - 1 if (full_batch and e > 0) else -1, ctx.d_grad, clip_norm, vclip,
                                    ctx.d_dsc, c_d)
            lr = sched[k - k0]
            lr_d = dt(lr)
            rec = traced and t % every == 0
            # a full trace's row is written by the optimizer kernel itself; trace="norms" needs the
            # norms (block reductions over P) of record_scalars
            orow = row - row_in if (rec and full) else -1
            tr_args = (orow, *(d_tr if full else ctx.no_trace), ctx.d_srows, S)
            step_kernel[opt_grid, TPB](fl, t, h, module.step_scalars(h, lr, t + 1), ctx.d_theta, ctx.d_grad,
                                       ctx.d_upd, ctx.d_state, ctx.d_pold, int(traced), ctx.d_dsc, vclip, lr_d,
                                       *tr_args)
            if rec:
                if not full:
                    _record(ctx, d_tr, t, row - row_in, lr_d, False, S)
                row += 1
            t += 1
            since_check += 1
            if since_check >= CHECK_EVERY:
                since_check = 0
                diverged = ctx.read_flag()
                if diverged >= 0:
                    break
        if diverged >= 0 or stopped:
            break
        if not full_batch or e == epoch0 + n_epochs - 1:
            ctx.dataset_loss(t, ctx.d_X, ctx.d_y, n, ctx.d_hist, e, loss_code)
        if nv > 0:
            ctx.dataset_loss(t, ctx.d_Xv, ctx.d_yv, nv, ctx.d_val, e, loss_code)
    if diverged < 0:
        diverged = ctx.read_flag()

    if diverged >= 0:
        e_last = int(epoch_of(diverged))
        status[0] = e_last
        status[1] = (diverged - t_in + k_first) % spe * bs  # the diverging step's first row in its epoch
        recorded = np.arange(_cdiv(t_in, every) * every, diverged, every, dtype=np.int64) if traced else None
        if traced:
            row = row_in + recorded.shape[0]
            if diverged % every != 0:  # the diverging step is always recorded
                _step_lrs(base_lrs(diverged, e_last, 1), power_t, diverged, sched)
                _record(ctx, d_tr, diverged, row - row_in, ctx.dt(sched[0]), full, S)
            recorded = np.append(recorded, diverged)
            row += 1
        t = diverged + 1
    else:
        e_last = int(status[0]) if stopped else epoch0 + n_epochs - 1
        if traced:
            recorded = np.arange(_cdiv(t_in, every) * every, t, every, dtype=np.int64)
    # ---- copy back what changed
    ctx.d_theta.copy_to_host(theta)
    ctx.d_state.copy_to_host(state)
    lo, hi = max(0, epoch0 - 1), e_last + 1
    ctx.d_hist[lo:hi].copy_to_host(history[lo:hi])
    if nv > 0:
        ctx.d_val[lo:hi].copy_to_host(val_history[lo:hi])
    if traced and row > row_in:
        nr = row - row_in
        tr_index[row_in:row, 0] = recorded
        tr_index[row_in:row, 1] = epoch_of(recorded)
        d_scal[:nr].copy_to_host(tr_scalars[row_in:row])
        if full:
            d_params[:nr].copy_to_host(tr_params[row_in:row])
            d_grad_tr[:nr].copy_to_host(tr_grad[row_in:row])
            d_update[:nr].copy_to_host(tr_update[row_in:row])
            if S:
                d_state_tr[:nr].copy_to_host(tr_state[row_in:row])
    return t, row, (-2 if stopped and diverged < 0 else diverged)


def _record(ctx, d_tr, t, drow, lr_d, full, S):
    d_scal, d_params, d_grad_tr, d_update, d_state_tr = d_tr
    R.record_scalars[1, TPB](ctx.d_flag, t, drow, d_scal, ctx.d_dsc, lr_d, int(not full), ctx.d_pold,
                             ctx.d_grad, ctx.d_upd, ctx.d_c)
    if full:
        R.record_vectors[min(_cdiv(ctx.P, TPB), _MAX_BLOCKS), TPB](
            ctx.d_flag, t, drow, d_params, d_grad_tr, d_update, d_state_tr, ctx.d_srows, S, ctx.d_pold,
            ctx.d_grad, ctx.d_upd, ctx.d_state)
