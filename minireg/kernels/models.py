"""Forward and backward passes of a dense network over a batch, on the flat parameter vector.

The linear model is the network with no hidden layer (sizes = [d, 1]). Layer k (0-based here,
named W{k+1}, b{k+1} outside) maps fan_in = sizes[k] to fan_out = sizes[k+1]:
    Z = A_prev @ W + b,   A = f(Z) for hidden layers, A = Z for the output layer
with W stored row-major (fan_in, fan_out) at theta[woff[k]:], b at theta[boff[k]:].
Layer k's outputs for row r, unit j live in ``acts[aoff[k] + r*fan_out + j]`` (and its deltas, the
loss gradient with respect to its pre-activation, at the same place in ``deltas``).
The input rows are ``X[idx[start + r]]`` (no copy of the batch is made).

Backward, for each layer from the last:  gW = A_prevᵀ·Δ,  gb = Σ_rows Δ,
    Δ_prev = (Δ·Wᵀ) ⊙ f'(A_prev)            (torch: addmm backward, then the activation backward)

Every product is written as row updates ``out[r, :] += s · M[i, :]`` over contiguous slices: that
form vectorizes without reassociating any sum, so results do not depend on the SIMD width. Each
layer works on slice views of the flat buffers (indexing views from 0 lets numba drop its
negative-index checks, which otherwise block vectorization).

The rows of a batch are taken four at a time (``_rows_by_four``, ``_grads_by_four``): each weight
and each gradient entry is loaded once for four row updates, and an output layer's four dot
products run as independent chains. Every sum still adds its terms in row order and in i (or j)
order, exactly as the one-row-at-a-time loop does, so the results are bit-identical to it; the last
B % 4 rows go one at a time.

The linear model (``act`` None: activations.kernel_arg) has passes of its own, ``_linear_forward``
and ``_linear_backward``: the same arithmetic in the same order for one layer with one output,
without the hidden layers' loops, which numba then does not compile for it.
"""
from ._jit import element, kernel
from .activations import (IDENTITY, RELU, SIGMOID, TANH, activate, by_model, code_of, constants,
                          derivative_from_output)
from .constants import ZERO


@element
def forward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, c):
    """Fill ``acts`` for rows idx[start:start+B]; the prediction of row r is acts[aoff[-1] + r].
    ``act``: activations.kernel_arg; the linear model's pass (act None) or the network's, whichever
    act's type names, is the only one compiled."""
    by_model(act, _linear_forward, _network_forward)(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, c)


@kernel
def _network_forward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, c):
    """An MLP's forward pass, layer by layer (see the module's docstring)."""
    c0 = c[ZERO]
    L = sizes.shape[0] - 1
    for k in range(L):
        fi = sizes[k]
        fo = sizes[k + 1]
        W = theta[woff[k]:woff[k] + fi * fo]
        b = theta[boff[k]:boff[k] + fo]
        Z = acts[aoff[k]:aoff[k] + B * fo]
        po = aoff[k - 1] if k > 0 else 0
        A = acts[po:po + B * fi]
        for p in range(B * fo):
            Z[p] = c0
        if B >= 4:
            _rows_by_four(X, idx, start, B, W, A, Z, k, fi, fo, c0)
        # the last B % 4 rows one at a time, on views that start at the first of them (indices
        # provably >= 0 keep numba's negative-index fix-up out of the loops, which vectorize then)
        r0 = B - B % 4
        Zr = Z[r0 * fo:]
        Ar = A[r0 * fi:] if k > 0 else A
        for r in range(B - r0):
            o = r * fo
            row = idx[start + r0 + r]
            if fo == 1:
                s = c0
                for i in range(fi):
                    s += (X[row, i] if k == 0 else Ar[r * fi + i]) * W[i]
                Zr[o] = s
            else:
                for i in range(fi):
                    a = X[row, i] if k == 0 else Ar[r * fi + i]
                    w = i * fo
                    for j in range(fo):
                        Zr[o + j] += a * W[w + j]
        # bias added after the product, as torch's addmm does; one loop per activation, so that
        # each is compiled with its code constant (no dispatch per element)
        code = code_of(act)
        if k == L - 1:  # the output layer: one unit, no activation
            b0 = b[0]
            for rb in range(B):
                Z[rb] = Z[rb] + b0
        elif code == IDENTITY:
            _bias_activate(Z, B, b, fo, IDENTITY, c)
        elif code == RELU:
            _bias_activate(Z, B, b, fo, RELU, c)
        elif code == TANH:
            _bias_activate(Z, B, b, fo, TANH, c)
        else:
            _bias_activate(Z, B, b, fo, SIGMOID, c)


@kernel
def _rows_by_four(X, idx, start, B, W, A, Z, k, fi, fo, c0):
    """forward's product Z += A_prev·W for rows 0..B-B%4-1, four rows at a time: each weight is
    loaded once for four row updates, and an output layer's four dot products are independent
    chains; every sum still runs over i in order. Kept out of forward's body: compiled inside it,
    these loops ran slower."""
    for blk in range(B // 4):
        r = 4 * blk
        o0, o1, o2, o3 = r * fo, (r + 1) * fo, (r + 2) * fo, (r + 3) * fo
        x0, x1, x2, x3 = idx[start + r], idx[start + r + 1], idx[start + r + 2], idx[start + r + 3]
        if fo == 1:  # one output: four dot products kept in registers
            s0 = s1 = s2 = s3 = c0
            for i in range(fi):
                a0, a1, a2, a3 = _four_inputs(X, A, k, x0, x1, x2, x3, r, fi, i)
                wi = W[i]
                s0 += a0 * wi
                s1 += a1 * wi
                s2 += a2 * wi
                s3 += a3 * wi
            Z[r], Z[r + 1], Z[r + 2], Z[r + 3] = s0, s1, s2, s3
            continue
        for i in range(fi):
            a0, a1, a2, a3 = _four_inputs(X, A, k, x0, x1, x2, x3, r, fi, i)
            _add_to_four_rows(Z, o0, o1, o2, o3, a0, a1, a2, a3, W, i * fo, fo)


@element
def _four_inputs(X, A, k, x0, x1, x2, x3, r, fi, i):
    """Input i of rows r..r+3 of layer k: from the data rows x0..x3 of X for the first layer, else
    from the previous layer's outputs in A."""
    if k == 0:
        return X[x0, i], X[x1, i], X[x2, i], X[x3, i]
    return A[r * fi + i], A[(r + 1) * fi + i], A[(r + 2) * fi + i], A[(r + 3) * fi + i]


@element
def _add_to_four_rows(out, o0, o1, o2, o3, s0, s1, s2, s3, M, w, n):
    """out[ok + j] += sk · M[w + j] for the four rows k and j < n: one load of M[w + j] for four
    row updates."""
    for j in range(n):
        m = M[w + j]
        out[o0 + j] += s0 * m
        out[o1 + j] += s1 * m
        out[o2 + j] += s2 * m
        out[o3 + j] += s3 * m


@element
def _bias_activate(Z, B, b, fo, code, c):
    """Z[r, :] = f(Z[r, :] + b) for the B rows of width fo."""
    cc = constants(c)
    for r in range(B):
        o = r * fo
        for j in range(fo):
            Z[o + j] = activate(code, Z[o + j] + b[j], cc)


@element
def _times_derivative(Dp, A, n, code, c):
    """Dp ⊙= f'(A)."""
    cc = constants(c)
    for p in range(n):
        Dp[p] = Dp[p] * derivative_from_output(code, A[p], cc)


@element
def backward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, deltas, grad, wt, c):
    """Given the output deltas (dL/dpred per row) in ``deltas``, write the full gradient to ``grad``.
    ``wt`` is scratch for one layer's transposed weights. (One model's pass compiled: see forward.)"""
    by_model(act, _linear_backward, _network_backward)(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts,
                                                         deltas, grad, wt, c)


@kernel
def _network_backward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, deltas, grad, wt, c):
    """An MLP's backward pass, from the last layer to the first (see the module's docstring)."""
    c0 = c[ZERO]
    L = sizes.shape[0] - 1
    for k in range(L - 1, -1, -1):
        fi = sizes[k]
        fo = sizes[k + 1]
        W = theta[woff[k]:woff[k] + fi * fo]
        gW = grad[woff[k]:woff[k] + fi * fo]
        gb = grad[boff[k]:boff[k] + fo]
        D = deltas[aoff[k]:aoff[k] + B * fo]
        po = aoff[k - 1] if k > 0 else 0
        A = acts[po:po + B * fi]
        Dp = deltas[po:po + B * fi]
        for p in range(fi * fo):
            gW[p] = c0
        for j in range(fo):
            gb[j] = c0
        if k > 0:
            # Δ_prev[r, :] = Σ_j Δ[r, j]·Wᵀ[j, :], accumulated over j in order, then ⊙ f'(A_prev)
            for i in range(fi):
                for j in range(fo):
                    wt[j * fi + i] = W[i * fo + j]
            for p in range(B * fi):
                Dp[p] = c0
        if B >= 4:
            _grads_by_four(X, idx, start, B, A, D, Dp, gW, gb, wt, k, fi, fo)
        # the last B % 4 rows one at a time, on views that start at the first of them (see forward)
        r0 = B - B % 4
        Dr = D[r0 * fo:]
        Ar = A[r0 * fi:] if k > 0 else A
        Dpr = Dp[r0 * fi:] if k > 0 else Dp
        for r in range(B - r0):
            o = r * fo
            row = idx[start + r0 + r]
            for j in range(fo):
                gb[j] += Dr[o + j]
            if fo == 1:
                d = Dr[o]
                for i in range(fi):
                    gW[i] += (X[row, i] if k == 0 else Ar[r * fi + i]) * d
            else:
                for i in range(fi):
                    a = X[row, i] if k == 0 else Ar[r * fi + i]
                    w = i * fo
                    for j in range(fo):
                        gW[w + j] += a * Dr[o + j]
            if k > 0:
                q = r * fi
                for j in range(fo):
                    d = Dr[o + j]
                    w = j * fi
                    for i in range(fi):
                        Dpr[q + i] += d * wt[w + i]
        if k > 0:
            code = code_of(act)
            if code == RELU:
                _times_derivative(Dp, A, B * fi, RELU, c)
            elif code == TANH:
                _times_derivative(Dp, A, B * fi, TANH, c)
            elif code == SIGMOID:
                _times_derivative(Dp, A, B * fi, SIGMOID, c)
            else:
                _times_derivative(Dp, A, B * fi, IDENTITY, c)


@kernel
def _grads_by_four(X, idx, start, B, A, D, Dp, gW, gb, wt, k, fi, fo):
    """backward's gb += Σ Δ, gW += A_prevᵀ·Δ and Δ_prev += Δ·Wᵀ for rows 0..B-B%4-1, four rows at
    a time (each weight and each gradient entry loaded once for four rows); gb and gW add the four
    rows' terms in row order, as row-by-row updates would."""
    for blk in range(B // 4):
        r = 4 * blk
        o0, o1, o2, o3 = r * fo, (r + 1) * fo, (r + 2) * fo, (r + 3) * fo
        x0, x1, x2, x3 = idx[start + r], idx[start + r + 1], idx[start + r + 2], idx[start + r + 3]
        for j in range(fo):
            gb[j] = gb[j] + D[o0 + j] + D[o1 + j] + D[o2 + j] + D[o3 + j]
        for i in range(fi):
            a0, a1, a2, a3 = _four_inputs(X, A, k, x0, x1, x2, x3, r, fi, i)
            if fo == 1:
                gW[i] = gW[i] + a0 * D[o0] + a1 * D[o1] + a2 * D[o2] + a3 * D[o3]
                continue
            w = i * fo
            for j in range(fo):
                gW[w + j] = gW[w + j] + a0 * D[o0 + j] + a1 * D[o1 + j] + a2 * D[o2 + j] + a3 * D[o3 + j]
        if k > 0:
            q0, q1, q2, q3 = r * fi, (r + 1) * fi, (r + 2) * fi, (r + 3) * fi
            for j in range(fo):
                d0, d1, d2, d3 = D[o0 + j], D[o1 + j], D[o2 + j], D[o3 + j]
                _add_to_four_rows(Dp, q0, q1, q2, q3, d0, d1, d2, d3, wt, j * fi, fi)


@kernel
def _linear_forward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, c):
    """The linear model's predictions Z[r] = (0 + Σ_i x_i·w_i) + b for the rows idx[start:start+B],
    four rows at a time as four independent chains (each sum in i order): the network's forward
    pass with one layer, bit for bit."""
    d = sizes[0]
    w = theta[woff[0]:woff[0] + d]
    b = theta[boff[0]]
    Z = acts[aoff[0]:aoff[0] + B]
    c0 = c[ZERO]
    for blk in range(B // 4):
        r = 4 * blk
        x0, x1, x2, x3 = idx[start + r], idx[start + r + 1], idx[start + r + 2], idx[start + r + 3]
        s0 = s1 = s2 = s3 = c0
        for i in range(d):
            wi = w[i]
            s0 += X[x0, i] * wi
            s1 += X[x1, i] * wi
            s2 += X[x2, i] * wi
            s3 += X[x3, i] * wi
        Z[r], Z[r + 1], Z[r + 2], Z[r + 3] = s0 + b, s1 + b, s2 + b, s3 + b
    for r in range(B - B % 4, B):
        row = idx[start + r]
        s = c0
        for i in range(d):
            s += X[row, i] * w[i]
        Z[r] = s + b


@kernel
def _linear_backward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, deltas, grad, wt, c):
    """The linear model's gradient from the output deltas D: gw = Xᵀ·D and gb = Σ D, each sum in row
    order (four rows' terms added per pass over gw): the network's backward pass with one layer, bit
    for bit."""
    d = sizes[0]
    D = deltas[aoff[0]:aoff[0] + B]
    gw = grad[woff[0]:woff[0] + d]
    c0 = c[ZERO]
    for i in range(d):
        gw[i] = c0
    s = c0
    for blk in range(B // 4):
        r = 4 * blk
        x0, x1, x2, x3 = idx[start + r], idx[start + r + 1], idx[start + r + 2], idx[start + r + 3]
        d0, d1, d2, d3 = D[r], D[r + 1], D[r + 2], D[r + 3]
        s = s + d0 + d1 + d2 + d3
        for i in range(d):
            gw[i] = gw[i] + X[x0, i] * d0 + X[x1, i] * d1 + X[x2, i] * d2 + X[x3, i] * d3
    for r in range(B - B % 4, B):
        row = idx[start + r]
        dr = D[r]
        s += dr
        for i in range(d):
            gw[i] += X[row, i] * dr
    grad[boff[0]] = s


@kernel
def predict_rows(X, ident, theta, sizes, woff, boff, aoff, act, acts, c, out):
    """Predictions for every row of X, forwarding as many rows at a time as ``acts`` holds."""
    n = X.shape[0]
    pred_off = aoff[aoff.shape[0] - 1]
    chunk = acts.shape[0] - pred_off  # rows the output block (width 1) can hold
    for start in range(0, n, chunk):
        B = min(chunk, n - start)
        forward(X, ident, start, B, theta, sizes, woff, boff, aoff, act, acts, c)
        for r in range(B):
            out[start + r] = acts[pred_off + r]
