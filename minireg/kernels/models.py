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
"""
from ._jit import kernel
from .activations import activate, derivative_from_output


@kernel
def forward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, c):
    """Fill ``acts`` for rows idx[start:start+B]; the prediction of row r is acts[aoff[-1] + r]."""
    L = sizes.shape[0] - 1
    for k in range(L):
        fi = sizes[k]
        fo = sizes[k + 1]
        wo = woff[k]
        bo = boff[k]
        ao = aoff[k]
        po = aoff[k - 1] if k > 0 else 0
        hidden = k < L - 1
        for r in range(B):
            out = ao + r * fo
            for j in range(fo):
                acts[out + j] = c[0]
            if k == 0:
                row = idx[start + r]
                for i in range(fi):
                    xi = X[row, i]
                    w = wo + i * fo
                    for j in range(fo):
                        acts[out + j] += xi * theta[w + j]
            else:
                inp = po + r * fi
                for i in range(fi):
                    xi = acts[inp + i]
                    w = wo + i * fo
                    for j in range(fo):
                        acts[out + j] += xi * theta[w + j]
            # bias added after the product, as torch's addmm does
            for j in range(fo):
                z = acts[out + j] + theta[bo + j]
                acts[out + j] = activate(act, z, c) if hidden else z


@kernel
def backward(X, idx, start, B, theta, sizes, woff, boff, aoff, act, acts, deltas, grad, c):
    """Given the output deltas (dL/dpred per row) in ``deltas``, write the full gradient to ``grad``."""
    L = sizes.shape[0] - 1
    for k in range(L - 1, -1, -1):
        fi = sizes[k]
        fo = sizes[k + 1]
        wo = woff[k]
        bo = boff[k]
        do = aoff[k]
        po = aoff[k - 1] if k > 0 else 0
        for p in range(wo, wo + fi * fo):
            grad[p] = c[0]
        for j in range(fo):
            grad[bo + j] = c[0]
        for r in range(B):
            d = do + r * fo
            for j in range(fo):
                grad[bo + j] += deltas[d + j]
            if k == 0:
                row = idx[start + r]
                for i in range(fi):
                    xi = X[row, i]
                    w = wo + i * fo
                    for j in range(fo):
                        grad[w + j] += xi * deltas[d + j]
            else:
                inp = po + r * fi
                for i in range(fi):
                    xi = acts[inp + i]
                    w = wo + i * fo
                    for j in range(fo):
                        grad[w + j] += xi * deltas[d + j]
        if k > 0:
            for r in range(B):
                d = do + r * fo
                inp = po + r * fi
                for i in range(fi):
                    s = c[0]
                    w = wo + i * fo
                    for j in range(fo):
                        s += deltas[d + j] * theta[w + j]
                    deltas[inp + i] = s * derivative_from_output(act, acts[inp + i], c)


@kernel
def predict_rows(X, ident, theta, sizes, woff, boff, aoff, act, acts, c, out):
    """Predictions for every row of X, forwarding as many rows at a time as ``acts`` holds."""
    n = X.shape[0]
    chunk = (acts.shape[0] - aoff[aoff.shape[0] - 1])  # rows the output block can hold (width 1)
    pred_off = aoff[aoff.shape[0] - 1]
    for start in range(0, n, chunk):
        B = min(chunk, n - start)
        forward(X, ident, start, B, theta, sizes, woff, boff, aoff, act, acts, c)
        for r in range(B):
            out[start + r] = acts[pred_off + r]
