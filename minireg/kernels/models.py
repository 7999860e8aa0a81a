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
negative-index checks, which otherwise block vectorization: measured 10x on a 64x64 layer).
"""
from ._jit import element, kernel
from .activations import IDENTITY, RELU, SIGMOID, TANH, activate, derivative_from_output


@kernel
def forward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, c):
    """Fill ``acts`` for rows idx[start:start+B]; the prediction of row r is acts[aoff[-1] + r]."""
    L = sizes.shape[0] - 1
    for k in range(L):
        fi = sizes[k]
        fo = sizes[k + 1]
        W = theta[woff[k]:woff[k] + fi * fo]
        b = theta[boff[k]:boff[k] + fo]
        Z = acts[aoff[k]:aoff[k] + B * fo]
        po = aoff[k - 1] if k > 0 else 0
        A = acts[po:po + B * fi]
        hidden = k < L - 1
        for r in range(B):
            o = r * fo
            row = idx[start + r]
            if fo == 1:  # output layer: one dot product per row, kept in a register
                s = c[0]
                for i in range(fi):
                    s += (X[row, i] if k == 0 else A[r * fi + i]) * W[i]
                Z[o] = s
            else:
                for j in range(fo):
                    Z[o + j] = c[0]
                for i in range(fi):
                    a = X[row, i] if k == 0 else A[r * fi + i]
                    w = i * fo
                    for j in range(fo):
                        Z[o + j] += a * W[w + j]
            # bias added after the product, as torch's addmm does; one loop per activation, so
            # that each is compiled with its code constant (no dispatch per element)
            if not hidden or act == IDENTITY:
                _bias_activate(Z, o, b, fo, IDENTITY, c)
            elif act == RELU:
                _bias_activate(Z, o, b, fo, RELU, c)
            elif act == TANH:
                _bias_activate(Z, o, b, fo, TANH, c)
            else:
                _bias_activate(Z, o, b, fo, SIGMOID, c)


@element
def _bias_activate(Z, o, b, fo, code, c):
    for j in range(fo):
        Z[o + j] = activate(code, Z[o + j] + b[j], c)


@element
def _times_derivative(Dp, A, q, fi, code, c):
    for i in range(fi):
        Dp[q + i] = Dp[q + i] * derivative_from_output(code, A[q + i], c)


@kernel
def backward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, deltas, grad, wt, c):
    """Given the output deltas (dL/dpred per row) in ``deltas``, write the full gradient to ``grad``.
    ``wt`` is scratch for one layer's transposed weights."""
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
            gW[p] = c[0]
        for j in range(fo):
            gb[j] = c[0]
        for r in range(B):
            o = r * fo
            row = idx[start + r]
            for j in range(fo):
                gb[j] += D[o + j]
            if fo == 1:
                d = D[o]
                for i in range(fi):
                    gW[i] += (X[row, i] if k == 0 else A[r * fi + i]) * d
            else:
                for i in range(fi):
                    a = X[row, i] if k == 0 else A[r * fi + i]
                    w = i * fo
                    for j in range(fo):
                        gW[w + j] += a * D[o + j]
        if k > 0:
            # Δ_prev[r, :] = Σ_j Δ[r, j]·Wᵀ[j, :], accumulated over j in order, then ⊙ f'(A_prev)
            for i in range(fi):
                for j in range(fo):
                    wt[j * fi + i] = W[i * fo + j]
            for r in range(B):
                q = r * fi
                for i in range(fi):
                    Dp[q + i] = c[0]
                for j in range(fo):
                    d = D[r * fo + j]
                    w = j * fi
                    for i in range(fi):
                        Dp[q + i] += d * wt[w + i]
                if act == RELU:
                    _times_derivative(Dp, A, q, fi, RELU, c)
                elif act == TANH:
                    _times_derivative(Dp, A, q, fi, TANH, c)
                elif act == SIGMOID:
                    _times_derivative(Dp, A, q, fi, SIGMOID, c)
                else:
                    _times_derivative(Dp, A, q, fi, IDENTITY, c)


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
