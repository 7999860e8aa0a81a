"""Layout: the names, shapes and offsets of the slices of one flat parameter vector.

Every vector a run touches (parameters, gradient, update, optimizer state, each trace row) has the
same layout: ``W1, b1, W2, b2, …`` with ``Wk`` of shape (fan_in, fan_out) stored row-major and
``bk`` of shape (fan_out,). The linear model is the network with no hidden layer: ``W1`` (d, 1), ``b1`` (1,).
"""
import numpy as np


def n_params(sizes):
    """Parameters of the network with these layer widths (d, hidden…, 1): Σ fan_in·fan_out + fan_out
    (Python ints, so absurd sizes do not overflow)."""
    return sum(int(a) * int(b) + int(b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))


class Layout:
    def __init__(self, sizes):
        self.sizes = tuple(int(s) for s in sizes)
        names, shapes, slices = [], [], []
        off = 0
        for k in range(len(self.sizes) - 1):
            fi, fo = self.sizes[k], self.sizes[k + 1]
            for name, shape in ((f"W{k + 1}", (fi, fo)), (f"b{k + 1}", (fo,))):
                size = int(np.prod(shape))
                names.append(name)
                shapes.append(shape)
                slices.append(slice(off, off + size))
                off += size
        self.names = tuple(names)
        self.shapes = dict(zip(names, shapes, strict=True))
        self.slices = dict(zip(names, slices, strict=True))
        self.size = off

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def kernel_arrays(self, rows):
        """(sizes, woff, boff, aoff, activation buffer length) for a kernel working on ``rows`` rows."""
        sizes = np.asarray(self.sizes, dtype=np.int64)
        woff = np.array([self.slices[f"W{k + 1}"].start for k in range(self.n_layers)], np.int64)
        boff = np.array([self.slices[f"b{k + 1}"].start for k in range(self.n_layers)], np.int64)
        aoff = np.concatenate([[0], np.cumsum(sizes[1:-1]) * rows]).astype(np.int64)
        return sizes, woff, boff, aoff, int(rows * sizes[1:].sum())

    def unflatten(self, flat):
        """Named, layer-shaped views of a flat vector (or of the last axis of a stack of them)."""
        flat = np.asarray(flat)
        if flat.shape[-1] != self.size:
            raise ValueError(f"expected a vector of {self.size} parameters, got shape {flat.shape}")
        lead = flat.shape[:-1]
        return {n: flat[..., self.slices[n]].reshape(lead + self.shapes[n]) for n in self.names}

    def flatten(self, arrays, dtype=np.float64):
        out = np.empty(self.size, dtype=dtype)
        for n in self.names:
            out[self.slices[n]] = np.asarray(arrays[n]).reshape(-1)
        return out

    def __repr__(self):
        parts = ", ".join(f"{n}{self.shapes[n]}" for n in self.names)
        return f"Layout({parts}; {self.size} parameters)"


def init_params(layout, scheme, rng, dtype, activation=None):
    """Initial flat parameters. ``scheme`` is "torch", "keras", "sklearn", "zeros" or a dict of arrays
    (already checked by _validate). For "sklearn" ``rng`` is a numpy RandomState, drawn from in
    MLPRegressor's order (coefs_[0], intercepts_[0], coefs_[1], …)."""
    theta = np.zeros(layout.size, dtype=np.float64)
    if isinstance(scheme, dict):
        for n in layout.names:
            theta[layout.slices[n]] = np.asarray(scheme[n], dtype=np.float64).reshape(-1)
        return theta.astype(dtype)
    if scheme == "zeros":
        return theta.astype(dtype)
    for k in range(layout.n_layers):
        fi, fo = layout.sizes[k], layout.sizes[k + 1]
        w, b = layout.slices[f"W{k + 1}"], layout.slices[f"b{k + 1}"]
        if scheme == "torch":  # nn.Linear: kaiming_uniform(a=√5) ⇒ U(±1/√fan_in) for W and b
            bound = 1.0 / np.sqrt(fi)
            theta[w] = rng.uniform(-bound, bound, fi * fo)
            theta[b] = rng.uniform(-bound, bound, fo)
        elif scheme == "sklearn":  # MLPRegressor._init_coef: U(±√(factor/(fan_in+fan_out))) for W and b
            bound = np.sqrt((2.0 if activation == "sigmoid" else 6.0) / (fi + fo))
            theta[w] = rng.uniform(-bound, bound, (fi, fo)).reshape(-1)
            theta[b] = rng.uniform(-bound, bound, fo)
        else:  # keras Dense: glorot_uniform kernel, zero bias
            limit = np.sqrt(6.0 / (fi + fo))
            theta[w] = rng.uniform(-limit, limit, fi * fo)
    return theta.astype(dtype)
