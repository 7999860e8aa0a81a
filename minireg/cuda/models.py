"""Forward and backward passes of a dense network on the GPU, one kernel launch per layer and pass.

Same flat layout and formulas as ``minireg.kernels.models`` (read its docstring): layer k maps
fan_in = fi to fan_out = fo with W (fi, fo) row-major at ``theta[woff:]``, b at ``theta[boff:]``;
its outputs for batch row r live at ``acts[aoff[k] + r*fo + j]`` and its deltas at the same place
in ``deltas``. Layer 0 reads its input rows straight from ``X[idx[start + r]]`` (no batch copy):
every kernel takes ``a_in < 0`` to mean "read X through idx", else the offset of the previous
layer's outputs in ``acts``.

- ``forward_hidden``: Z = act(A·W + b), a tiled matrix product in shared memory (TILE x TILE
  threads per BT x BT output tile, each thread a REG x REG micro-tile held in registers, the
  shared dimension in chunks of TILE) with the bias and the activation fused into the store.
- ``forward_out``: the one-output layer (fo = 1): one row per thread over a (TPB x KD) shared tile
  of A, fused with the loss: residual, per-row loss, dL/dpred into ``deltas`` and the block's sum
  of row losses into ``lpart``.
- ``grad_weights``: gW = Aᵀ·D and gb = Σ_rows D (tiled over the batch rows like the forward),
  split into segments of rows when the output is too small to fill the GPU; ``reduce_segments``
  then adds the segment partials in segment order. L1's subgradient is added to the finished W1
  sum, as on the CPU. ``grad_one_output`` is the same for a one-output layer, whose gradient is a
  matrix-vector product: CW columns per block, the rows of a segment split over TPB/CW lanes.
- ``delta_prev``: Δ_prev = (D·Wᵀ) ⊙ f'(A_prev), tiled like the forward.

Every dot product of the forward pass and of the deltas runs over its shared index in increasing
order starting from 0, as the CPU kernels do, so those values are the CPU's to the last bit in the
simulator (on a GPU, up to NVVM's FMA contraction). Weight gradients are sums over the batch rows
in another order (row segments; lanes of grad_one_output), equal to the CPU's up to rounding. Every
kernel first checks the divergence flag and does nothing in the steps after a diverging one.
"""
from numba import cuda

from ..kernels.constants import DELTA, ZERO
from ._config import BT, BT1, CW, KD, KD1, REG, TILE, TPB, device, kernel
from .activations import activate, derivative_from_output
from .losses import dloss_of_residual, loss_of_residual
from .reduce import block_sum, imin, skip_step


@device
def with_l1(g, theta, q, l1, l1_end):
    """The finished gradient sum g of parameter q plus L1's subgradient l1·sign(theta[q]) when
    q < l1_end (the W1 entries of a linear model), as the CPU adds it."""
    if q < l1_end:
        w = theta[q]
        if w > 0:
            return g + l1
        if w < 0:
            return g - l1
    return g


@device
def fill(tile, value):
    """Every entry of a REG x REG register tile = value."""
    for m in range(REG):
        for n in range(REG):
            tile[m, n] = value


@device
def outer_add(tile, u, v):
    """tile += u ⊗ v for the REG x REG register tile of a tiled product (one step of its shared
    index: REG + REG values read from shared memory feed REG·REG multiply-adds)."""
    for m in range(REG):
        for n in range(REG):
            tile[m, n] += u[m] * v[n]


@kernel
def forward_hidden(dflag, t, X, idx, start, B, acts, a_in, a_out, theta, woff, boff, fi, fo, act, c):
    """acts[a_out + r*fo + j] = act(Σ_i A[r, i]·W[i, j] + b[j]). Grid (ceil(B/BT), ceil(fo/BT)),
    block (TILE, TILE): thread (tx, ty) computes rows r0 + ty + m·TILE and columns j0 + tx + n·TILE
    (m, n < REG), the shared dimension in chunks of TILE."""
    if skip_step(dflag, t):
        return
    As = cuda.shared.array((BT, TILE), dtype=theta.dtype)
    Ws = cuda.shared.array((TILE, BT), dtype=theta.dtype)
    acc = cuda.local.array((REG, REG), dtype=theta.dtype)
    av = cuda.local.array(REG, dtype=theta.dtype)
    wv = cuda.local.array(REG, dtype=theta.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    r0 = cuda.blockIdx.x * BT
    j0 = cuda.blockIdx.y * BT
    fill(acc, c[ZERO])
    for k0 in range(0, fi, TILE):
        k = k0 + tx
        for m in range(REG):  # A rows, along the shared dimension (consecutive threads, consecutive k)
            r = r0 + ty + m * TILE
            if r < B and k < fi:
                if a_in < 0:
                    As[ty + m * TILE, tx] = X[idx[start + r], k]
                else:
                    As[ty + m * TILE, tx] = acts[a_in + r * fi + k]
            else:
                As[ty + m * TILE, tx] = c[ZERO]
        kw = k0 + ty
        for n in range(REG):  # W rows (consecutive threads, consecutive j)
            j = j0 + tx + n * TILE
            if kw < fi and j < fo:
                Ws[ty, tx + n * TILE] = theta[woff + kw * fo + j]
            else:
                Ws[ty, tx + n * TILE] = c[ZERO]
        cuda.syncthreads()
        for kk in range(imin(TILE, fi - k0)):
            for m in range(REG):
                av[m] = As[ty + m * TILE, kk]
            for n in range(REG):
                wv[n] = Ws[kk, tx + n * TILE]
            outer_add(acc, av, wv)
        cuda.syncthreads()
    for m in range(REG):
        r = r0 + ty + m * TILE
        for n in range(REG):
            j = j0 + tx + n * TILE
            if r < B and j < fo:
                z = acc[m, n] + theta[boff + j]  # bias after the product, as torch's addmm
                acts[a_out + r * fo + j] = activate(act, z, c)


@kernel
def forward_out(dflag, t, X, idx, start, B, acts, a_in, theta, woff, boff, fi, y, loss_code, c, inv_b,
                deltas, d_out, with_grad, lpart, part0):
    """Prediction, loss and dL/dpred of rows start..start+B (one per thread, TPB per block).
    Writes ``deltas[d_out + r] = l'(r)/B`` when with_grad, and the sum of the block's row losses to
    ``lpart[part0 + blockIdx.x]``."""
    if skip_step(dflag, t):
        return
    Xs = cuda.shared.array((TPB, KD1), dtype=theta.dtype)  # +1: row r's column kk in bank (r·(KD+1)+kk)
    Ws = cuda.shared.array(KD, dtype=theta.dtype)
    Ls = cuda.shared.array(TPB, dtype=theta.dtype)
    tid = cuda.threadIdx.x
    r0 = cuda.blockIdx.x * TPB
    r = r0 + tid
    s = c[ZERO]
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
                Xs[rr, kk] = c[ZERO]
        if tid < nk:
            Ws[tid] = theta[woff + k0 + tid]
        cuda.syncthreads()
        for kk in range(nk):
            s += Xs[tid, kk] * Ws[kk]
        cuda.syncthreads()
    loss = c[ZERO]
    if r < B:
        res = (s + theta[boff]) - y[idx[start + r]]
        loss = loss_of_residual(loss_code, res, c[DELTA], c)
        if with_grad:
            deltas[d_out + r] = dloss_of_residual(loss_code, res, c[DELTA], c) * inv_b
    total = block_sum(Ls, loss)
    if tid == 0:
        lpart[part0 + cuda.blockIdx.x] = total


@kernel
def grad_weights(dflag, t, X, idx, start, B, acts, a_in, deltas, d_off, fi, fo, seg_rows, out, w_base,
                 b_base, seg_stride, theta, woff, l1, l1_end, c):
    """Σ over the rows of segment blockIdx.z of A[r, i]·D[r, j] (into out[w_base + seg*seg_stride +
    i*fo + j]) and of D[r, j] (into out[b_base + seg*seg_stride + j], by the blocks of the first row
    tile). Grid (ceil(fo/BT), ceil(fi/BT), segments), block (TILE, TILE): thread (tx, ty) computes
    i = i0 + ty + m·TILE, j = j0 + tx + n·TILE (m, n < REG), the rows in chunks of TILE.
    With one segment ``out`` is the gradient itself and L1 is added here (theta indices < l1_end)."""
    if skip_step(dflag, t):
        return
    As = cuda.shared.array((TILE, BT), dtype=theta.dtype)
    Ds = cuda.shared.array((TILE, BT), dtype=theta.dtype)
    acc = cuda.local.array((REG, REG), dtype=theta.dtype)
    bacc = cuda.local.array(REG, dtype=theta.dtype)
    av = cuda.local.array(REG, dtype=theta.dtype)
    dv = cuda.local.array(REG, dtype=theta.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    i0 = cuda.blockIdx.y * BT
    j0 = cuda.blockIdx.x * BT
    seg = cuda.blockIdx.z
    rs = seg * seg_rows
    re = imin(B, rs + seg_rows)
    do_bias = cuda.blockIdx.y == 0 and ty == 0
    fill(acc, c[ZERO])
    for n in range(REG):
        bacc[n] = c[ZERO]
    for r0 in range(rs, re, TILE):
        rr = r0 + ty
        for m in range(REG):  # A rows (consecutive threads, consecutive i)
            ia = i0 + tx + m * TILE
            if rr < re and ia < fi:
                if a_in < 0:
                    As[ty, tx + m * TILE] = X[idx[start + rr], ia]
                else:
                    As[ty, tx + m * TILE] = acts[a_in + rr * fi + ia]
            else:
                As[ty, tx + m * TILE] = c[ZERO]
        for n in range(REG):
            j = j0 + tx + n * TILE
            if rr < re and j < fo:
                Ds[ty, tx + n * TILE] = deltas[d_off + rr * fo + j]
            else:
                Ds[ty, tx + n * TILE] = c[ZERO]
        cuda.syncthreads()
        for q in range(imin(TILE, re - r0)):
            for m in range(REG):
                av[m] = As[q, ty + m * TILE]
            for n in range(REG):
                dv[n] = Ds[q, tx + n * TILE]
            outer_add(acc, av, dv)
            if do_bias:
                for n in range(REG):
                    bacc[n] += dv[n]
        cuda.syncthreads()
    base = seg * seg_stride
    for m in range(REG):
        i = i0 + ty + m * TILE
        for n in range(REG):
            j = j0 + tx + n * TILE
            if i < fi and j < fo:
                p = i * fo + j
                out[w_base + base + p] = with_l1(acc[m, n], theta, woff + p, l1, l1_end)
    if do_bias:
        for n in range(REG):
            j = j0 + tx + n * TILE
            if j < fo:
                out[b_base + base + j] = bacc[n]


@kernel
def grad_one_output(dflag, t, X, idx, start, B, acts, a_in, deltas, d_off, fi, seg_rows, out, w_base, b_base,
                    seg_stride, theta, woff, l1, l1_end, c):
    """grad_weights of a one-output layer (fo = 1: the linear model, the last layer of an MLP),
    where the tiles of grad_weights would be all padding: Σ over the rows of segment blockIdx.y of
    A[r, i]·D[r] and of D[r]. Grid (ceil(fi/CW), segments), block TPB threads: CW consecutive
    columns (a warp reads CW consecutive values of a row) times TPB/CW row lanes; lane l sums rows
    rs + l, rs + l + TPB/CW, ... and the lanes' sums are added in lane order."""
    if skip_step(dflag, t):
        return
    sh = cuda.shared.array(TPB, dtype=theta.dtype)
    shb = cuda.shared.array(TPB, dtype=theta.dtype)
    tid = cuda.threadIdx.x
    lane = tid % CW
    rl = tid // CW
    nl = TPB // CW
    i = cuda.blockIdx.x * CW + lane
    seg = cuda.blockIdx.y
    rs = seg * seg_rows
    re = imin(B, rs + seg_rows)
    do_bias = cuda.blockIdx.x == 0 and lane == 0
    acc = c[ZERO]
    bacc = c[ZERO]
    for r in range(rs + rl, re, nl):
        dr = deltas[d_off + r]
        if i < fi:
            if a_in < 0:
                acc += X[idx[start + r], i] * dr
            else:
                acc += acts[a_in + r * fi + i] * dr
        if do_bias:
            bacc += dr
    sh[tid] = acc
    shb[tid] = bacc
    cuda.syncthreads()
    if rl == 0:
        s = c[ZERO]
        sb = c[ZERO]
        for q in range(nl):
            s += sh[q * CW + lane]
            sb += shb[q * CW + lane]
        base = seg * seg_stride
        if i < fi:
            out[w_base + base + i] = with_l1(s, theta, woff + i, l1, l1_end)
        if do_bias:
            out[b_base + base] = sb


@kernel
def reduce_segments(dflag, t, part, nseg, seg_stride, fi, fo, grad, woff, boff, theta, l1, l1_end, c):
    """grad of one layer = Σ_seg part[seg] in segment order (W entries then b entries), plus L1."""
    if skip_step(dflag, t):
        return
    nw = fi * fo
    for p in range(cuda.grid(1), nw + fo, cuda.gridsize(1)):
        acc = c[ZERO]
        for s in range(nseg):
            acc += part[s * seg_stride + p]
        if p < nw:
            grad[woff + p] = with_l1(acc, theta, woff + p, l1, l1_end)
        else:
            grad[boff + p - nw] = acc


@kernel
def delta_prev(dflag, t, B, deltas, d_off, acts, a_off, theta, woff, fi, fo, act, c):
    """deltas[a_off + r*fi + i] = (Σ_j D[r, j]·W[i, j]) · f'(acts[a_off + r*fi + i]) with D at
    deltas[d_off:]. Grid (ceil(B/BT), ceil(fi/BT)), block (TILE, TILE): thread (tx, ty) computes
    rows r0 + ty + m·TILE and units i0 + tx + n·TILE (m, n < REG), j in chunks of TILE."""
    if skip_step(dflag, t):
        return
    Ds = cuda.shared.array((BT, TILE), dtype=theta.dtype)
    # Wt[jj, ii] = W[i0 + ii, j0 + jj]; the row padding keeps the transposing stores conflict-free
    Wt = cuda.shared.array((TILE, BT1), dtype=theta.dtype)
    acc = cuda.local.array((REG, REG), dtype=theta.dtype)
    dv = cuda.local.array(REG, dtype=theta.dtype)
    wv = cuda.local.array(REG, dtype=theta.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    r0 = cuda.blockIdx.x * BT
    i0 = cuda.blockIdx.y * BT
    fill(acc, c[ZERO])
    for j0 in range(0, fo, TILE):
        jd = j0 + tx
        for m in range(REG):  # D rows (consecutive threads, consecutive j)
            r = r0 + ty + m * TILE
            if r < B and jd < fo:
                Ds[ty + m * TILE, tx] = deltas[d_off + r * fo + jd]
            else:
                Ds[ty + m * TILE, tx] = c[ZERO]
        for n in range(REG):  # W rows i, read along j (consecutive threads, consecutive j)
            iw = i0 + ty + n * TILE
            if iw < fi and jd < fo:
                Wt[tx, ty + n * TILE] = theta[woff + iw * fo + jd]
            else:
                Wt[tx, ty + n * TILE] = c[ZERO]
        cuda.syncthreads()
        for q in range(imin(TILE, fo - j0)):
            for m in range(REG):
                dv[m] = Ds[ty + m * TILE, q]
            for n in range(REG):
                wv[n] = Wt[q, tx + n * TILE]
            outer_add(acc, dv, wv)
        cuda.syncthreads()
    for m in range(REG):
        r = r0 + ty + m * TILE
        for n in range(REG):
            i = i0 + tx + n * TILE
            if r < B and i < fi:
                q = a_off + r * fi + i
                deltas[q] = acc[m, n] * derivative_from_output(act, acts[q], c)
