"""One detector per finding code. Each reads the run (config, history, trace) and, when the run
still holds them, the arrays it trained on; each says in ``evidence["used"]`` what it used.

Thresholds (module constants, stated here so they can be argued with):
- instability: the loss rose ≥ LOSS_RISE× above its running minimum, or the run diverged;
  lr_too_high also needs lr > the stability bound when the bound can be computed.
- stalled: the epoch loss moved by < STALL_DROP (relative) over the last quarter of the epochs
  and ends within FAR× its minimum; still falling: it fell by more than that. "Far above" a reference: ≥ FAR× it.
- unscaled features: non-constant feature standard deviations spanning ≥ SCALE_RATIO×, or
  κ(X̃ᵀX̃) ≥ KAPPA_MIN and ≥ KAPPA_GAIN× the κ after z-scoring.
- outliers: a residual with robust z ≥ OUTLIER_Z (median/MAD, 1.4826; for the linear model the
  residuals of a robust Huber fit, when there are ≥ 3 rows per coefficient) and the top 1% of
  samples (at least one, k) carrying ≥ max(OUTLIER_SHARE, 3k/n) of the loss.
- unshuffled: |Spearman ρ(target, row order)| ≥ ORDER_RHO, or the position within the epoch
  explains ≥ SAWTOOTH of the batch-loss variance, repeating over ≥ 3 epochs.
- overfitting: validation loss ≥ OVERFIT_RISE× its minimum at the end while the training loss
  kept falling (≥ 5% below its value at the validation minimum).
- vanishing gradients: ‖∂L/∂W1‖ / ‖∂L/∂W_last‖ < VANISH (AUTOTRAINER's 1e-3) at the first step
  (later the output layer's own gradient fades as it fits the mean, hiding the ratio).
- dead ReLU: units whose output is 0 for every training row; ≥ DEAD_ERROR of a layer is a
  warning (DeepDiagnosis' 70%), ≥ DEAD_INFO an info.
- data floor: the loss of a cross-validated k-nearest-neighbours regressor on the same rows
  (needs ≥ MIN_ROWS rows); the linear optimum: least squares, for MSE.
"""
import math

import numpy as np

from ..controls import Scaler, mean_std
from .curvature import condition_number, stability_bound, steps_to_shrink
from .findings import Finding, round_sig
from ._model import Model

LOSS_RISE = 10.0
STALL_DROP = 0.01
FAR = 2.0
SCALE_RATIO = 100.0
KAPPA_MIN, KAPPA_GAIN = 1e4, 100.0
OUTLIER_Z, OUTLIER_SHARE = 5.0, 0.3
ORDER_RHO, SAWTOOTH = 0.5, 0.5
OVERFIT_RISE = 1.1
VANISH = 1e-3
DEAD_ERROR, DEAD_INFO = 0.7, 0.25
MIN_ROWS = 20
_MAX_ROWS = 4000


class Context:
    """What the detectors share: the run, its data (if kept), and lazily computed references."""

    def __init__(self, result):
        self.r = result
        self.cfg = result.config
        self.hist = result.history["loss"].astype(np.float64)
        self.tr = result.trace
        self.data = result.data
        self.model = Model(result.layout, result.config["activation"], result.config["loss"], result.config["delta"])
        self._cache = {}

    def cached(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def has_data(self):
        return self.data is not None

    def sample(self):
        """(X, y) as trained on, at most _MAX_ROWS rows (seeded sample)."""
        def make():
            X, y = (np.asarray(a, np.float64) for a in self.data[:2])
            if X.shape[0] > _MAX_ROWS:
                rows = np.sort(np.random.default_rng(0).choice(X.shape[0], _MAX_ROWS, replace=False))
                X, y = X[rows], y[rows]
            return X, y
        return self.cached("sample", make)

    def loss_fn(self, r):
        loss, delta = self.cfg["loss"], self.cfg["delta"]
        a = np.abs(r)
        if loss == "mse":
            return r * r
        if loss == "huber":
            return np.where(a < delta, 0.5 * r * r, delta * (a - 0.5 * delta))
        return a

    def bound(self):
        """The stability bound of this run's setting (None where it cannot be computed)."""
        def make():
            if not self.has_data:
                return None
            X, y = self.sample()
            cfg = self.cfg
            kw = dict(model=cfg["model"], loss=cfg["loss"], delta=cfg["delta"], optimizer=cfg["optimizer"],
                      lr=cfg["lr"], momentum=cfg.get("momentum", 0.0), beta1=cfg.get("beta1", 0.9),
                      batch_size=cfg["batch_size"], hidden=cfg["hidden"] or (1,), activation=cfg["activation"],
                      eps=cfg.get("eps", 1e-8), beta2=cfg.get("beta2", 0.999))
            if self.tr is not None and self.tr.params is not None and len(self.tr):
                kw["params"] = self.tr.params[0]
                if "exp_avg_sq" in self.tr.state:
                    kw["exp_avg_sq"] = self.tr.state["exp_avg_sq"][0]
                    kw["step"] = 1
                elif "square_avg" in self.tr.state:
                    kw["exp_avg_sq"] = self.tr.state["square_avg"][0]
            try:
                b = stability_bound(X, y, **kw)
            except (ValueError, FloatingPointError):
                return None
            return None if (b.lr_max is None or not np.isfinite(b.lr_max) and b.lr_max != math.inf) else b
        return self.cached("bound", make)

    def predictions(self):
        X, y = self.sample()
        return self.cached("pred", lambda: self.model.layer_outputs(self.r.theta, X)[1])

    def data_floor(self):
        """Cross-validated kNN loss on the training rows: what the data allow (None if too few rows)."""
        def make():
            if not self.has_data:
                return None
            X, y = self.sample()
            if X.shape[0] < MIN_ROWS:
                return None
            from sklearn.model_selection import cross_val_predict
            from sklearn.neighbors import KNeighborsRegressor
            Xs = Scaler.fit(X, "zscore").transform(X, np.float64)
            best = None
            for k in (3, 5, 10, 20):
                if k >= 0.8 * X.shape[0]:
                    break
                p = cross_val_predict(KNeighborsRegressor(k), Xs, y, cv=5)
                v = float(np.mean(self.loss_fn(p - y)))
                best = v if best is None else min(best, v)
            return best
        return self.cached("floor", make)

    def linear_optimum(self):
        """The least-squares loss (MSE runs of the linear model), else None."""
        def make():
            if not self.has_data or self.cfg["loss"] != "mse" or self.cfg["model"] != "linear":
                return None
            X, y = self.sample()
            Xt = np.column_stack([X, np.ones(X.shape[0])])
            coef = np.linalg.lstsq(Xt, y, rcond=None)[0]
            return float(np.mean((Xt @ coef - y) ** 2))
        return self.cached("linopt", make)

    def final_loss(self):
        if self.has_data:
            X, y = self.sample()
            return float(np.mean(self.loss_fn(self.predictions() - y)))
        return float(self.hist[-1]) if self.hist.size else math.nan

    def trend(self):
        """(relative drop of the epoch loss over the last quarter, number of epochs)."""
        h = self.hist
        if h.size < 8 or not np.all(np.isfinite(h)):
            return None
        q = h[int(0.75 * (h.size - 1))]
        return (q - h[-1]) / q if q > 0 else 0.0

    def step_of_epoch(self, epoch):
        return int(epoch * self.cfg["steps_per_epoch"])


# ----------------------------------------------------------------------------------------------
def nonfinite(ctx):
    r = ctx.r
    if not r.diverged:
        return []
    ev = {"used": "the diverged run's trace" if ctx.tr is not None else "the run's diverged_at"}
    where = "the parameters"
    if ctx.tr is not None and len(ctx.tr):
        last = float(ctx.tr.loss[-1])
        if not np.isfinite(last):
            where = "the loss"
        finite_loss = ctx.tr.loss[np.isfinite(ctx.tr.loss)]
        if finite_loss.size >= 2:
            ev["last_finite_loss"] = float(finite_loss[-1])
            ev["loss_growth_per_step"] = float((finite_loss[-1] / max(finite_loss[0], 1e-300)) ** (1 / (finite_loss.size - 1)))
    bad = [k for k, v in r.layout.unflatten(r.theta).items() if not np.all(np.isfinite(v))]
    ev["nonfinite_in"] = bad if bad else ["loss"]
    b = ctx.bound()
    if b is not None and np.isfinite(b.lr_max) and r.config["lr"] > b.lr_max:
        cause = f"lr={r.config['lr']:g} is above the stability bound {b.lr_max:.3g}"
        fix = {"lr": round_sig(0.5 * min(b.lr_max, b.batch_lr_max or math.inf))}
    elif ctx.has_data and np.abs(ctx.data[0]).max() > 1e6:
        cause = f"feature values up to {np.abs(ctx.data[0]).max():.3g} make the gradients overflow"
        fix = {"standardize": "zscore"}
    else:
        cause = "the gradients grew without bound"
        fix = {"clip_grad_norm": 1.0, "lr": round_sig(r.config["lr"] / 10)}
    ev["cause"] = cause
    return [Finding("nonfinite", "error",
                    f"{where} became NaN/inf at step {r.diverged_at} and the run stopped there: {cause}.",
                    r.diverged_at, ev, fix)]


def lr_too_high(ctx):
    cfg, h, tr = ctx.cfg, ctx.hist, ctx.tr
    # instability is judged on the epoch losses (minibatch losses jump by themselves once they are
    # small); the trace, when there is one, then locates the step where the rise began
    fin_h = np.where(np.isfinite(h), h, np.inf)
    rise_h = np.flatnonzero(fin_h >= LOSS_RISE * np.minimum.accumulate(fin_h))
    if not (ctx.r.diverged or rise_h.size):
        return []
    if tr is not None and len(tr):
        losses, steps = tr.loss.astype(np.float64), np.asarray(tr.step)
    else:
        losses, steps = h, (np.arange(h.size) + 1) * cfg["steps_per_epoch"] - 1
    fin = np.where(np.isfinite(losses), losses, np.inf)
    rise = np.flatnonzero(fin >= LOSS_RISE * np.minimum.accumulate(fin))
    b = ctx.bound()
    lr = cfg["lr"]
    ev = {"used": "epoch losses" + (", trace batch losses for the step" if tr is not None else ""), "lr": lr}
    first = int(steps[rise[0]]) if rise.size else ctx.r.diverged_at
    recovered = not ctx.r.diverged and np.isfinite(h[-1]) and h[-1] <= FAR * np.nanmin(h)
    if recovered:  # a transient spike the run got over: worth knowing, not a failure
        return [Finding("lr_too_high", "info",
                        f"the loss spiked ×{_growth(fin_h):.3g} above its running minimum before settling; "
                        f"lr={lr:g} is near the edge of stability.", first, ev, {})]
    if b is not None and np.isfinite(b.lr_max):
        ev.update(bound=b.lr_max, lambda_max=b.lambda_max, bound_kind=b.kind)
        if b.batch_lr_max is not None:
            ev["minibatch_bound"] = b.batch_lr_max
        if lr <= b.lr_max and (b.batch_lr_max is None or lr <= b.batch_lr_max):
            return []
        limit = min(b.lr_max, b.batch_lr_max or math.inf)
        fix = {"lr": round_sig(0.5 * limit)}
        msg = (f"lr={lr:g} exceeds the stability bound {'(2+2β)/λmax' if b.momentum else '2/λmax'}="
               f"{b.lr_max:.3g}" + (f" (minibatch bound {b.batch_lr_max:.3g})" if b.batch_lr_max else "")
               + f"; the loss grew ×{_growth(fin):.3g}")
        if b.lr_max_standardized is not None and b.lr_max_standardized > 2 * b.lr_max:
            msg += f" (with standardize=True the bound becomes {b.lr_max_standardized:.3g})"
            ev["bound_standardized"] = b.lr_max_standardized
        return [Finding("lr_too_high", "error", msg + ".", first, ev, fix)]
    return [Finding("lr_too_high", "warning",
                    f"the loss rose ×{_growth(fin):.3g} above its running minimum (no stability bound could be "
                    f"computed for this run), which points to lr={lr:g} being too high.",
                    first, ev, {"lr": round_sig(lr / 10)})]


def _growth(fin):
    f = fin[np.isfinite(fin)]
    return float(f.max() / max(f.min(), 1e-300)) if f.size else math.inf


def lr_too_low(ctx):
    if ctx.r.diverged:
        return []
    drop = ctx.trend()
    if drop is None or drop <= STALL_DROP:
        return []
    h = ctx.hist
    if not np.all(np.diff(h[int(0.5 * h.size):]) <= 1e-12 * np.abs(h[int(0.5 * h.size):-1])):
        return []  # not a steady descent
    ref = ctx.linear_optimum() or ctx.data_floor()
    final = ctx.final_loss()
    if ref is None or final < FAR * ref:
        return []
    lr = ctx.cfg["lr"]
    b = ctx.bound()
    ev = {"used": "epoch losses and the data", "drop_last_quarter": drop, "final_loss": final, "reference_loss": ref,
          "reference": "least squares" if ctx.linear_optimum() else "cross-validated kNN"}
    if b is not None and np.isfinite(b.lr_max) and b.lr_max != math.inf:
        if lr > 0.1 * b.lr_max:
            return []
        ev["bound"] = b.lr_max
        fix = {"lr": round_sig(min(0.5 * b.lr_max, 100 * lr))}
        tail = f", and lr={lr:g} is {b.lr_max / lr:.3g}× below the stability bound {b.lr_max:.3g}"
    else:
        fix = {"lr": round_sig(10 * lr)}
        tail = ""
    return [Finding("lr_too_low", "warning",
                    f"the loss was still falling steadily at the end ({drop:.1%} over the last quarter of the epochs) "
                    f"but ended at {final:.3g}, {final / ref:.3g}× the reachable {ref:.3g}{tail}.",
                    None, ev, fix)]


def unscaled_features(ctx):
    if not ctx.has_data:
        return []
    X, _ = ctx.sample()
    return _unscaled(X, "the features as trained on")


def _unscaled(X, used):
    sd = mean_std(X)[1]
    live = sd[sd > 0]
    ratio = float(live.max() / live.min()) if live.size else 1.0
    kappa = condition_number(X)[0]
    kappa_std = condition_number(Scaler.fit(X, "zscore").transform(X, np.float64))[0]
    gain = kappa / kappa_std if kappa_std else math.inf
    if ratio < SCALE_RATIO and not (kappa >= KAPPA_MIN and gain >= KAPPA_GAIN):
        return []
    ev = {"used": used, "feature_std": sd.tolist(), "feature_mean": X.mean(axis=0).tolist(), "std_ratio": ratio,
          "kappa": kappa, "kappa_standardized": kappa_std, "gd_steps_to_1000x": steps_to_shrink(kappa),
          "gd_steps_to_1000x_standardized": steps_to_shrink(kappa_std)}
    return [Finding("unscaled_features", "warning",
                    f"feature scales span ×{ratio:.3g} and κ(X̃ᵀX̃)={kappa:.3g} (z-scored: {kappa_std:.3g}): gradient "
                    f"descent needs ~{ev['gd_steps_to_1000x']:.3g} steps to cut the error 1000×, "
                    f"~{ev['gd_steps_to_1000x_standardized']} after standardizing.",
                    None, ev, {"standardize": "zscore"})]


def outliers(ctx):
    if not ctx.has_data:
        return []
    X, y = ctx.sample()
    res = ctx.predictions() - y
    if not np.all(np.isfinite(res)):
        return []
    zres, used = res, "residuals at the final parameters"
    if ctx.cfg["model"] == "linear":
        robust = robust_residuals(X, y)
        if robust is not None:
            zres, used = robust, "robust z of a Huber fit's residuals; loss shares at the final parameters"
    return _outliers(res, ctx.loss_fn(res), ctx.cfg["loss"], used,
                     np.abs(_dloss(res, ctx.cfg)) * np.sqrt(1 + (X * X).sum(axis=1)), zres)


def robust_residuals(X, y):
    """Residuals of a Huber linear fit (None with fewer than 3 rows per coefficient): an MSE line
    leans towards its outliers and hides them in its own residuals."""
    if X.shape[0] < max(8, 3 * (X.shape[1] + 1)):
        return None
    from sklearn.linear_model import HuberRegressor
    try:
        return HuberRegressor(max_iter=500).fit(X, y).predict(X) - y
    except ValueError:
        return None


def _dloss(res, cfg):
    if cfg["loss"] == "mse":
        return 2 * res
    if cfg["loss"] == "huber":
        return np.clip(res, -cfg["delta"], cfg["delta"])
    return np.sign(res)


def _outliers(res, per_loss, loss, used, per_grad, zres=None):
    zres = res if zres is None else zres
    med = np.median(zres)
    mad = 1.482602218505602 * np.median(np.abs(zres - med))
    if mad == 0:
        mad = np.mean(np.abs(zres - med)) * 1.2533 or 1.0
    z = np.abs(zres - med) / mad
    k = max(1, int(round(0.01 * res.size)))
    top = np.argsort(per_loss)[::-1][:k]
    loss_share = float(per_loss[top].sum() / per_loss.sum()) if per_loss.sum() > 0 else 0.0
    grad_share = float(per_grad[top].sum() / per_grad.sum()) if per_grad.sum() > 0 else 0.0
    if z.max() < OUTLIER_Z or loss_share < max(OUTLIER_SHARE, 3 * k / res.size):
        return []
    worst = np.argsort(z)[::-1][:5]
    ev = {"used": used, "rows": worst.tolist(), "robust_z": z[worst].tolist(), "top_share_of_loss": loss_share,
          "top_share_of_gradient": grad_share, "top_rows": top.tolist(), "residual_scale_mad": float(mad)}
    if loss == "mse":
        return [Finding("outliers", "warning",
                        f"{k} sample(s) ({k / res.size:.1%} of rows, robust z up to {z.max():.3g}) carry "
                        f"{loss_share:.0%} of the loss and {grad_share:.0%} of the gradient under MSE.",
                        None, ev, {"loss": "huber", "delta": round_sig(1.345 * mad)})]
    return [Finding("outliers", "info",
                    f"{k} sample(s) have robust z up to {z.max():.3g}; the {loss} loss already limits their pull "
                    f"({grad_share:.0%} of the gradient).", None, ev, {})]


def unshuffled_batches(ctx):
    cfg = ctx.cfg
    if cfg["shuffled"] or cfg["steps_per_epoch"] < 2:
        return []
    ev = {"used": []}
    rho = None
    if ctx.has_data:
        from scipy.stats import spearmanr
        y = np.asarray(ctx.data[1], np.float64)
        rho = float(spearmanr(np.arange(y.size), y).statistic) if np.ptp(y) > 0 else 0.0
        ev["used"].append("target order")
        ev["spearman_rho"] = rho
    saw = None
    tr = ctx.tr
    spe = cfg["steps_per_epoch"]
    if tr is not None and tr.every == 1 and len(tr) >= 3 * spe:
        n_ep = len(tr) // spe
        L = np.log(np.maximum(tr.loss[:n_ep * spe].astype(np.float64), 1e-300)).reshape(n_ep, spe)
        L = L - L.mean(axis=1, keepdims=True)  # remove the epoch-to-epoch descent
        total = L.var()
        saw = float(L.mean(axis=0).var() / total) if total > 0 else 0.0
        ev["used"].append("trace batch losses")
        ev["sawtooth_share"] = saw
    ordered = rho is not None and abs(rho) >= ORDER_RHO
    sawtooth = saw is not None and saw >= SAWTOOTH
    if not (ordered or sawtooth):
        return []
    parts = []
    if ordered:
        parts.append(f"the targets follow the row order (Spearman ρ={rho:.2f})")
    if sawtooth:
        parts.append(f"{saw:.0%} of the batch-loss variation repeats with the position in each epoch")
    return [Finding("unshuffled_batches", "warning",
                    "with shuffle=False " + " and ".join(parts) + ": each batch sees an unrepresentative slice.",
                    spe if sawtooth else None, ev, {"shuffle": True})]


def underfitting_and_plateau(ctx):
    """underfitting: stalled at the model's own optimum, far above what the data allow; plateau:
    stalled far above what the data (or the model's own optimum) allow."""
    if ctx.r.diverged or not ctx.has_data:
        return []
    drop = ctx.trend()
    h = ctx.hist
    # stalled: neither falling nor rising (a rising loss is instability, lr_too_high's case)
    if drop is None or abs(drop) > STALL_DROP or h[-1] > FAR * np.min(h):
        return []
    floor = ctx.data_floor()
    final = ctx.final_loss()
    opt = ctx.linear_optimum()
    out = []
    ev = {"used": "the data (cross-validated kNN floor" + (", least squares" if opt is not None else "") + ")",
          "final_loss": final, "data_floor": floor, "linear_optimum": opt, "drop_last_quarter": drop}
    if opt is not None and final >= FAR * opt and final > opt + 1e-12:
        out.append(Finding("plateau", "warning",
                           f"the loss stopped improving at {final:.3g}, {final / opt:.3g}× the least-squares optimum "
                           f"{opt:.3g} this model can reach.", None, ev,
                           {"lr": round_sig(ctx.cfg["lr"] * 3), "schedule": None}))
        return out
    if floor is None or final < FAR * floor or final - floor < 1e-3 * max(abs(floor), 1e-12):
        return out
    X, y = ctx.sample()
    res = ctx.predictions() - y
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsRegressor
    Xs = Scaler.fit(X, "zscore").transform(X, np.float64)
    structure = float(np.mean(cross_val_score(KNeighborsRegressor(10), Xs, res, cv=5, scoring="r2")))
    ev["residual_structure_r2"] = structure
    if ctx.cfg["model"] == "linear":
        out.append(Finding("underfitting", "warning",
                           f"the linear model's loss {final:.3g} is {final / floor:.3g}× what a flexible model reaches "
                           f"on the same data ({floor:.3g}); {structure:.0%} of the residuals' variance is "
                           "predictable from X.", None, ev, {"model": "mlp", "hidden": (32, 32)}))
    else:
        out.append(Finding("plateau", "warning",
                           f"the loss stopped improving at {final:.3g}, {final / floor:.3g}× what the data allow "
                           f"({floor:.3g}); {structure:.0%} of the residuals' variance is still predictable from X.",
                           None, ev, {"optimizer": "adam", "lr": 0.01, "standardize": "zscore"}))
    return out


def overfitting(ctx):
    val = ctx.r.history.get("val_loss")
    if val is None or val.size < 5 or ctx.r.diverged:
        return []
    val = val.astype(np.float64)
    h = ctx.hist
    e_best = int(np.nanargmin(val))
    if e_best >= val.size - 2:
        return []
    rise = val[-1] / val[e_best] if val[e_best] > 0 else math.inf
    if rise < OVERFIT_RISE or not h[-1] <= 0.95 * h[e_best]:
        return []
    ev = {"used": "epoch training and validation losses", "best_val_epoch": e_best, "best_val_loss": float(val[e_best]),
          "final_val_loss": float(val[-1]), "train_loss_at_best": float(h[e_best]), "final_train_loss": float(h[-1])}
    restored = ctx.cfg.get("early_stopping") is not None and ctx.cfg.get("restore_best") and ctx.r.best_epoch is not None
    sev = "info" if restored else "warning"
    msg = (f"the validation loss rose ×{rise:.3g} after epoch {e_best} (to {val[-1]:.3g}) while the training "
           f"loss kept falling ({h[e_best]:.3g} → {h[-1]:.3g})")
    msg += "; early stopping restored the best epoch's parameters." if restored else "."
    return [Finding("overfitting", sev, msg, ctx.step_of_epoch(e_best + 1), ev,
                    {} if restored else {"early_stopping": 10, "weight_decay": 1e-3})]


def _layer_grad_norms(layout, grads):
    """‖∂L/∂Wk‖ per layer for one or many flat gradients."""
    return np.stack([np.linalg.norm(grads[..., layout.slices[f"W{k + 1}"]], axis=-1)
                     for k in range(layout.n_layers)], axis=-1)


def vanishing_gradients(ctx):
    lay = ctx.r.layout
    if lay.n_layers < 2:
        return []
    tr = ctx.tr
    if tr is not None and tr.grad is not None and len(tr):
        # at the first step: later, the output layer's gradient itself fades as it fits the mean
        norms = _layer_grad_norms(lay, tr.grad[0].astype(np.float64))
        step, used = int(tr.step[0]), "trace gradient of the first step"
    elif ctx.has_data:
        X, y = ctx.sample()
        norms = _layer_grad_norms(lay, ctx.model.loss_grad(ctx.r.theta, X, y)[1])
        step, used = None, "the gradient at the final parameters"
    else:
        return []
    ratio = float(norms[0] / norms[-1]) if norms[-1] > 0 else math.nan
    if not (ratio < VANISH):
        return []
    ev = {"used": used, "layer_grad_norms": norms.tolist(), "first_to_last_ratio": ratio}
    med = ratio
    act = ctx.cfg["activation"]
    fix = {"activation": "relu"} if act in ("sigmoid", "tanh") else {"init": "keras"}
    return [Finding("vanishing_gradients", "warning",
                    f"the first layer's gradient is {med:.2g}× the last layer's (layer norms "
                    + ", ".join(f"{v:.2g}" for v in ev["layer_grad_norms"]) + f"): the early {act} layers barely learn.",
                    step, ev, fix)]


def dead_relu(ctx):
    if ctx.cfg["activation"] != "relu" or ctx.r.layout.n_layers < 2 or not ctx.has_data:
        return []
    X, _ = ctx.sample()
    hidden, _ = ctx.model.layer_outputs(ctx.r.theta, X)
    dead = [(h.max(axis=0) <= 0) for h in hidden]
    frac = [float(d.mean()) for d in dead]
    worst = int(np.argmax(frac))
    if frac[worst] < DEAD_INFO:
        return []
    ev = {"used": "layer outputs over the training rows at the final parameters", "dead_fraction": frac,
          "dead_units": [np.flatnonzero(d).tolist() for d in dead]}
    step = None
    tr = ctx.tr
    if tr is not None and tr.params is not None and len(tr) > 1:
        # the first recorded step from which these units stayed dead at every later checkpoint
        idx = np.unique(np.linspace(0, len(tr) - 1, min(len(tr), 20)).astype(int))
        still = []
        for i in idx:
            hs, _ = ctx.model.layer_outputs(tr.params[i].astype(np.float64), X)
            still.append(bool(np.all(hs[worst].max(axis=0)[dead[worst]] <= 0)))
        k = len(still)
        while k > 0 and still[k - 1]:
            k -= 1
        step = int(tr.step[idx[k]]) if k < len(still) else None
        ev["used"] += "; trace params at checkpoints"
        ev["never_recovered_since_step"] = step
    sev = "warning" if frac[worst] >= DEAD_ERROR else "info"
    lr = ctx.cfg["lr"]
    return [Finding("dead_relu", sev,
                    f"{frac[worst]:.0%} of the ReLU units of hidden layer {worst + 1} output 0 for every training row"
                    + (f" and have since step {step}" if step is not None else "") + ".",
                    step, ev, {"lr": round_sig(lr / 10), "init": "keras"} if sev == "warning" else {})]


DETECTORS = (nonfinite, lr_too_high, lr_too_low, unscaled_features, outliers, unshuffled_batches,
             underfitting_and_plateau, overfitting, vanishing_gradients, dead_relu)
