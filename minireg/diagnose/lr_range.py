"""The learning-rate range test (Smith 2017; fastai's lr_find): train with an lr that grows
exponentially every step, record the loss, stop once the smoothed loss exceeds ``diverge_factor``×
its best, and suggest the lr where the smoothed loss falls fastest — shown next to 2/λmax.

The stopping rule reads fastai's running average (it can only look back); the curve shown and the
suggestion use a centered average of log(loss) over ``window`` steps instead, which does not lag:
a running average with smooth=0.98 trails the raw loss by ~50 steps, so on a loss falling 100×
over the test it sat near 2 while the loss was already 0.01, and its steepest point came late."""
import math
import warnings

import numpy as np

from .. import _validate as V
from ..plot import plot_lr_range
from ..train import DivergenceWarning, train
from .curvature import stability_bound


def centered_smooth(losses, window):
    """exp of the centered moving average of log(loss) over ``window`` (odd) points; the window
    shrinks symmetrically at the ends."""
    logs = np.log(np.maximum(np.asarray(losses, np.float64), 1e-300))
    half = window // 2
    out = np.empty_like(logs)
    for i in range(logs.size):
        h = min(half, i, logs.size - 1 - i)
        out[i] = logs[i - h:i + h + 1].mean()
    return np.exp(out)


class LRRangeResult:
    def __init__(self, lrs, losses, smoothed, suggestion, bound, stopped_at, steepest=None):
        self.lrs, self.losses, self.smoothed = lrs, losses, smoothed
        self.suggestion, self.bound, self.stopped_at = suggestion, bound, stopped_at
        # where the loss fell fastest; the suggestion is half the bound instead when that is above it
        self.steepest = suggestion if steepest is None else steepest

    def __repr__(self):
        b = f"{self.bound:.3g}" if self.bound is not None and np.isfinite(self.bound) else "n/a"
        capped = (f" (the loss fell fastest at {self.steepest:.3g}, above the bound: an lr there diverges "
                  "once the run is long enough, so half the bound)") if self.steepest != self.suggestion else ""
        return (f"LRRangeResult({self.lrs.size} steps, lr {self.lrs[0]:.3g} → {self.lrs[-1]:.3g}, "
                f"suggestion {self.suggestion:.3g}{capped}, stability bound {b})")

    def plot(self, ax=None):
        return plot_lr_range(self, ax=ax)


def lr_range_test(X, y, *, lr_min=1e-7, lr_max=10.0, num_steps=100, smooth=0.98, diverge_factor=4.0,
                  batch_size=None, seed=0, **train_kwargs):
    """Run the test; ``train_kwargs`` are passed to :func:`minireg.train` (model, loss, optimizer, …)."""
    lr_min = V.real("lr_min", lr_min, low=0.0, low_open=True)
    lr_max = V.real("lr_max", lr_max, low=0.0, low_open=True)
    if not lr_min < lr_max:
        raise ValueError(f"lr_min={lr_min!r} and lr_max={lr_max!r} must satisfy 0 < lr_min < lr_max.")
    num_steps = V.integer("num_steps", num_steps, 5)
    smooth = V.real("smooth", smooth, low=0.0, high=1.0, high_open=True)
    diverge_factor = V.real("diverge_factor", diverge_factor, low=1.0, low_open=True)
    if batch_size is not None:
        batch_size = V.integer("batch_size", batch_size, 1)
    n = V.data_X(X, np.float64).shape[0]
    spe = -(-n // min(batch_size or n, n))
    epochs = -(-int(num_steps) // spe)
    total = epochs * spe
    lrs = lr_min * (lr_max / lr_min) ** (np.arange(total) / (total - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        r = train(X, y, epochs=epochs, batch_size=batch_size, seed=seed, step_lrs=lrs, trace="norms",
                  **train_kwargs)
    losses = r.trace.loss.astype(np.float64)
    lrs = lrs[:losses.size]
    smoothed = np.empty_like(losses)
    avg, best, stop = 0.0, math.inf, losses.size
    for i, loss in enumerate(losses):
        if not np.isfinite(loss):
            stop = i
            break
        avg = smooth * avg + (1 - smooth) * loss
        smoothed[i] = avg / (1 - smooth ** (i + 1))
        best = min(best, smoothed[i])
        if smoothed[i] > diverge_factor * best:
            stop = i + 1
            break
    lrs, losses = lrs[:stop], losses[:stop]
    smoothed = centered_smooth(losses, max(3, (stop // 20) | 1))
    skip = max(1, stop // 10)  # the lowest lrs barely move the loss: their slope is noise
    if stop - skip >= 3:
        slope = np.gradient(np.log(smoothed[skip:]), np.log10(lrs[skip:]))
        suggestion = float(lrs[skip + int(np.argmin(slope))])
    else:
        suggestion = float(lrs[0])
    cfg = r.config
    try:
        b = stability_bound(X, y, model=cfg["model"], loss=cfg["loss"], delta=cfg["delta"],
                            optimizer=cfg["optimizer"], momentum=cfg.get("momentum", 0.0),
                            beta1=cfg.get("beta1", 0.9), hidden=cfg["hidden"] or (1,),
                            activation=cfg["activation"], standardize=cfg["standardize"] or False, seed=seed)
        bound = b.lr_max
    except ValueError:
        bound = None
    steepest = suggestion
    # a test ramps the lr up fast: the loss can still fall at an lr whose instability has not had
    # the steps to grow yet. Where the bound is known, the suggestion stays below it
    if bound is not None and np.isfinite(bound) and suggestion > bound:
        suggestion = 0.5 * bound
    return LRRangeResult(lrs, losses, smoothed, suggestion, bound, stop, steepest)
