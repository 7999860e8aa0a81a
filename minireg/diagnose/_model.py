"""Loss, gradient, activations and Hessian-vector products of a layout at any parameters, computed
by the same kernels the training loop uses (float64, on all the rows given at once)."""
import itertools

import numpy as np

from ..kernels import activations, losses
from ..kernels.constants import run_constants
from ..kernels.loop import loss_and_gradient
from ..kernels.models import forward


class Model:
    def __init__(self, layout, activation, loss, delta):
        self.layout = layout
        self.act = activations.kernel_arg(activation)
        self.activation = activation
        self.loss_code = losses.CODES[loss]
        self.c = run_constants(delta, np.float64)

    def _buffers(self, n):
        sizes, woff, boff, aoff, nacts = self.layout.kernel_arrays(n)
        P = self.layout.size
        wt = np.zeros(max(a * b for a, b in itertools.pairwise(self.layout.sizes)))
        work = (np.zeros(nacts), np.zeros(nacts), np.zeros(P), np.zeros(P), np.zeros(P), np.zeros(4),
                np.arange(n, dtype=np.int64), wt)
        return (sizes, woff, boff, aoff, self.act), work

    def loss_grad(self, theta, X, y):
        model, work = self._buffers(X.shape[0])
        loss = loss_and_gradient(np.ascontiguousarray(X, np.float64), np.ascontiguousarray(y, np.float64),
                                 np.ascontiguousarray(theta, np.float64), model, self.loss_code, self.c, work)
        return loss, work[2].copy()

    def layer_outputs(self, theta, X):
        """[(n, width) outputs of each hidden layer] and the predictions (n,)."""
        n = X.shape[0]
        model, work = self._buffers(n)
        sizes, woff, boff, aoff, act = model
        acts = work[0]
        forward(np.ascontiguousarray(X, np.float64), work[6], 0, n, np.ascontiguousarray(theta, np.float64),
                sizes, woff, boff, aoff, act, acts, self.c)
        outs = [acts[aoff[k]:aoff[k] + n * sizes[k + 1]].reshape(n, sizes[k + 1]).copy()
                for k in range(len(sizes) - 1)]
        return outs[:-1], outs[-1][:, 0]

    def hvp(self, theta, v, X, y):
        """H·v by central differences of exact gradients."""
        eps = 1e-5 * (1.0 + np.linalg.norm(theta)) / max(np.linalg.norm(v), 1e-300)
        gp = self.loss_grad(theta + eps * v, X, y)[1]
        gm = self.loss_grad(theta - eps * v, X, y)[1]
        return (gp - gm) / (2 * eps)

    def lambda_max(self, theta, X, y, iters=50, tol=1e-4, seed=0, precond=None):
        """Largest Hessian eigenvalue by power iteration on HVPs; with ``precond`` (the diagonal P of
        a preconditioner) the largest eigenvalue of P^-1/2 H P^-1/2."""
        rng = np.random.default_rng(seed)
        v = rng.normal(size=theta.size)
        v /= np.linalg.norm(v)
        s = 1.0 if precond is None else 1.0 / np.sqrt(precond)
        lam = 0.0
        for _ in range(iters):
            w = s * self.hvp(theta, s * v, X, y)
            new = float(v @ w)
            nrm = np.linalg.norm(w)
            if not np.isfinite(nrm) or nrm == 0:
                return float("nan") if not np.isfinite(nrm) else 0.0
            v = w / nrm
            if abs(new - lam) <= tol * abs(new):
                return abs(new)
            lam = new
        return abs(lam)
