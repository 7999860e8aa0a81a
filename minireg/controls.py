"""Training controls that act between epochs or on the data: scaling, winsorizing, validation
splits, learning-rate schedules and early stopping. All per-step work stays in the kernels; what is
here runs once per run or once per epoch.
"""
import math

import numpy as np

# --------------------------------------------------------------------------------------------------
# feature / target scaling


class Scaler:
    """A fitted affine map ``(v - center) / scale`` per column, with optional quantile clipping first.

    kinds: "zscore" (mean / population std, as StandardScaler), "minmax" (min / (max - min), onto
    [0, 1]), "robust" (median / (1.4826 · MAD), as scipy's median_abs_deviation(scale="normal")), or
    None (identity). Columns whose scale is 0 (constant) get scale 1, as scikit-learn does; they are
    listed in ``constant``. ``clip`` holds the (low, high) bounds of a winsorization, or None.
    """

    def __init__(self, kind, center, scale, constant, clip=None):
        self.kind, self.center, self.scale, self.constant, self.clip = kind, center, scale, constant, clip

    @classmethod
    def fit(cls, V, kind, quantiles=None):
        if kind is None and quantiles is None:  # the identity needs only the shape: no float64 copy of V
            z = np.zeros(np.shape(V)[1:])
            return cls(None, z, np.ones(np.shape(V)[1:]), [], None)
        V = np.asarray(V, dtype=np.float64)
        clip = None
        if quantiles is not None:
            clip = (np.quantile(V, quantiles[0], axis=0), np.quantile(V, quantiles[1], axis=0))
            V = np.clip(V, *clip)
        if kind is None:
            z = np.zeros(V.shape[1:])
            return cls(None, z, np.ones(V.shape[1:]), [], clip)
        if kind == "zscore":
            center, scale = mean_std(V)
        elif kind == "minmax":
            center, scale = V.min(axis=0), V.max(axis=0) - V.min(axis=0)
        else:
            center = np.median(V, axis=0)
            scale = 1.482602218505602 * np.median(np.abs(V - center), axis=0)
        constant = np.atleast_1d(scale == 0)
        scale = np.where(scale == 0, 1.0, scale)
        return cls(kind, center, scale, np.flatnonzero(constant).tolist(), clip)

    def transform(self, V, dtype):
        V = np.asarray(V, dtype=np.float64)
        if self.clip is not None:
            V = np.clip(V, *self.clip)
        return np.ascontiguousarray((V - self.center) / self.scale, dtype=dtype)

    def inverse(self, V):
        return V * self.scale + self.center

    @property
    def identity(self):
        return self.kind is None and self.clip is None

    def describe(self):
        d = {"kind": self.kind, "center": np.atleast_1d(self.center).tolist(),
             "scale": np.atleast_1d(self.scale).tolist(), "constant_columns": self.constant}
        if self.clip is not None:
            d["clip_low"] = np.atleast_1d(self.clip[0]).tolist()
            d["clip_high"] = np.atleast_1d(self.clip[1]).tolist()
        return d


def mean_std(V, big=1e150):
    """Column means and population standard deviations; columns with values beyond ``big`` are
    divided by their largest magnitude first, so that squaring them cannot overflow."""
    V = np.asarray(V, dtype=np.float64)
    top = np.abs(V).max(axis=0) if V.size else np.zeros(V.shape[1:])
    if not np.any(top > big):
        return V.mean(axis=0), V.std(axis=0)
    m = np.where(top > big, top, 1.0)
    return m * (V / m).mean(axis=0), m * (V / m).std(axis=0)


def split_validation(n, fraction, rng):
    """Seeded random split: (train rows, validation rows), each sorted; at least one row in each."""
    n_val = min(max(1, int(round(fraction * n))), n - 1)
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# --------------------------------------------------------------------------------------------------
# learning-rate schedules (torch.optim.lr_scheduler semantics, stepped once per epoch)

SCHEDULES = ("step", "exponential", "invscaling", "cosine", "plateau")


def epoch_lrs(schedule, lr, epochs, p):
    """The lr of every epoch for the schedules that depend on the epoch alone (closed forms of
    StepLR, ExponentialLR, CosineAnnealingLR with eta_min=0). invscaling is per step (in the
    kernel, from these base values) and plateau is decided as the run goes."""
    e = np.arange(epochs, dtype=np.float64)
    if schedule == "step":
        return lr * p["gamma"] ** np.floor(e / p["step_size"])
    if schedule == "exponential":
        return lr * p["gamma"] ** e
    if schedule == "cosine":
        return lr * (1 + np.cos(math.pi * e / p["T_max"])) / 2
    return np.full(epochs, lr)


class Plateau:
    """torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min", threshold=1e-4, threshold_mode="rel",
    cooldown=0, min_lr=0, eps=1e-8) with the given factor and patience."""

    def __init__(self, lr, factor, patience, threshold=1e-4, eps=1e-8):
        self.lr, self.factor, self.patience, self.threshold, self.eps = lr, factor, patience, threshold, eps
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, metric):
        if metric < self.best * (1 - self.threshold):
            self.best = metric
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            new_lr = self.lr * self.factor
            if self.lr - new_lr > self.eps:
                self.lr = new_lr
            self.bad_epochs = 0
        return self.lr


class EarlyStopping:
    """keras.callbacks.EarlyStopping(mode="min", baseline=None, start_from_epoch=0): after each
    epoch, improvement means ``current + min_delta < best``; training stops once ``patience`` epochs
    in a row brought none (and not in epoch 0). With restore_best the parameters of the best epoch
    are put back when training ends, whether it stopped early or not."""

    def __init__(self, patience, min_delta, restore_best):
        self.patience, self.min_delta, self.restore_best = patience, abs(min_delta), restore_best
        self.best = math.inf
        self.best_epoch = None
        self.best_theta = None
        self.wait = 0
        self.stopped_epoch = None

    def update(self, epoch, current, theta):
        """Record the epoch's monitored value; True when training should stop now."""
        if self.restore_best and self.best_theta is None:
            self.best_theta, self.best_epoch = theta.copy(), epoch
        self.wait += 1
        if current + self.min_delta < self.best:
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best:
                self.best_theta = theta.copy()
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False
