"""matplotlib figures of a run (imported only when a plot is asked for).

A loss that explodes spans hundreds of decades and ends in inf; plotted as is, matplotlib's log axis
overflows and the explosion shrinks to a blip. Every loss axis here is therefore a log scale over
the finite range the curves reach (capped at LOSS_CAP), with values beyond the cap drawn at the cap
and the first non-finite step marked.
"""
import numpy as np

LOSS_CAP = 1e150  # beyond this a log axis' ticks overflow in matplotlib; higher values are drawn at it

# train() defaults, to title a run by what differs from them
_DEFAULTS = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0, "alpha": 0.99,
             "eps": 1e-8, "centered": False, "beta1": 0.9, "beta2": 0.999, "amsgrad": False, "batch_size": None,
             "loss": "mse", "standardize": None, "schedule": None, "clip_grad_norm": None, "clip_grad_value": None,
             "l1": 0.0, "shuffle": True}


def _plt():
    import matplotlib.pyplot as plt  # lazy on purpose: `import minireg` stays free of matplotlib
    return plt


def describe(config, keys=None):
    """``"sgd lr=0.1 momentum=0.9"``: the optimizer, its lr and every setting that differs from train's
    defaults (or only ``keys``)."""
    parts = [config["optimizer"], f"lr={config['lr']:g}"]
    if config.get("model") == "mlp":
        parts.insert(0, f"mlp{tuple(config['hidden'])} {config['activation']}")
    defaults = dict(_DEFAULTS, weight_decay=0.01 if config["optimizer"] == "adamw" else 0.0)
    for k, default in defaults.items():
        if k not in config or (keys is not None and k not in keys):
            continue
        v = config[k]
        if v != default and not (k == "batch_size" and v is not None and v >= config.get("n_samples", 0)):
            parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _finite_range(*curves):
    """(low, high) of the finite positive values of the curves, high capped at LOSS_CAP."""
    vals = np.concatenate([np.asarray(c, np.float64).ravel() for c in curves if c is not None and np.size(c)] or
                          [np.zeros(0)])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if not vals.size:
        return 1e-3, 1.0
    lo, hi = float(vals.min()), float(min(vals.max(), LOSS_CAP))
    if hi <= lo:
        hi = lo * 10
    return lo / 1.5, hi * 1.5


def _capped(v):
    """The values a log axis can show: beyond LOSS_CAP (or not finite) they become gaps."""
    v = np.asarray(v, np.float64)
    return np.where(np.isfinite(v) & (v <= LOSS_CAP), v, np.nan)


def _mark_off_scale(ax, x, v, hi, label_it=True):
    """A triangle at the top edge where the curve first leaves the scale (above LOSS_CAP)."""
    v = np.asarray(v, np.float64)
    over = np.flatnonzero(np.isfinite(v) & (v > LOSS_CAP))
    if over.size:
        ax.plot([np.asarray(x)[over[0]]], [hi / 1.5], marker="^", color="gray", ms=7, ls="none",
                label=f"above {LOSS_CAP:.0e} from step {int(np.asarray(x)[over[0]])}" if label_it else None)


def loss_panel(ax, result, label=None, color=None):
    """The run's losses against the step on a log scale over their finite range, with the step where
    they stopped being finite marked."""
    tr, h, cfg = result.trace, result.history, result.config
    epoch_steps = (np.arange(h["loss"].size) + 1) * cfg["steps_per_epoch"] - 1
    curves = [h["loss"]]
    prefix = f"{label}: " if label else ""
    line = None
    if tr is not None and len(tr):
        line, = ax.plot(np.asarray(tr.step), _capped(tr.loss), lw=0.8, alpha=0.6 if label is None else 0.9,
                        color=color, label=prefix + "batch loss (trace)" if label is None else label)
        curves.append(tr.loss)
    kw = dict(ms=2, color=color if color is not None else (line.get_color() if line is not None and label else None))
    if label is None or tr is None:
        ax.plot(epoch_steps, _capped(h["loss"]), "o-", label=(label or "training loss (epoch end)"), **kw)
    if "val_loss" in h:
        ax.plot(epoch_steps, _capped(h["val_loss"]), "s--", label=prefix + "validation loss", **kw)
        curves.append(h["val_loss"])
    lo, hi = _finite_range(*curves)
    if tr is not None and len(tr):
        _mark_off_scale(ax, np.asarray(tr.step), tr.loss, hi)
    else:
        _mark_off_scale(ax, epoch_steps, h["loss"], hi)
    if result.diverged:
        ax.axvline(result.diverged_at, color="red", ls="--", lw=1,
                   label=prefix + f"non-finite at step {result.diverged_at}")
        ax.plot([result.diverged_at], [hi / 1.5], marker="x", color="red", ms=9, mew=2)
    ax.set_yscale("log")
    old = ax.get_ylim() if ax.has_data() and getattr(ax, "_minireg_loss", False) else None
    if old is not None:
        lo, hi = min(lo, old[0]), max(hi, old[1])
    ax.set_ylim(lo, hi)
    ax._minireg_loss = True
    ax.set(xlabel="step", title=f"loss ({cfg['loss']})")
    ax.legend(fontsize=8)
    return ax


def _layer_norms(result):
    """(steps, {Wk: ‖∂L/∂Wk‖ per recorded step}) from a full trace."""
    tr, lay = result.trace, result.layout
    g = np.asarray(tr.grad, np.float64)
    return np.asarray(tr.step), {f"W{k + 1}": np.linalg.norm(g[:, lay.slices[f"W{k + 1}"]], axis=1)
                                 for k in range(lay.n_layers)}


def plot_result(result, ax=None, fig=None):
    """The run's figure. With ``ax``: only the loss panel, drawn on that axes (so runs can share
    one). Otherwise the panels the run has data for, in ``fig`` when given: the loss always; with a
    trace the gradient and update norms and ‖update‖/‖params‖; with a full trace of an MLP the
    gradient norm of each layer (vanishing gradients show as a fan of lines decades apart); the lr
    when it changes during the run."""
    if ax is not None:
        loss_panel(ax, result, label=describe(result.config))
        return ax.figure
    plt = _plt()
    tr, h, cfg = result.trace, result.history, result.config
    panels = ["loss"]
    traced = tr is not None and len(tr) > 0
    if traced:
        panels += ["norms", "ratio"]
        if tr.grad is not None and result.layout.n_layers > 1:
            panels.append("layers")
    lrs = np.asarray(tr.lr if traced else h["lr"], np.float64)
    if lrs.size and np.nanmax(lrs) != np.nanmin(lrs):
        panels.append("lr")
    cols = len(panels) if len(panels) <= 3 else (2 if len(panels) == 4 else 3)
    rows = -(-len(panels) // cols)
    if fig is None:
        fig = plt.figure(figsize=(5.5 * cols, 3.6 * rows), constrained_layout=True)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for a in axes[len(panels):]:
        a.remove()
    for a, name in zip(axes, panels, strict=False):
        if name == "loss":
            loss_panel(a, result)
        elif name == "norms":
            s = np.asarray(tr.step)
            a.plot(s, _capped(tr.grad_norm), label="‖grad‖")
            a.plot(s, _capped(tr.update_norm), label="‖update‖")
            a.set_ylim(*_finite_range(tr.grad_norm, tr.update_norm))
            _mark_off_scale(a, s, tr.grad_norm, a.get_ylim()[1] * 1.5)
            a.set(yscale="log", xlabel="step", title="gradient and update norms")
            a.legend(fontsize=8)
        elif name == "ratio":
            s = np.asarray(tr.step)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = tr.update_norm / tr.param_norm
            a.plot(s, _capped(ratio))
            a.axhline(1e-3, color="gray", ls=":", label="1e-3 (a common healthy scale)")
            a.set_ylim(*_finite_range(ratio, [1e-3]))
            a.set(yscale="log", xlabel="step", title="‖update‖ / ‖params‖")
            a.legend(fontsize=8)
        elif name == "layers":
            s, norms = _layer_norms(result)
            for k, v in norms.items():
                a.plot(s + 1, _capped(v), lw=1, label=f"‖∂L/∂{k}‖")
            a.set_ylim(*_finite_range(*norms.values()))
            # a log step axis: the first steps, where a vanishing gradient shows before the output layer
            # has fit the mean, get as much room as the rest
            a.set(xscale="log", yscale="log", xlabel="step + 1", title="gradient norm per layer")
            a.legend(fontsize=7, ncol=2)
        else:
            s = np.asarray(tr.step) if traced else (np.arange(h["lr"].size)) * cfg["steps_per_epoch"]
            a.plot(s, lrs)
            a.set(yscale="log", xlabel="step", title="learning rate" + ("" if traced else " (per epoch)"))
    fig.suptitle(describe(cfg) + (f" — diverged at step {result.diverged_at}" if result.diverged else ""),
                 fontsize=9)
    return fig


def plot_compare(results, labels=None, ax=None):
    """Several runs on one chart: their loss curves (batch losses when traced, else the epoch
    losses) and, when every run is traced, ‖update‖/‖params‖ beside them. Each run is labelled by
    ``labels`` or by the settings that differ between the runs ("sgd lr=0.1 momentum=0.9")."""
    results = list(results)
    if not results:
        raise ValueError("plot_compare needs at least one TrainResult.")
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"labels has {len(labels)} entries for {len(results)} runs.")
    if labels is None:
        labels = _differing_labels([r.config for r in results])
    plt = _plt()
    traced = all(r.trace is not None and len(r.trace) for r in results)
    if ax is None:
        fig, axes = plt.subplots(1, 2 if traced else 1, figsize=(11 if traced else 6, 4), squeeze=False,
                                 constrained_layout=True)
        ax, ax2 = axes[0, 0], (axes[0, 1] if traced else None)
    else:
        ax2 = None
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ratios = []
    for i, (r, label) in enumerate(zip(results, labels, strict=True)):
        color = colors[i % len(colors)]
        loss_panel(ax, r, label=label, color=color)
        if ax2 is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = r.trace.update_norm / r.trace.param_norm
            ratios.append(ratio)
            ax2.plot(np.asarray(r.trace.step), _capped(ratio), lw=1, color=color, label=label)
    ax.set_title("loss")
    if ax2 is not None:
        ax2.set_ylim(*_finite_range(*ratios))
        ax2.set(yscale="log", xlabel="step", title="‖update‖ / ‖params‖")
        ax2.legend(fontsize=8)
    return ax.figure


def _differing_labels(configs):
    keys = set()
    for key in ("optimizer", "lr", *_DEFAULTS, "model", "hidden", "activation"):
        values = {repr(c.get(key)) for c in configs}
        if len(values) > 1:
            keys.add(key)
    keys |= {"lr"}
    return [describe(c, keys) for c in configs]


def plot_path(result, ax=None):
    """(W1, b1) over the loss contours, for the linear model on one feature. The frame holds the
    start, the least-squares point and the steps near them; steps that leave it are drawn as arrows
    at its edge, so a divergence reads as a path flung outwards rather than lines at 1e7."""
    lay, tr = result.layout, result.trace
    if lay.size != 2:
        raise ValueError("plot_path needs a model with exactly two parameters (linear, one feature); "
                         f"this one has {lay.size}.")
    if tr is None or tr.params is None:
        raise ValueError("plot_path needs the parameter path: train with trace=True.")
    if result.data is None:
        raise ValueError("plot_path needs the training data, which a loaded run does not keep.")
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    X, y = (np.asarray(a, np.float64) for a in result.data[:2])
    path = np.vstack([tr.params.astype(np.float64), result.theta[None].astype(np.float64)])
    path = path[np.all(np.isfinite(path), axis=1)]
    xs = np.ravel(X)
    coef = np.polyfit(xs, y, 1)
    # the frame: the whole path when it stays within 20x the start-optimum distance (an oscillation or a
    # momentum spiral), else the start and the optimum with a margin (a divergence runs off it)
    core = np.vstack([path[0], coef])
    span = np.maximum(np.abs(core[1] - core[0]), 0.05 * np.maximum(np.abs(core).max(axis=0), 1e-3))
    reach = np.abs(path - coef).max(axis=0)
    if not result.diverged and np.all(reach <= 20 * span):
        core = np.vstack([path, coef])
        span = np.maximum(core.max(axis=0) - core.min(axis=0), 1e-3) * 0.15
        lo, hi = core.min(axis=0) - span, core.max(axis=0) + span
    else:
        lo, hi = core.min(axis=0) - 1.0 * span, core.max(axis=0) + 1.0 * span
    W, B = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    R = W[..., None] * xs + B[..., None] - y
    loss, delta = result.config["loss"], result.config["delta"]
    A = np.abs(R)
    L = {"mse": R * R, "mae": A, "huber": np.where(A < delta, 0.5 * R * R, delta * (A - 0.5 * delta))}[loss].mean(-1)
    cs = ax.contour(W, B, L, levels=np.geomspace(max(L.min(), 1e-12), L.max(), 15), cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2g")
    inside = np.all((path >= lo) & (path <= hi), axis=1)
    first_out = int(np.argmin(inside)) if not inside.all() else None
    shown = path if first_out is None else path[:first_out]
    ax.plot(shown[:, 0], shown[:, 1], "o-", color="crimson", ms=3, lw=1, label="parameter path")
    if first_out is not None:
        # the step that leaves the frame: an arrow from the last point inside towards it, at the edge
        a, b = path[first_out - 1] if first_out else path[0], path[first_out]
        d = b - a
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(d > 0, (hi - a) / d, np.where(d < 0, (lo - a) / d, np.inf))
        end = a + d * min(1.0, float(np.min(room)))
        ax.annotate("", xy=end, xytext=a, arrowprops=dict(arrowstyle="->", color="crimson", lw=1.5))
        with np.errstate(over="ignore"):  # a diverged path's norm may pass the float range: inf then
            far = float(np.linalg.norm(path, axis=1).max())
        ax.text(0.02, 0.02, f"leaves the frame at step {first_out}; ‖params‖ reaches {far:.3g}", color="crimson",
                transform=ax.transAxes, fontsize=8)
    ax.plot(*path[0], "ks", label="start")
    ax.plot(*coef, "k*", ms=10, label="least squares")
    title = describe(result.config) + (f" (diverged at step {result.diverged_at})" if result.diverged else "")
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="W1", ylabel="b1", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return ax.figure


def plot_lr_range(res, ax=None):
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(res.lrs, _capped(res.losses), alpha=0.4, label="loss")
    ax.plot(res.lrs, _capped(res.smoothed), label="smoothed (centered, no lag)")
    ax.axvline(res.suggestion, color="green", ls="--", label=f"suggestion {res.suggestion:.3g}")
    if res.bound is not None and np.isfinite(res.bound):
        ax.axvline(res.bound, color="red", ls=":", label=f"stability bound {res.bound:.3g}")
    ax.set_ylim(*_finite_range(res.losses))
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="loss", title="learning-rate range test")
    ax.legend(fontsize=8)
    return ax.figure
