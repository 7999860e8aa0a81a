"""``trace.explain(k)``: one recorded step written out as the rule this run applied, with its numbers.

The text follows the step as a teacher would: the batch, the forward pass layer by layer (z and
a), the residuals and loss, dL/dpred, the backward pass (δ and the gradient per layer), what is
added to the gradient (the L1 subgradient, coupled weight decay) and clipping, then the
optimizer's rule with only the terms this run's settings switch on, first in textbook form and,
where the code computes it in another order to match PyTorch bit for bit, in that form, with
every named parameter tensor's numbers (all entries when small, the first few otherwise). It ends
by recomputing the update from the traced numbers in the code's order and saying whether it
reproduces the traced update.

The forward and backward numbers are recomputed here in NumPy (float64) from the traced parameters
and the batch rows; the optimizer's numbers come from the trace (its gradient, and its state after
the step; the state before it when the previous step is recorded).
"""
import html

import numpy as np

from . import optim


def _fmt(a):
    """5 significant digits everywhere (small values keep theirs); a matrix prints row by row,
    [[row 0], [row 1], ...], after its shape; long ones show their first and last entries."""
    a = np.asarray(a)
    shape = f"{a.shape} " if a.ndim > 1 else ""
    text = np.array2string(a, formatter={"float_kind": lambda v: f"{v:.5g}"}, threshold=24, edgeitems=3,
                           max_line_width=100000, separator=", ")
    return shape + " ".join(text.split())


def _act(name, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    return z


def _dact(name, a):
    """The activation's derivative from its output, as the kernels compute it."""
    if name == "relu":
        return (a > 0).astype(np.float64)
    if name == "tanh":
        return 1.0 - a * a
    if name == "sigmoid":
        return a * (1.0 - a)
    return np.ones_like(a)


_ACT_TEXT = {"relu": "max(z, 0)", "tanh": "tanh(z)", "sigmoid": "1/(1+e^−z)", "identity": "z"}
_DACT_TEXT = {"relu": "[a > 0]", "tanh": "1 − a²", "sigmoid": "a·(1 − a)", "identity": "1"}


class Explanation:
    """One step written out (``str(e)`` is the text; ``_repr_html_`` the same for notebooks);
    ``values`` holds the numbers shown, by name; ``reproduced`` says whether recomputing the update
    in the code's order from the traced numbers gives the traced update exactly."""

    def __init__(self, sections, values, reproduced, max_diff):
        self.sections, self.values = sections, values
        self.reproduced, self.max_diff = reproduced, max_diff

    @property
    def text(self):
        return "\n".join(line for _, lines in self.sections for line in lines)

    def __str__(self):
        return self.text

    __repr__ = __str__

    def _repr_html_(self):
        parts = []
        for title, lines in self.sections:
            body = html.escape("\n".join(lines))
            parts.append(f"<details open><summary><b>{html.escape(title)}</b></summary>"
                         f"<pre style='margin:0 0 .6em 1em'>{body}</pre></details>")
        return "<div class='minireg-explain'>" + "".join(parts) + "</div>"


def explain(trace, i):
    ctx = getattr(trace, "context", None)
    if trace.params is None:
        raise ValueError("explain needs a full trace: train with trace=True.")
    if ctx is None or ctx.get("data") is None:
        raise ValueError("explain needs the training data, which a loaded run does not keep.")
    r = trace.row_of(i)
    cfg = ctx["config"]
    layout = trace.layout
    dtype = trace.params.dtype
    X, y = (np.asarray(a, np.float64) for a in ctx["data"][:2])
    e = int(trace.epoch[r])
    step = int(trace.step[r])
    spe, bs = cfg["steps_per_epoch"], cfg["effective_batch_size"]
    k = step - e * spe
    rows = ctx["epoch_order"](e)[k * bs:(k + 1) * bs]
    B = rows.size
    theta = trace.params[r].astype(np.float64)
    P = layout.unflatten(theta)
    lr = float(trace.lr[r])
    sections, values = [], {"step": step, "epoch": e, "rows": rows, "lr": lr}

    head = (f"step {step} (epoch {e}, batch {k + 1} of {spe}, {B} rows" + (", shuffled" if cfg["shuffled"] else "")
            + f"), lr={lr:.6g}")
    if cfg.get("schedule"):
        head += f" (schedule {cfg['schedule']!r}, base lr {cfg['lr']:g})"
    numbering = (f"  numbering     steps and epochs count from 0, batches from 1; the optimizer's t = step + 1 = "
                 f"{step + 1} (PyTorch's count)")
    sections.append(("step", [head, numbering, f"  rows          {_fmt(rows)}", f"  inputs      x {_fmt(X[rows])}"]))

    # ---- forward
    act = cfg["activation"] or "identity"
    L = []
    a = X[rows]
    outs = [a]
    n_layers = layout.n_layers
    for layer in range(1, n_layers + 1):
        W, b = P[f"W{layer}"], P[f"b{layer}"]
        z = a @ W + b
        last = layer == n_layers
        a = z if last else _act(act, z)
        outs.append(a)
        name = "p" if last else f"a{layer}"
        L.append(f"  z{layer} = {'a' + str(layer - 1) if layer > 1 else 'x'}·W{layer} + b{layer}   {_fmt(z)}")
        if not last:
            L.append(f"  a{layer} = {_ACT_TEXT[act].replace('z', f'z{layer}')}   {_fmt(a)}")
        values[f"z{layer}"] = z
        values[name] = a
    pred = outs[-1][:, 0]
    res = pred - y[rows]
    loss = cfg["loss"]
    if loss == "mse":
        dl, rule, lrule = 2 * res / B, "2·r/B", "mean(r²)"
    elif loss == "squared_error":
        dl, rule, lrule = res / B, "r/B", "mean(½r²)"
    elif loss == "huber":
        d = cfg["delta"]
        dl, rule = np.clip(res, -d, d) / B, f"clip(r, ±{d:g})/B"
        lrule = f"mean(½r² if |r| < {d:g} else {d:g}·(|r| − {d:g}/2))"
    else:
        dl, rule, lrule = np.sign(res) / B, "sign(r)/B", "mean(|r|)"
    L.append(f"  predictions p {_fmt(pred)}")
    L.append(f"  targets     y {_fmt(y[rows])}")
    L.append(f"  residuals   r = p − y = {_fmt(res)}")
    l2 = float(cfg.get("l2") or 0.0)
    if l2:  # scikit-learn's L2 term is part of its loss
        lrule += f" + (alpha/2B)·Σ‖W‖²   (alpha={l2:g})"
    L.append(f"  loss          {lrule} = {float(trace.loss[r]):.6g}")
    L.append(f"  dL/dp         {rule} = {_fmt(dl)}")
    values.update(residuals=res, loss=float(trace.loss[r]), dL_dp=dl)
    sections.append(("forward", L))

    # ---- backward
    L = []
    delta = dl[:, None]
    grads = {}
    for layer in range(n_layers, 0, -1):
        a_in = outs[layer - 1]
        grads[f"W{layer}"] = a_in.T @ delta
        grads[f"b{layer}"] = delta.sum(axis=0)
        L.append(f"  δ{layer} = dL/dz{layer}   {_fmt(delta)}")
        src = f"a{layer - 1}" if layer > 1 else "x"
        L.append(f"  dL/dW{layer} = {src}ᵀ·δ{layer}   {_fmt(grads[f'W{layer}'])}")
        L.append(f"  dL/db{layer} = Σ rows δ{layer}   {_fmt(grads[f'b{layer}'])}")
        values[f"delta{layer}"] = delta
        if layer > 1:
            delta = (delta @ P[f"W{layer}"].T) * _dact(act, outs[layer - 1])
            L.append(f"  δ{layer - 1} = (δ{layer}·W{layer}ᵀ) ⊙ ({_DACT_TEXT[act].replace('a', f'a{layer - 1}')})")
    g_np = layout.flatten(grads)
    sections.append(("backward", L))

    # ---- what the optimizer receives
    opt = cfg["optimizer"]
    wd = float(cfg.get("weight_decay") or 0.0)
    coupled = wd != 0 and not _decoupled(cfg)
    l1 = float(cfg.get("l1") or 0.0)
    g_traced = trace.grad[r]
    L = []
    g_raw = g_np.copy()
    if l1:
        n1 = layout.slices["W1"].stop
        g_raw[:n1] += l1 * np.sign(theta[:n1])
        L.append(f"  + L1 subgradient l1·sign(w) on W1, l1={l1:g}")
    if l2:
        for k in range(1, n_layers + 1):
            w = layout.slices[f"W{k}"]
            g_raw[w] += l2 / B * theta[w]
        L.append(f"  + scikit-learn's L2 term alpha·W/B on the weights (not the biases), alpha={l2:g}, B={B}")
    expected = g_raw + (wd * theta if coupled else 0.0)
    dev = float(np.max(np.abs(expected - g_traced))) if g_traced.size else 0.0
    scale = float(np.max(np.abs(g_traced))) if g_traced.size else 0.0
    if coupled:
        L.append(f"  g ← g + wd·p   (coupled weight decay, wd={wd:g}; the trace's gradient includes it)")
    L.append(f"  the kernel's gradient (trace) agrees with the one above to max |Δ| = {dev:.2g}"
             + (f" ({dev / scale:.2g} of its largest entry)" if scale > 0 else ""))
    clip_norm, clip_value = cfg.get("clip_grad_norm"), cfg.get("clip_grad_value")
    coef = 1.0
    if clip_norm:
        norm = float(np.sqrt(np.sum(np.asarray(g_traced - (wd * theta if coupled else 0.0), np.float64) ** 2)))
        coef = min(1.0, clip_norm / (norm + 1e-6))
        L.append(f"  clip_grad_norm: coef = min(1, {clip_norm:g}/(‖g‖ + 1e-6)) = {coef:.6g}   (‖g‖ = {norm:.6g})")
    if clip_value:
        L.append(f"  clip_grad_value: g ← clamp(coef·g, ±{clip_value:g})")
    if clip_norm or clip_value:
        L.append("  (clipping acts on g before weight decay, as clip_grad_*_ then optimizer.step() do)"
                 + ("; it changed this step" if bool(trace.clipped[r]) else "; it did not change this step"))
    g_named = layout.unflatten(g_traced)
    L.append("  g (as the trace holds it" + (", before clipping" if clip_norm or clip_value else "") + "):")
    for name in layout.names:
        L.append(f"    {name:<4} {_fmt(g_named[name])}")
    if clip_norm or clip_value:
        used = _clipped_gradient(g_traced, theta, wd if coupled else 0.0, coef, clip_value, dtype)
        L.append("  g after clipping" + (" (+ wd·p)" if coupled else "") + ": what the optimizer uses below")
        for name, v in layout.unflatten(used).items():
            L.append(f"    {name:<4} {_fmt(v)}")
    values["grad"] = g_traced
    sections.append(("gradient", L))

    # ---- the optimizer
    L, upd_code, upd_book = _optimizer(trace, r, cfg, lr, wd, coef, clip_value, dtype, theta, values)
    traced_upd = trace.update[r]
    diff = np.abs(np.asarray(upd_code, np.float64) - np.asarray(traced_upd, np.float64))
    max_diff = float(diff.max()) if diff.size else 0.0
    exact = bool(np.array_equal(np.asarray(upd_code, dtype), traced_upd))
    new = layout.unflatten(trace.params[r] + trace.update[r])
    u = layout.unflatten(traced_upd)
    p0 = layout.unflatten(trace.params[r])
    L.append("  p ← p + update:")
    for name in layout.names:
        L.append(f"    {name:<4} {_fmt(p0[name])} + {_fmt(u[name])} = {_fmt(new[name])}")
    book_diff = float(np.max(np.abs(np.asarray(upd_book, np.float64) - np.asarray(traced_upd, np.float64))))
    sections.append((f"optimizer: {opt}", L))
    check = [("check: recomputing the update in the code's order from these numbers reproduces the traced update "
              + ("bit for bit" if exact else f"to max |Δ| = {max_diff:.2g}") + ".")]
    if book_diff > 0:
        check.append(f"       the textbook order gives it to max |Δ| = {book_diff:.2g} (rounding: the same math).")
    sections.append(("check", check))
    values.update(update=traced_upd, update_recomputed=upd_code, update_textbook=upd_book)
    return Explanation(sections, values, exact, max_diff)


def _clipped_gradient(g, theta, wd, coef, clip_value, dtype):
    """clip(g_raw) + wd·p from the trace's g_raw + wd·p, as the optimizer kernels compute it."""
    raw = np.asarray(g, np.float64) - wd * theta
    used = raw * coef
    if clip_value:
        used = np.clip(used, -clip_value, clip_value)
    return (used + wd * theta).astype(dtype)


def _named(layout, label, v):
    named = layout.unflatten(np.asarray(v))
    return [f"    {label:<7} {name:<4} {_fmt(named[name])}" for name in layout.names]


class StepView:
    """One recorded step as an optimizer module's ``explain`` reads it (minireg/optim/): its numbers
    (``p`` before the step, ``g`` as the optimizer used it, ``lr``, the 1-based step ``t``, the run
    dtype's scalar type ``dt``, the configuration ``cfg``), the state rows before and after, and
    helpers that print named, layer-shaped rows. ``values`` collects what the Explanation returns."""

    def __init__(self, trace, r, cfg, lr, g_used, dtype, values):
        self.layout, self.cfg, self.lr, self.values = trace.layout, cfg, lr, values
        self.hyper = self.hyper_of(cfg)
        self.p, self.g = trace.params[r], g_used
        self.t = int(trace.step[r]) + 1
        self.first = self.t == 1
        self.dt = np.dtype(dtype).type
        # the step's scalars exactly as the kernel computed them (the same compiled function)
        self.scalars = optim.BY_NAME[cfg["optimizer"]].step_scalars(self.hyper, float(lr), self.t)
        self._trace, self._r = trace, r
        self._prev = r - 1 if r > 0 and int(trace.step[r - 1]) == int(trace.step[r]) - 1 else None

    @staticmethod
    def hyper_of(cfg):
        """The run's Hyper tuple, rebuilt from its config."""
        return optim.hyper(cfg["optimizer"], {k: cfg[k] for k in optim.DEFAULTS[cfg["optimizer"]]},
                           cfg.get("flavor", "torch"))

    def state(self, name):
        """The state row after the step."""
        return self._trace.state[name][self._r]

    def before(self, name):
        """The state row before the step (zeros on the first step), or None when not recorded."""
        if self.first:
            return np.zeros_like(self.p)
        return None if self._prev is None else self._trace.state[name][self._prev]

    def named(self, label, v):
        return _named(self.layout, label, v)

    def old_new(self, name, label):
        """Lines showing the state row before the step (when recorded) and after it."""
        old = self.before(name)
        shown = old is not None and not self.first
        return (self.named(f"{label} old", old) if shown else []) + \
            self.named(f"{label} new" if shown else label, self.state(name))


def _decoupled(cfg):
    """Whether the run's weight decay shrinks p (AdamW, and every Keras-flavored Adam) instead of
    adding to g."""
    return bool(getattr(StepView.hyper_of(cfg), "decoupled", False))


def _optimizer(trace, r, cfg, lr, wd, coef, clip_value, dtype, theta, values):
    """(lines, the update as the code computes it, the update in textbook order) for trace row r, from
    the optimizer's own module."""
    opt = cfg["optimizer"]
    g = trace.grad[r]
    coupled = wd != 0 and not _decoupled(cfg)
    if coef != 1.0 or clip_value:
        # the optimizer used clip(g_raw) + wd·p; the trace keeps g_raw + wd·p
        g = _clipped_gradient(g, theta, wd if coupled else 0.0, coef, clip_value, dtype)
    L, code, book = optim.BY_NAME[opt].explain(StepView(trace, r, cfg, lr, g, dtype, values))
    L.insert(0, f"  lr = {lr:.6g}" + (f";  weight decay wd={wd:g} (coupled: added to g above)" if coupled else ""))
    return L, np.asarray(code, dtype), np.asarray(book, dtype)
