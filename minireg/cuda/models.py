"""Forward and backward passes of a dense network on the GPU, one kernel launch per layer and pass.

Same flat layout and formulas as ``minireg.kernels.models`` (read its docstring): layer k maps
fan_in = fi to fan_out = fo with W (fi, fo) row-major at ``theta[woff:]``, b at ``theta[boff:]``;
its outputs for batch row r live at ``acts[aoff[k] + r*fo + j]`` and its deltas at the same place
in ``deltas``. Layer 0 reads its input rows straight from ``X[idx[start + r]]`` (no batch copy):
every kernel takes ``a_in < 0`` to mean "read X through idx", else the offset of the previous
layer's outputs in ``acts``.

- ``forward_hidden``: Z = act(A·W + b), a tiled matrix product in shared memory (TILE x TILE
  threads per output tile, the shared dimension in chunks of TILE) with the bias and the
  activation fused into the store.
- ``forward_out``: the one-output layer (fo = 1): one row per thread over a (TPB x KD) shared tile
  of A, fused with the loss: residual, per-row loss, dL/dpred into ``deltas`` and the block's sum
  of row losses into ``lpart``.
- ``grad_weights``: gW = Aᵀ·D and gb = Σ_rows D (tiled over the batch rows), split into segments
  of rows when the output is too small to fill the GPU; ``reduce_segments`` then adds the segment
  partials in segment order. L1's subgradient is added to the finished W1 sum, as on the CPU.
- ``delta_prev``: Δ_prev = (D·Wᵀ) ⊙ f'(A_prev), tiled like the forward.

Every dot product runs over its shared index in increasing order starting from 0, as the CPU
kernels do, so the forward values, the deltas and, when a batch is one segment, the gradients
are the CPU's to the last bit in the simulator (on a GPU, up to NVVM's FMA contraction). Every
kernel first checks the divergence flag and does nothing in the steps after a diverging one.
"""
from numba import cuda

from ._config import KD, TILE, TPB, kernel
from .activations import activate, derivative_from_output
from .losses import dloss_of_residual, loss_of_residual
from .reduce import block_sum, imin, skip_step


@kernel
def forward_hidden(dflag, t, X, idx, start, B, acts, a_in, a_out, theta, woff, boff, fi, fo, act, c):
    """acts[a_out + r*fo + j] = act(Σ_i A[r, i]·W[i, j] + b[j]). Grid (ceil(B/TILE), ceil(fo/TILE)),
    block (TILE, TILE): x runs over output columns j, y over rows r."""
    if skip_step(dflag, t):
        return
    As = cuda.shared.array((TILE, TILE), dtype=theta.dtype)
    Ws = cuda.shared.array((TILE, TILE), dtype=theta.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    r = cuda.blockIdx.x * TILE + ty
    j = cuda.blockIdx.y * TILE + tx
    s = c[0]
    for k0 in range(0, fi, TILE):
        k = k0 + tx
        if r < B and k < fi:
            if a_in < 0:
                As[ty, tx] = X[idx[start + r], k]
            else:
                As[ty, tx] = acts[a_in + r * fi + k]
        else:
            As[ty, tx] = c[0]
        kw = k0 + ty
        if kw < fi and j < fo:
            Ws[ty, tx] = theta[woff + kw * fo + j]
        else:
            Ws[ty, tx] = c[0]
        cuda.syncthreads()
        for kk in range(imin(TILE, fi - k0)):
            s += As[ty, kk] * Ws[kk, tx]
        cuda.syncthreads()
    if r < B and j < fo:
        z = s + theta[boff + j]  # bias after the product, as torch's addmm
        acts[a_out + r * fo + j] = activate(act, z, c)


@kernel
def forward_out(dflag, t, X, idx, start, B, acts, a_in, theta, woff, boff, fi, y, loss_code, c, inv_b,
                deltas, d_out, with_grad, lpart, part0):
    """Prediction, loss and dL/dpred of rows start..start+B (one per thread, TPB per block).
    Writes ``deltas[d_out + r] = l'(r)/B`` when with_grad, and the sum of the block's row losses to
    ``lpart[part0 + blockIdx.x]``."""
    if skip_step(dflag, t):
        return
    Xs = cuda.shared.array((TPB, KD), dtype=theta.dtype)
    Ws = cuda.shared.array(KD, dtype=theta.dtype)
    Ls = cuda.shared.array(TPB, dtype=theta.dtype)
    tid = cuda.threadIdx.x
    r0 = cuda.blockIdx.x * TPB
    r = r0 + tid
    s = c[0]
    for k0 in range(0, fi, KD):
        nk = imin(KD, fi - k0)
        # coalesced load of the (TPB rows x KD columns) tile: consecutive threads, consecutive columns
        for m in range(KD):
            e = m * TPB + tid
            rr = e // KD
            kk = e - rr * KD
            if r0 + rr < B and kk < nk:
                if a_in < 0:
                    Xs[rr, kk] = X[idx[start + r0 + rr], k0 + kk]
                else:
                    Xs[rr, kk] = acts[a_in + (r0 + rr) * fi + k0 + kk]
            else:
                Xs[rr, kk] = c[0]
        if tid < nk:
            Ws[tid] = theta[woff + k0 + tid]
        cuda.syncthreads()
        for kk in range(nk):
            s += Xs[tid, kk] * Ws[kk]
        cuda.syncthreads()
    loss = c[0]
    if r < B:
        res = (s + theta[boff]) - y[idx[start + r]]
        loss = loss_of_residual(loss_code, res, c[4], c)
        if with_grad:
            deltas[d_out + r] = dloss_of_residual(loss_code, res, c[4], c) * inv_b
    total = block_sum(Ls, loss)
    if tid == 0:
        lpart[part0 + cuda.blockIdx.x] = total


@kernel
def grad_weights(dflag, t, X, idx, start, B, acts, a_in, deltas, d_off, fi, fo, seg_rows, out, w_base,
                 b_base, seg_stride, theta, woff, l1, l1_end, c):
    """Σ over the rows of segment blockIdx.z of A[r, i]·D[r, j] (into out[w_base + seg*seg_stride +
    i*fo + j]) and of D[r, j] (into out[b_base + seg*seg_stride + j], by the blocks of the first row
    tile). Grid (ceil(fo/TILE), ceil(fi/TILE), segments), block (TILE, TILE): x runs over j, y over i.
    With one segment ``out`` is the gradient itself and L1 is added here (theta indices < l1_end)."""
    if skip_step(dflag, t):
        return
    As = cuda.shared.array((TILE, TILE), dtype=theta.dtype)
    Ds = cuda.shared.array((TILE, TILE), dtype=theta.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    i0 = cuda.blockIdx.y * TILE
    i = i0 + ty
    j = cuda.blockIdx.x * TILE + tx
    seg = cuda.blockIdx.z
    rs = seg * seg_rows
    re = imin(B, rs + seg_rows)
    do_bias = cuda.blockIdx.y == 0 and ty == 0
    acc = c[0]
    bacc = c[0]
    for r0 in range(rs, re, TILE):
        rr = r0 + ty
        ia = i0 + tx
        if rr < re and ia < fi:
            if a_in < 0:
                As[ty, tx] = X[idx[start + rr], ia]
            else:
                As[ty, tx] = acts[a_in + rr * fi + ia]
        else:
            As[ty, tx] = c[0]
        if rr < re and j < fo:
            Ds[ty, tx] = deltas[d_off + rr * fo + j]
        else:
            Ds[ty, tx] = c[0]
        cuda.syncthreads()
        nr = imin(TILE, re - r0)
        for q in range(nr):
            acc += As[q, ty] * Ds[q, tx]
        if do_bias:
            for q in range(nr):
                bacc += Ds[q, tx]
        cuda.syncthreads()
    base = seg * seg_stride
    if i < fi and j < fo:
        p = i * fo + j
        g = acc
        if woff + p < l1_end:
            w = theta[woff + p]
            if w > 0:
                g += l1
            elif w < 0:
                g -= l1
        out[w_base + base + p] = g
    if do_bias and j < fo:
        out[b_base + base + j] = bacc


@kernel
def reduce_segments(dflag, t, part, nseg, seg_stride, fi, fo, grad, woff, boff, theta, l1, l1_end, c):
    """grad of one layer = Σ_seg part[seg] in segment order (W entries then b entries), plus L1."""
    if skip_step(dflag, t):
        return
    nw = fi * fo
    for p in range(cuda.grid(1), nw + fo, cuda.gridsize(1)):
        acc = c[0]
        for s in range(nseg):
            acc += part[s * seg_stride + p]
        if p < nw:
            q = woff + p
            if q < l1_end:
                w = theta[q]
                if w > 0:
                    acc += l1
                elif w < 0:
                    acc -= l1
            grad[q] = acc
        else:
            grad[boff + p - nw] = acc


@kernel
def delta_prev(dflag, t, B, deltas, d_off, acts, a_off, theta, woff, fi, fo, act, c):
    """deltas[a_off + r*fi + i] = (Σ_j D[r, j]·W[i, j]) · f'(acts[a_off + r*fi + i]) with D at
    deltas[d_off:]. Grid (ceil(B/TILE), ceil(fi/TILE)), block (TILE, TILE): x runs over i, y over r."""
    if skip_step(dflag, t):
        return
    Ds = cuda.shared.array((TILE, TILE), dtype=theta.dtype)
    Ws = cuda.shared.array((TILE, TILE), dtype=theta.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    i0 = cuda.blockIdx.y * TILE
    r = cuda.blockIdx.x * TILE + ty
    i = i0 + tx
    iw = i0 + ty
    acc = c[0]
    for j0 in range(0, fo, TILE):
        jd = j0 + tx
        if r < B and jd < fo:
            Ds[ty, tx] = deltas[d_off + r * fo + jd]
        else:
            Ds[ty, tx] = c[0]
        # Ws[jj, ii] = W[i0 + ii, j0 + jj], read along the rows of W (consecutive threads, consecutive j)
        if iw < fi and jd < fo:
            Ws[tx, ty] = theta[woff + iw * fo + jd]
        else:
            Ws[tx, ty] = c[0]
        cuda.syncthreads()
        for q in range(imin(TILE, fo - j0)):
            acc += Ds[ty, q] * Ws[q, tx]
        cuda.syncthreads()
    if r < B and i < fi:
        q = a_off + r * fi + i
        deltas[q] = acc * derivative_from_output(act, acts[q], c)
