"""matplotlib figures of a run (imported only when a plot is asked for)."""
import numpy as np


def _plt():
    import matplotlib.pyplot as plt
    return plt


def plot_result(result):
    """Loss, gradient/update norms, update/param ratio and lr in one 2x2 figure."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    tr, h, cfg = result.trace, result.history, result.config
    spe = cfg["steps_per_epoch"]
    epoch_steps = (np.arange(h["loss"].size) + 1) * spe
    ax = axes[0, 0]
    if tr is not None and len(tr):
        ax.plot(np.asarray(tr.step), tr.loss, lw=0.8, alpha=0.6, label="batch loss (trace)")
    ax.plot(epoch_steps, h["loss"], "o-", ms=2, label="training loss (epoch end)")
    if "val_loss" in h:
        ax.plot(epoch_steps, h["val_loss"], "s-", ms=2, label="validation loss")
    if result.diverged:
        ax.axvline(result.diverged_at, color="red", ls="--", label=f"diverged at step {result.diverged_at}")
    ax.set(yscale="log", xlabel="step", title=f"loss ({cfg['loss']})")
    ax.legend(fontsize=8)
    if tr is not None and len(tr):
        s = np.asarray(tr.step)
        ax = axes[0, 1]
        ax.plot(s, tr.grad_norm, label="‖grad‖")
        ax.plot(s, tr.update_norm, label="‖update‖")
        ax.set(yscale="log", xlabel="step", title="gradient and update norms")
        ax.legend(fontsize=8)
        ax = axes[1, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            ax.plot(s, tr.update_norm / tr.param_norm)
        ax.axhline(1e-3, color="gray", ls=":", label="1e-3 (a common healthy scale)")
        ax.set(yscale="log", xlabel="step", title="‖update‖ / ‖params‖")
        ax.legend(fontsize=8)
        ax = axes[1, 1]
        ax.plot(s, tr.lr)
        ax.set(yscale="log", xlabel="step", title="learning rate")
    else:
        axes[1, 1].plot(epoch_steps, h["lr"])
        axes[1, 1].set(yscale="log", xlabel="step", title="learning rate (per epoch)")
        for ax in (axes[0, 1], axes[1, 0]):
            ax.text(0.5, 0.5, "train with trace=True or 'norms'\nto see per-step norms", ha="center",
                    va="center", transform=ax.transAxes)
            ax.set_axis_off()
    fig.suptitle(repr(result), fontsize=8)
    return fig


def plot_path(result, ax=None):
    """(W1, b1) over the loss contours, for the linear model on one feature."""
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
    # frame the start, the optimum and the first steps; a diverging path runs off the frame
    coef = np.polyfit(xs, y, 1)
    core = np.vstack([path[: min(len(path), 6)], coef[None]])
    lo, hi = core.min(axis=0), core.max(axis=0)
    pad = 0.3 * np.maximum(hi - lo, 1e-3)
    lo, hi = lo - pad, hi + pad
    W, B = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    R = W[..., None] * xs + B[..., None] - y
    loss, delta = result.config["loss"], result.config["delta"]
    A = np.abs(R)
    L = {"mse": R * R, "mae": A, "huber": np.where(A < delta, 0.5 * R * R, delta * (A - 0.5 * delta))}[loss].mean(-1)
    cs = ax.contour(W, B, L, levels=np.geomspace(max(L.min(), 1e-12), L.max(), 15), cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2g")
    ax.plot(path[:, 0], path[:, 1], "o-", color="crimson", ms=3, lw=1, label="parameter path")
    ax.plot(*path[0], "ks", label="start")
    ax.plot(*coef, "k*", ms=10, label="least squares")
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="W1", ylabel="b1",
           title=f"{result.config['optimizer']}, lr={result.config['lr']:g}"
           + (" (diverged)" if result.diverged else ""))
    ax.legend(fontsize=8)
    return ax.figure


def plot_lr_range(res, ax=None):
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(res.lrs, res.losses, alpha=0.4, label="loss")
    ax.plot(res.lrs, res.smoothed, label="smoothed")
    ax.axvline(res.suggestion, color="green", ls="--", label=f"suggestion {res.suggestion:.3g}")
    if res.bound is not None and np.isfinite(res.bound):
        ax.axvline(res.bound, color="red", ls=":", label=f"stability bound {res.bound:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="loss", title="learning-rate range test")
    ax.legend(fontsize=8)
    return ax.figure
