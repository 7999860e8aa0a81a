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

from .explain import explain
from .kernels.loop import N_SCALAR_COLS


def row_bytes(trace, n_params, n_state, itemsize):
    """Bytes of one trace row: the (step, epoch) index, the scalar columns and, with trace=True, the
    params, grad and update rows and the used optimizer-state rows."""
    return 16 + N_SCALAR_COLS * itemsize + ((3 + n_state) * n_params * itemsize if trace is True else 0)


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
            if self.every > 1 and lo is not None and lo <= int(i) <= hi:
                hint = "; rerun with trace_every=1 to record every step"
            else:
                hint = ": the run took no such step" if lo is not None and int(i) > hi else ""
            raise KeyError(f"step {i} was not recorded (recorded steps run {lo}..{hi}, every {self.every}){hint}.")
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


def _explain(self, i):
    """Step ``i`` written out as the rule this run applied, with its numbers: the batch, the forward
    and backward passes layer by layer, the gradient's additions and clipping, the optimizer's rule
    (textbook form, and the code's order where it differs) with every tensor's numbers, and a check
    that they reproduce the traced update. Returns an :class:`minireg.explain.Explanation` (its str
    is the text; notebooks show it as HTML); prints nothing."""
    return explain(self, i)


Trace.explain = _explain
