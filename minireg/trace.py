"""Trace: what the compiled loop recorded, one row per recorded step.

Columns (arrays with one entry per row): ``step`` (0-based step index), ``epoch``, ``loss`` (batch
loss at the parameters before the step), ``lr``, ``grad_norm``, ``update_norm``, ``param_norm``
(L2 norms of the gradient, the update, and the parameters before the step), ``clipped``
(whether gradient clipping changed the step's gradient).
With ``trace=True`` also (rows, P) arrays: ``params`` (before the step), ``grad`` (as the optimizer
saw it: coupled weight decay and the L1 subgradient included, before any clipping), ``update`` (params
after − params before) and ``state`` (name → (rows, P), the optimizer state after the step).

``trace.step`` is both the column of step indices (``trace.step[5]``) and a method:
``trace.step(12)`` returns step 12 as a dict of named, layer-shaped arrays.
"""
import numpy as np


class _StepColumn(np.ndarray):
    """The step-index column; calling it looks one step up (see Trace.at_step)."""

    def __array_finalize__(self, obj):
        self._trace = getattr(obj, "_trace", None)

    def __call__(self, i):
        if self._trace is None:
            raise TypeError("this step column is detached from its trace")
        return self._trace.at_step(i)


class Trace:
    def __init__(self, layout, mode, every, index, scalars, params, grad, update, state):
        self.layout = layout
        self.mode = "full" if mode is True else "norms"
        self.every = every
        self._step = np.ascontiguousarray(index[:, 0])
        self.epoch = index[:, 1]
        self.loss, self.lr, self.grad_norm, self.update_norm, self.param_norm, clipped = scalars.T
        self.clipped = clipped != 0
        self.params, self.grad, self.update = params, grad, update
        self.state = state

    @property
    def step(self):
        # A fresh view per access: the view holds the trace, the trace never holds the view. A stored
        # view would make a reference cycle, and a trace of hundreds of MB would then be freed only
        # when Python's cycle collector next runs, not when the last reference to it goes.
        step = self._step.view(_StepColumn)
        step._trace = self
        return step

    @property
    def names(self):
        return self.layout.names

    def __len__(self):
        return self._step.shape[0]

    def unflatten(self, flat):
        """Named, layer-shaped views of a flat row (or of a (rows, P) block)."""
        return self.layout.unflatten(flat)

    def row_of(self, i):
        """The row index that recorded step ``i``."""
        rows = np.flatnonzero(self._step == int(i))
        if rows.size == 0:
            lo, hi = (int(self._step[0]), int(self._step[-1])) if len(self) else (None, None)
            raise KeyError(
                f"step {i} was not recorded (recorded steps run {lo}..{hi}, every {self.every}); "
                "rerun with trace_every=1 to record every step."
            )
        return int(rows[0])

    def at_step(self, i):
        """One step as a dict: scalars, and named arrays for params/grad/update/state."""
        r = self.row_of(i)
        out = {
            "step": int(self._step[r]),
            "epoch": int(self.epoch[r]),
            "loss": float(self.loss[r]),
            "lr": float(self.lr[r]),
            "grad_norm": float(self.grad_norm[r]),
            "update_norm": float(self.update_norm[r]),
            "param_norm": float(self.param_norm[r]),
            "clipped": bool(self.clipped[r]),
        }
        if self.params is not None:
            out["params"] = self.unflatten(self.params[r])
            out["grad"] = self.unflatten(self.grad[r])
            out["update"] = self.unflatten(self.update[r])
            out["state"] = {k: self.unflatten(v[r]) for k, v in self.state.items()}
        return out

    def __repr__(self):
        if not len(self):
            return f"Trace(0 rows, mode={self.mode!r})"
        kept = ", ".join(["params", "grad", "update"] + [f"state[{k!r}]" for k in self.state]) \
            if self.params is not None else "norms only"
        return (
            f"Trace({len(self)} rows: steps {int(self._step[0])}..{int(self._step[-1])} every {self.every}; "
            f"{kept}; {self.layout.size} parameters)"
        )


_OPTIMIZER_RULES = {
    "sgd": "g ← g + wd·p; buf ← g (first step) | μ·buf + (1−τ)·g; p ← p − lr·(g + μ·buf if nesterov else buf)",
    "rmsprop": "g ← g + wd·p; v ← α·v + (1−α)·g²; [ḡ ← ḡ + (1−α)(g−ḡ)]; p ← p − lr·g/(√(v − ḡ²) + ε)",
    "adam": "g ← g + wd·p; m ← m + (1−β1)(g−m); v ← β2·v + (1−β2)·g²; p ← p − lr/(1−β1ᵗ)·m/(√v/√(1−β2ᵗ) + ε)",
    "adamw": "p ← p·(1 − lr·wd); m ← m + (1−β1)(g−m); v ← β2·v + (1−β2)·g²; p ← p − lr/(1−β1ᵗ)·m/(√v/√(1−β2ᵗ) + ε)",
}


def _fmt(a):
    a = np.asarray(a)
    shape = f"{a.shape} " if a.ndim > 1 else ""  # matrices print flat, row-major, after their shape
    return shape + np.array2string(a.ravel(), precision=4, threshold=12, edgeitems=4, max_line_width=200,
                                   separator=", ")


def _explain(trace, i):
    ctx = getattr(trace, "context", None)
    if trace.params is None:
        raise ValueError("explain needs a full trace: train with trace=True.")
    if ctx is None or ctx.get("data") is None:
        raise ValueError("explain needs the training data, which a loaded run does not keep.")
    from .diagnose._model import Model
    r = trace.row_of(i)
    cfg = ctx["config"]
    X, y = (np.asarray(a, np.float64) for a in ctx["data"][:2])
    e = int(trace.epoch[r])
    spe, bs = cfg["steps_per_epoch"], cfg["effective_batch_size"]
    k = int(trace.step[r]) - e * spe
    order = ctx["epoch_order"](e)
    rows = order[k * bs:(k + 1) * bs]
    theta = trace.params[r].astype(np.float64)
    model = Model(trace.layout, cfg["activation"], cfg["loss"], cfg["delta"])
    _, pred = model.layer_outputs(theta, X[rows])
    res = pred - y[rows]
    B = rows.size
    loss = cfg["loss"]
    if loss == "mse":
        dl, rule = 2 * res / B, "2·r/B"
    elif loss == "huber":
        dl, rule = np.clip(res, -cfg["delta"], cfg["delta"]) / B, f"clip(r, ±{cfg['delta']:g})/B"
    else:
        dl, rule = np.sign(res) / B, "sign(r)/B"
    L = []
    L.append(f"step {int(trace.step[r])} (epoch {e}, batch {k + 1} of {spe}, {B} rows"
             + (", shuffled" if cfg["shuffled"] else "") + f"), lr={float(trace.lr[r]):.6g}")
    L.append(f"  rows          {_fmt(rows)}")
    L.append(f"  predictions p {_fmt(pred)}")
    L.append(f"  targets     y {_fmt(y[rows])}")
    L.append(f"  residuals   r = p − y = {_fmt(res)}")
    L.append(f"  loss          {loss} = {float(trace.loss[r]):.6g}")
    L.append(f"  dL/dp         {rule} = {_fmt(dl)}")
    g = trace.unflatten(trace.grad[r])
    coupled = cfg.get("weight_decay") and cfg["optimizer"] != "adamw"
    L.append("  gradient" + ("  (coupled weight decay included)" if coupled else ""))
    for name in trace.names:
        L.append(f"    {name:<4} {_fmt(g[name])}")
    L.append(f"  optimizer     {_OPTIMIZER_RULES[cfg['optimizer']]}")
    prev = r - 1 if r > 0 and int(trace.step[r - 1]) == int(trace.step[r]) - 1 else None
    for sname, rows_ in trace.state.items():
        before = "0 (new)" if int(trace.step[r]) == 0 else (_fmt(rows_[prev]) if prev is not None else "(not recorded)")
        L.append(f"    {sname:<15} before {before}")
        L.append(f"    {'':<15} after  {_fmt(rows_[r])}")
    u = trace.unflatten(trace.update[r])
    new = trace.unflatten(trace.params[r] + trace.update[r])
    p0 = trace.unflatten(trace.params[r])
    for name in trace.names:
        L.append(f"  {name:<4} {_fmt(p0[name])} + update {_fmt(u[name])} = {_fmt(new[name])}")
    if bool(trace.clipped[r]):
        L.append("  (the gradient was clipped before the update)")
    text = "\n".join(L)
    print(text)
    return text


Trace.explain = lambda self, i: _explain(self, i)
Trace.explain.__doc__ = ("Print (and return) step ``i`` as a teacher would write it: the batch rows, predictions, "
                         "residuals, loss, dL/dpred, per-layer gradients, optimizer state before and after, the "
                         "update and the new parameters.")
