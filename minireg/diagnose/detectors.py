"""One detector per finding code. Each reads the run (config, history, trace) and, when the run
still holds them, the arrays it trained on; each says in ``evidence["used"]`` what it used.

Thresholds (module constants, stated here so they can be argued with):
- instability: the loss rose ≥ LOSS_RISE× above its running minimum and back to ≥ RISE_UNDO× its
  initial value, or the run diverged;
  lr_too_high also needs lr > the stability bound when the bound can be computed (momentum-aware:
  (2+2μ)/λmax; a transient spike below the bound is momentum's overshoot, not instability).
- Adam/RMSprop jitter: each step moves every parameter by about lr, which keeps the loss
  ≈ ½·lr²·tr(H) above its optimum; a run that ends ≥ FAR× its reachable loss on a floor (the best
  epoch of the last quarter within FLOOR_PROGRESS of the quarter before's), with that jitter
  ≥ JITTER_SHARE of the excess, has lr too high.
- lr too low: a run ≥ FAR× its reachable loss whose remaining error needs more steps than the run
  took: for linear MSE with SGD, per Hessian eigendirection i, log(excess_i/target)/(−2·log|1−lr·λ_i|)
  (lr/(1−μ) with momentum), with lr ≤ LOW_LR_SHARE× the bound; for Adam/RMSprop, whose steps are
  about lr: when the distance to the least-squares optimum needs more than the run's steps at lr,
  or, where no optimum is known, when the parameters travelled ≥ TRAVEL_SHARE× lr·steps (the lr
  capped the speed).
- stalled: the epoch loss moved by < STALL_DROP (relative) over the last quarter of the epochs
  and ends within FAR× its minimum; still falling: it fell by more than that. "Far above" a reference: ≥ FAR× it.
- plateau (the catch-all): the run ends ≥ FAR× what it could reach (the linear optimum, or the
  data floor), stalled or still falling slowly, and no other finding names why.
- unscaled features: non-constant feature standard deviations spanning ≥ SCALE_RATIO×, or
  κ(X̃ᵀX̃) ≥ KAPPA_MIN and ≥ KAPPA_GAIN× the κ after z-scoring.
- outliers: a residual with robust z ≥ OUTLIER_Z (median/MAD, 1.4826, the MAD floored at
  NOISE_FLOOR× the target's robust spread so that noise-free data does not explode z; for the linear model the
  residuals of a robust Huber fit, when there are ≥ 3 rows per coefficient) and the top 1% of
  samples (at least one, k) carrying ≥ max(OUTLIER_SHARE, 3k/n) of the loss.
- bad leverage (outliers in X): rows with a feature ≥ LEVERAGE_Z robust SDs from the rest (at most
  5% of rows) whose removal cuts the other rows' least-squares MSE ≥ INFLUENCE×.
- unshuffled: |Spearman ρ(target, row order)| ≥ ORDER_RHO, or the position within the epoch
  explains ≥ SAWTOOTH of the batch-loss variance, repeating over ≥ 3 epochs.
- overfitting: validation loss ≥ OVERFIT_RISE× its minimum at the end while the training loss
  kept falling (≥ 5% below its value at the validation minimum).
- vanishing gradients: ‖∂L/∂W1‖ / ‖∂L/∂W_last‖ < VANISH (AUTOTRAINER's 1e-3) at the first step
  (later the output layer's own gradient fades as it fits the mean, hiding the ratio).
- dead ReLU: units whose output is 0 for every training row; ≥ DEAD_ERROR of a layer is a
  warning (DeepDiagnosis' 70%), ≥ DEAD_INFO an info.
- underfitting (linear model): the model's own optimum (least squares for MSE, the exact Huber fit
  for Huber) is ≥ FAR× the data floor, whether or not the run reached it.
- data floor: the loss of a cross-validated k-nearest-neighbours regressor on the same rows
  (needs ≥ MIN_ROWS rows).
Every warning's and error's fix is then re-run and verified (verify.py).
"""
import math
import time

import numpy as np

from .. import optim
from ..controls import Scaler, mean_std
from ..findings import Finding, round_sig, sort_findings
from ..layout import init_params
from .curvature import condition_number, stability_bound, steps_to_shrink
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
JITTER_SHARE = 0.25
LOW_LR_SHARE = 0.1
TRAVEL_SHARE = 0.3
NOISE_FLOOR = 0.01
ADAPTIVE = optim.ADAPTIVE  # optimizers that scale each step by a running size of the gradient
RISE_UNDO = 0.5
FLOOR_PROGRESS = 0.9
LEVERAGE_Z, INFLUENCE = 10.0, 2.0
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
        if loss == "squared_error":
            return 0.5 * r * r
        if loss == "huber":
            return np.where(a < delta, 0.5 * r * r, delta * (a - 0.5 * delta))
        return a

    def bound(self, row=0):
        """The stability bound of this run's setting (None where it cannot be computed), at the
        parameters and optimizer state of trace row ``row`` when the run is traced. An adaptive
        optimizer's preconditioner is best read just before the loss rose: RMSprop's running mean
        starts at 0, so its first rows understate √v and the bound."""
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
                kw["params"] = self.tr.params[row]
                if "exp_avg_sq" in self.tr.state:
                    kw["exp_avg_sq"] = self.tr.state["exp_avg_sq"][row]
                    kw["step"] = int(self.tr.step[row]) + 1
                elif "square_avg" in self.tr.state:
                    kw["exp_avg_sq"] = self.tr.state["square_avg"][row]
                elif "sum" in self.tr.state:  # Adagrad's preconditioner √sum + ε
                    kw["exp_avg_sq"] = self.tr.state["sum"][row]
            try:
                b = stability_bound(X, y, **kw)
            except (ValueError, FloatingPointError):
                return None
            return None if (b.lr_max is None or not np.isfinite(b.lr_max) and b.lr_max != math.inf) else b
        return self.cached(("bound", row), make)

    def initial_loss(self):
        """The loss before the first step: the trace's first batch loss, else the loss at the
        initial parameters, else the first epoch's."""
        def make():
            tr = self.tr
            if tr is not None and len(tr) and int(tr.step[0]) == 0 and np.isfinite(tr.loss[0]):
                return float(tr.loss[0])
            theta0 = self.initial_theta() if self.has_data else None
            if theta0 is not None:
                X, y = self.sample()
                with np.errstate(all="ignore"):
                    pred = self.model.layer_outputs(theta0, X)[1]
                return float(np.mean(self.loss_fn(pred - y)))
            return float(self.hist[0]) if self.hist.size else math.nan
        return self.cached("loss0", make)

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
            from sklearn.model_selection import cross_val_predict  # lazy on purpose: sklearn only when diagnosing
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

    def linear_fit(self):
        """(loss, flat parameters) of the linear model's own optimum for this loss on the rows
        trained on: least squares for MSE, the exact Huber minimizer for Huber; None otherwise."""
        def make():
            cfg = self.cfg
            if not self.has_data or cfg["model"] != "linear" or cfg["loss"] == "mae":
                return None
            wd = float(cfg.get("weight_decay") or 0.0)
            if cfg.get("l1") or (wd and (cfg["optimizer"] == "adamw" or cfg["loss"] != "mse")):
                return None  # where the penalty moves the run's fixed point off any closed form
            X, y = self.sample()
            Xt = np.column_stack([X, np.ones(X.shape[0])])
            if wd:  # coupled weight decay: the gradient of mean(r²) + (wd/2)·‖θ‖², a ridge solution
                n = X.shape[0]
                coef = np.linalg.solve(2.0 / n * Xt.T @ Xt + wd * np.eye(Xt.shape[1]), 2.0 / n * Xt.T @ y)
                return float(np.mean((Xt @ coef - y) ** 2)), coef
            coef = np.linalg.lstsq(Xt, y, rcond=None)[0]
            if self.cfg["loss"] == "huber":
                from scipy.optimize import minimize  # lazy on purpose, like sklearn
                delta, n = self.cfg["delta"], X.shape[0]

                def f(w):
                    r = Xt @ w - y
                    return np.mean(self.loss_fn(r)), Xt.T @ np.clip(r, -delta, delta) / n
                coef = minimize(f, coef, jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "maxiter": 2000}).x
            return float(np.mean(self.loss_fn(Xt @ coef - y))), coef
        return self.cached("linfit", make)

    def linear_optimum(self):
        """The linear model's optimal loss (see linear_fit), else None."""
        fit = self.linear_fit()
        return None if fit is None else fit[0]

    def reference(self):
        """(loss the run could reach, what it is): the linear optimum, else the data floor."""
        opt = self.linear_optimum()
        if opt is not None:
            return opt, "the linear model's optimum"
        floor = self.data_floor()
        return (floor, "cross-validated kNN") if floor is not None else (None, None)

    def initial_theta(self):
        """The run's initial parameters: the trace's first row, else drawn again from the seed."""
        tr = self.tr
        if tr is not None and tr.params is not None and len(tr) and int(tr.step[0]) == 0:
            return tr.params[0].astype(np.float64)
        inputs = getattr(self.r, "inputs", None)
        init = inputs.kwargs.get("init", "torch") if inputs is not None else self.cfg["init"]
        if isinstance(init, str) and init == "dict":
            return None
        seq = np.random.SeedSequence(self.cfg["seed"]).spawn(3)[0]
        return init_params(self.r.layout, init, np.random.default_rng(seq), np.float64)

    def hessian_trace(self):
        """tr(H) of the loss at the final parameters: exact for the linear model (MSE: 2/n·‖X̃‖²;
        Huber: the rows within delta), Hutchinson's estimate from Hessian-vector products otherwise."""
        def make():
            X, y = self.sample()
            n = X.shape[0]
            if self.cfg["model"] == "linear" and self.cfg["loss"] in ("mse", "huber"):
                Xt = np.column_stack([X, np.ones(n)])
                if self.cfg["loss"] == "mse":
                    return 2.0 * float((Xt * Xt).sum()) / n
                inside = np.abs(self.predictions() - y) < self.cfg["delta"]
                return float((Xt[inside] * Xt[inside]).sum()) / n
            if self.cfg["loss"] == "mae":
                return 0.0
            rng = np.random.default_rng(0)
            theta = np.asarray(self.r.theta, np.float64)
            probes = [rng.choice([-1.0, 1.0], theta.size) for _ in range(8)]
            return float(np.mean([v @ self.model.hvp(theta, v, X, y) for v in probes]))
        return self.cached("trH", make)

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
def _lr_candidates(values, lr):
    """Distinct lr fixes (2 significant digits), in order, each different from ``lr``."""
    out = []
    for v in values:
        v = round_sig(v)
        if v > 0 and np.isfinite(v) and v != lr and {"lr": v} not in out:
            out.append({"lr": v})
    return out


def _below_bound(b, lr):
    """lr fixes under a known bound: half of it, then smaller."""
    return _lr_candidates([0.5 * b.lr_max, 0.2 * b.lr_max, 0.05 * b.lr_max], lr)


def _known(b):
    return b is not None and np.isfinite(b.lr_max) and b.lr_max != math.inf


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
            growth = finite_loss[-1] / max(finite_loss[0], 1e-300)
            ev["loss_growth_per_step"] = float(growth ** (1 / (finite_loss.size - 1)))
    bad = [k for k, v in r.layout.unflatten(r.theta).items() if not np.all(np.isfinite(v))]
    ev["nonfinite_in"] = bad if bad else ["loss"]
    b = ctx.bound()
    lr = r.config["lr"]
    if _known(b) and lr > b.lr_max:
        cause = f"lr={lr:g} is above the stability bound {b.lr_max:.3g}"
        fixes = _below_bound(b, lr)
    elif ctx.has_data and np.abs(ctx.data[0]).max() > 1e6:
        cause = f"feature values up to {np.abs(ctx.data[0]).max():.3g} make the gradients overflow"
        fixes = [{"standardize": "zscore"}, *({"standardize": "zscore", **f} for f in _lr_candidates([lr / 10], lr))]
    else:
        cause = "the gradients grew without bound"
        fixes = _lr_candidates([lr / 10, lr / 100, lr / 1000], lr) + [{"clip_grad_norm": 1.0, "lr": round_sig(lr / 10)}]
    ev["cause"] = cause
    return [Finding("nonfinite", "error",
                    f"{where} became NaN/inf at step {r.diverged_at} and the run stopped there: {cause}.",
                    r.diverged_at, ev, fixes[0], alternatives=fixes[1:])]


def lr_too_high(ctx):
    cfg, h, tr = ctx.cfg, ctx.hist, ctx.tr
    # instability is judged on the epoch losses (minibatch losses jump by themselves once they are
    # small); the trace, when there is one, then locates the step where the rise began
    fin_h = np.where(np.isfinite(h), h, np.inf)
    # a rise counts when the loss climbs LOSS_RISE× above its running minimum and back to at least
    # RISE_UNDO of where it started: ×10 on a loss already at the noise level is not instability
    undo = RISE_UNDO * ctx.initial_loss() if np.isfinite(ctx.initial_loss()) else 0.0
    rise_h = np.flatnonzero((fin_h >= LOSS_RISE * np.minimum.accumulate(fin_h)) & (fin_h >= undo))
    if not (ctx.r.diverged or rise_h.size):
        return _adaptive_jitter(ctx)
    if tr is not None and len(tr):
        losses, steps = tr.loss.astype(np.float64), np.asarray(tr.step)
    else:
        losses, steps = h, (np.arange(h.size) + 1) * cfg["steps_per_epoch"] - 1
    fin = np.where(np.isfinite(losses), losses, np.inf)
    rise = np.flatnonzero((fin >= LOSS_RISE * np.minimum.accumulate(fin)) & (fin >= undo))
    adaptive = cfg["optimizer"] in ADAPTIVE and tr is not None and tr.params is not None and rise.size
    b = ctx.bound(max(int(rise[0]) - 1, 0) if adaptive else 0)
    lr = cfg["lr"]
    ev = {"used": "epoch losses" + (", trace batch losses for the step" if tr is not None else ""), "lr": lr}
    first = int(steps[rise[0]]) if rise.size else ctx.r.diverged_at
    recovered = not ctx.r.diverged and np.isfinite(h[-1]) and h[-1] <= FAR * np.nanmin(h)
    if _known(b):
        ev.update(bound=b.lr_max, lambda_max=b.lambda_max, bound_kind=b.kind)
        if lr <= b.lr_max:
            # below the bound a rise is momentum's overshoot or minibatch noise; unless it lasts, no finding
            if recovered:
                return []
            fixes = _lr_candidates([lr / 3, lr / 10, lr / 30], lr)
            why = (f"with batches of {cfg['effective_batch_size']} rows each step sees a sharper, noisier "
                   "curvature than the full batch's" if cfg["effective_batch_size"] < cfg["n_samples"] else
                   "the curvature grew along the way (the bound is taken where the run started)")
            return [Finding("lr_too_high", "warning",
                            f"the loss rose ×{_growth(fin):.3g} above its running minimum and did not come back, "
                            f"although lr={lr:g} is below the stability bound {b.lr_max:.3g}: {why}.", first, ev,
                            fixes[0], alternatives=fixes[1:])]
        fixes = _below_bound(b, lr)
        if b.lr_max_standardized is not None and b.lr_max_standardized > 10 * b.lr_max and cfg["standardize"] is None:
            # the bound is small because the features' scales differ: standardizing lifts it
            fixes.append({"standardize": "zscore", "lr": round_sig(0.5 * b.lr_max_standardized)})
        bound_name = ("the stability bound (2+2β1)/((1−β1)·λmax(P⁻¹H)), P = √v̂+ε Adam's preconditioner,"
                      if cfg["optimizer"] in ("adam", "adamw") else
                      "the stability bound (2+2μ)/λmax" if b.momentum else "the stability bound 2/λmax")
        if recovered:
            return [Finding("lr_too_high", "info",
                            f"the loss spiked ×{_growth(fin_h):.3g} above its running minimum before settling; "
                            f"lr={lr:g} is above {bound_name} = {b.lr_max:.3g}.", first, ev, {})]
        msg = f"lr={lr:g} exceeds {bound_name} = {b.lr_max:.3g}; the loss grew ×{_growth(fin):.3g}"
        if b.lr_max_standardized is not None and b.lr_max_standardized > 2 * b.lr_max:
            msg += f" (with standardize=True the bound becomes {b.lr_max_standardized:.3g})"
            ev["bound_standardized"] = b.lr_max_standardized
        return [Finding("lr_too_high", "error", msg + ".", first, ev, fixes[0], alternatives=fixes[1:])]
    if recovered:
        return []
    fixes = _lr_candidates([lr / 10, lr / 100, lr / 1000], lr)
    return [Finding("lr_too_high", "warning",
                    f"the loss rose ×{_growth(fin):.3g} above its running minimum (no stability bound could be "
                    f"computed for this run), which points to lr={lr:g} being too high.",
                    first, ev, fixes[0], alternatives=fixes[1:])]


def _adaptive_jitter(ctx):
    """Adam/RMSprop step every parameter by about lr, whatever the gradient's size: near the optimum
    that keeps the loss ≈ ½·lr²·tr(H) above it. A loss floor far above the reachable one that this
    jitter explains is an lr too high, though nothing diverges."""
    cfg = ctx.cfg
    if cfg["optimizer"] not in ADAPTIVE or ctx.r.diverged or not ctx.has_data:
        return []
    h = ctx.hist
    if h.size < 16:
        return []  # too few epochs to tell a floor from a descent
    # a floor: the best epoch of the last quarter is no better than the best of the quarter before
    # (minima, since the jitter makes single epochs jump)
    q2, q3 = int(0.5 * h.size), int(0.75 * h.size)
    if np.min(h[q3:]) < FLOOR_PROGRESS * np.min(h[q2:q3]):
        return []
    drop = ctx.trend()
    ref, ref_name = ctx.reference()
    final = ctx.final_loss()
    if ref is None or not final >= FAR * ref or final - ref <= 1e-12 * max(abs(ref), 1.0):
        return []
    lr = cfg["lr"]
    jitter, how = _jitter(ctx, lr)
    excess = final - ref
    # the estimate must explain the excess, and cannot exceed the loss it is part of
    if jitter is None or not JITTER_SHARE * excess <= jitter <= 10 * final:
        return []
    ev = {"used": "epoch losses, the data and " + how, "final_loss": final, "reference_loss": ref,
          "reference": ref_name, "hessian_trace": ctx.hessian_trace(), "jitter_loss": jitter, "drop_last_quarter": drop}
    target = lr * math.sqrt(0.05 * max(excess, ref, 1e-12) / jitter)
    fixes = _lr_candidates([min(target, lr / 3), lr / 10, lr / 100], lr)
    return [Finding("lr_too_high", "warning",
                    f"the loss settled at {final:.3g}, {final / max(ref, 1e-300):.3g}× the reachable {ref:.3g} "
                    f"({ref_name}): {cfg['optimizer']} keeps stepping every parameter by about lr={lr:g}, which holds "
                    f"the loss ≈ {jitter:.3g} above its optimum ({how}).", None, ev, fixes[0],
                    alternatives=fixes[1:])]


def _jitter(ctx, lr):
    """(the loss the late steps' own size keeps above the optimum, how it was estimated): from the
    trace's last quarter of updates u as ½·uᵀHu (or ½·‖u‖²·tr(H)/P from their norms); untraced,
    ½·lr²·tr(H) for minibatches, whose noise keeps Adam's steps near lr. Full-batch Adam's steps
    shrink near the optimum (v̂ remembers the large early gradients), so it gets no estimate."""
    tr = ctx.tr
    P = ctx.r.layout.size
    if tr is not None and len(tr) >= 8:
        late = slice(int(0.75 * len(tr)), len(tr))
        if tr.update is not None:
            U = np.asarray(tr.update[late], np.float64)
            X, y = ctx.sample()
            if ctx.cfg["model"] == "linear" and ctx.cfg["loss"] == "mse":
                Xt = np.column_stack([X, np.ones(X.shape[0])])
                HU = (2.0 / X.shape[0]) * ((U @ Xt.T) @ Xt)
            else:
                theta = np.asarray(ctx.r.theta, np.float64)
                rows = U[np.linspace(0, U.shape[0] - 1, min(U.shape[0], 8)).astype(int)]
                U, HU = rows, np.array([ctx.model.hvp(theta, u, X, y) for u in rows])
            return float(np.mean(0.5 * np.einsum("ij,ij->i", U, HU))), "½·uᵀHu of the last steps' updates u"
        u2 = float(np.mean(np.asarray(tr.update_norm[late], np.float64) ** 2))
        return 0.5 * u2 * ctx.hessian_trace() / P, "½·‖u‖²·tr(H)/P of the last steps' update norms"
    if ctx.cfg["effective_batch_size"] < ctx.cfg["n_samples"]:
        return 0.5 * lr * lr * ctx.hessian_trace(), "½·lr²·tr(H)"
    return None, None


def _growth(fin):
    f = fin[np.isfinite(fin)]
    return float(f.max() / max(f.min(), 1e-300)) if f.size else math.inf


def lr_too_low(ctx):
    if ctx.r.diverged or not ctx.has_data:
        return []
    ref, ref_name = ctx.reference()
    final = ctx.final_loss()
    if ref is None or not final >= FAR * ref or final - ref <= 1e-12 * max(abs(ref), 1.0):
        return []
    cfg = ctx.cfg
    lr, steps = cfg["lr"], max(ctx.r.n_steps, 1)
    drop = ctx.trend()
    if drop is not None and drop < -STALL_DROP:
        return []  # rising at the end: instability, not slowness
    ev = {"used": "the data, the final and initial parameters", "final_loss": final, "reference_loss": ref,
          "reference": ref_name, "steps": steps, "drop_last_quarter": drop}
    if cfg["optimizer"] in ADAPTIVE:
        theta0 = ctx.initial_theta()
        if theta0 is None:
            return []
        travel = float(np.max(np.abs(np.asarray(ctx.r.theta, np.float64) - theta0)))
        ev["travel_max"], ev["travel_limit"] = travel, lr * steps
        fit = ctx.linear_fit() if cfg["loss"] == "mse" else None
        need = None
        if fit is not None:
            dist = float(np.max(np.abs(fit[1] - np.asarray(ctx.r.theta, np.float64))))
            need = dist / lr
            ev["distance_to_optimum"], ev["steps_needed"] = dist, need
        # with the optimum known, the steps it still needs decide; otherwise whether the lr capped the travel
        limited = need > steps if need is not None else travel >= TRAVEL_SHARE * lr * steps
        if not limited:
            return []
        whole = float(np.max(np.abs(fit[1] - theta0))) if fit is not None else None
        # the lr that covers the distance in a tenth of the run, else larger lrs up to Adam's usual range
        ladder = sorted({10 * lr, 100 * lr, 1000 * lr, 1e-3, 1e-2} - {lr})
        fixes = _lr_candidates(([10 * whole / steps] if whole else []) + [v for v in ladder if v > lr], lr)
        fixes = [f for f in fixes if f["lr"] > lr][:5]
        why = (f"{cfg['optimizer']} moves each parameter by at most about lr={lr:g} per step, and in {steps} steps "
               f"the parameters moved up to {travel:.3g} of the {lr * steps:.3g} that allows")
        if need is not None:
            why += f"; the least-squares optimum is {ev['distance_to_optimum']:.3g} away, ~{need:.3g} steps at this lr"
    else:
        b = ctx.bound()
        if not _known(b) or lr > LOW_LR_SHARE * b.lr_max:
            return []
        ev["bound"] = b.lr_max
        need = _sgd_steps_needed(ctx, lr / (1 - cfg.get("momentum", 0.0)), ref)
        if need is not None:
            ev["steps_needed"] = need
            if need <= steps:
                return []
        elif drop is None or drop <= STALL_DROP:
            return []  # no model of the remaining steps, and not visibly falling
        fixes = _lr_candidates([0.5 * b.lr_max, 0.2 * b.lr_max], lr)
        why = f"lr={lr:g} is {b.lr_max / lr:.3g}× below the stability bound {b.lr_max:.3g}"
        if need is not None:
            why += f", and at this lr the remaining error needs ~{need:.3g} steps (the run took {steps})"
    if not fixes:
        return []
    return [Finding("lr_too_low", "warning",
                    f"the loss ended at {final:.3g}, {final / max(ref, 1e-300):.3g}× the reachable {ref:.3g} "
                    f"({ref_name}): {why}.", None, ev, fixes[0], alternatives=fixes[1:])]


def _sgd_steps_needed(ctx, lr, ref):
    """Gradient-descent steps the linear MSE model still needs to come within FAR× of its optimum:
    the excess in each Hessian eigendirection shrinks by (1 − lr·λ)² per step (None otherwise)."""
    fit = ctx.linear_fit()
    if fit is None or ctx.cfg["loss"] != "mse":
        return None
    X, _ = ctx.sample()
    Xt = np.column_stack([X, np.ones(X.shape[0])])
    lam, vec = np.linalg.eigh(2.0 / X.shape[0] * Xt.T @ Xt)
    e = vec.T @ (np.asarray(ctx.r.theta, np.float64) - fit[1])
    excess = 0.5 * lam * e * e
    target = (FAR - 1) * max(ref, 1e-300) / lam.size
    need = 0.0
    for li, xi in zip(lam, excess, strict=True):
        if xi <= target:
            continue
        rate = abs(1 - lr * li)
        if rate >= 1:
            return math.inf
        need = max(need, math.log(xi / target) / (-2 * math.log(rate)))
    return need


def unscaled_features(ctx):
    if not ctx.has_data:
        return []
    X, _ = ctx.sample()
    found = _unscaled(X, "the features as trained on")
    if found:
        # standardizing changes the curvature, so the lr tuned for the raw features may then be far off
        lr, std = ctx.cfg["lr"], {"standardize": "zscore"}
        b = ctx.bound()
        if ctx.cfg["optimizer"] in ADAPTIVE:
            lrs = [10 * lr, 100 * lr]
        else:
            lrs = [0.5 * b.lr_max_standardized] if _known(b) and b.lr_max_standardized else []
            lrs += [10 * lr, 100 * lr]
        found[0].alternatives = [{**std, **f} for f in _lr_candidates(lrs, lr)]
    return found


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
    found = _outliers(res, ctx.loss_fn(res), ctx.cfg["loss"], used,
                      np.abs(_dloss(res, ctx.cfg)) * np.sqrt(1 + (X * X).sum(axis=1)), zres, noise_floor(y),
                      lr=ctx.cfg["lr"])
    if not any(f.severity != "info" for f in found):
        found += leverage_outliers(X, y, "the features as trained on")
    return found


def leverage_outliers(X, y, used):
    """Rows whose features lie ≥ LEVERAGE_Z robust SDs from the rest and that move the least-squares
    fit: the other rows' MSE with them is ≥ INFLUENCE× the MSE of the fit without them. A residual
    test misses them, since the fit bends through them (bad leverage points)."""
    n = X.shape[0]
    if n < max(8, 3 * (X.shape[1] + 1)):
        return []
    med = np.median(X, axis=0)
    mad = 1.482602218505602 * np.median(np.abs(X - med), axis=0)
    mad = np.where(mad > 0, mad, np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0))
    zx = np.abs(X - med) / mad
    far = zx.max(axis=1) >= LEVERAGE_Z
    k = int(far.sum())
    if k == 0 or k > 0.05 * n:
        return []
    Xt = np.column_stack([X, np.ones(n)])
    keep = ~far
    fit_all = np.linalg.lstsq(Xt, y, rcond=None)[0]
    fit_clean = np.linalg.lstsq(Xt[keep], y[keep], rcond=None)[0]
    mse_all = float(np.mean((Xt[keep] @ fit_all - y[keep]) ** 2))
    mse_clean = float(np.mean((Xt[keep] @ fit_clean - y[keep]) ** 2))
    if not mse_all >= INFLUENCE * max(mse_clean, 1e-300):
        return []
    rows = np.flatnonzero(far)
    col = int(np.argmax(zx[rows].max(axis=0)))
    ev = {"used": used + "; least-squares fits with and without the rows", "rows": rows[:20].tolist(),
          "feature_robust_z": float(zx.max()), "column": col, "other_rows_mse_with": mse_all,
          "other_rows_mse_without": mse_clean}
    q = max(0.01, round_sig(2 * k / n))
    # clipped to the quantiles, the rows' features no longer lever the fit, but their targets may still be
    # far off (they belonged to other features): Huber then limits their pull
    r_clean = Xt[keep] @ fit_clean - y[keep]
    delta = round_sig(1.345 * max(1.482602218505602 * float(np.median(np.abs(r_clean - np.median(r_clean)))),
                                  noise_floor(y)))
    fixes = [{"winsorize": (q, 1 - q)}, {"winsorize": (q, 1 - q), "loss": "huber", "delta": delta},
             {"winsorize": (0.05, 0.95), "loss": "huber", "delta": delta}]
    return [Finding("outliers", "warning",
                    f"{k} row(s) have feature values up to {zx.max():.3g} robust SDs from the rest (column {col}): "
                    f"they pull the fit so that the other rows' MSE is {mse_all / max(mse_clean, 1e-300):.3g}× what "
                    "it is without them (a residual test misses them: the fit bends through them).", None, ev,
                    fixes[0], alternatives=fixes[1:])]


def noise_floor(y):
    """The smallest residual scale the outlier scores divide by: NOISE_FLOOR× the target's robust
    spread (IQR/1.349, or its std when the IQR is 0), so that noise-free data keeps finite scores."""
    q1, q3 = np.percentile(y, [25, 75])
    spread = (q3 - q1) / 1.349 or float(np.std(y))
    return NOISE_FLOOR * spread


def robust_residuals(X, y):
    """Residuals of a Huber linear fit (None with fewer than 3 rows per coefficient): an MSE line
    leans towards its outliers and hides them in its own residuals."""
    if X.shape[0] < max(8, 3 * (X.shape[1] + 1)):
        return None
    from sklearn.linear_model import HuberRegressor  # lazy on purpose: sklearn only when diagnosing
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


def _outliers(res, per_loss, loss, used, per_grad, zres=None, floor=0.0, lr=None):
    zres = res if zres is None else zres
    med = np.median(zres)
    raw_mad = 1.482602218505602 * np.median(np.abs(zres - med))
    mad = max(raw_mad, floor)
    if mad == 0:
        mad = np.mean(np.abs(zres - med)) * 1.2533 or 1.0
    z = np.abs(zres - med) / mad
    if not (np.all(np.isfinite(per_loss)) and np.all(np.isfinite(per_grad))):
        return []  # a diverged fit: its residuals say nothing about the data
    # the rows judged: the top 1% by loss, or every row beyond the z threshold when they are more (up to
    # 10% of the rows: a contamination of a few % is still outliers, not the noise's own shape)
    n_far = int(np.sum(z >= OUTLIER_Z))
    k = max(1, int(round(0.01 * res.size)), n_far if n_far <= 0.1 * res.size else 0)
    top = np.argsort(per_loss)[::-1][:k]
    loss_share = float(per_loss[top].sum() / per_loss.sum()) if per_loss.sum() > 0 else 0.0
    grad_share = float(per_grad[top].sum() / per_grad.sum()) if per_grad.sum() > 0 else 0.0
    if z.max() < OUTLIER_Z or loss_share < max(OUTLIER_SHARE, 3 * k / res.size):
        return []
    worst = np.argsort(z)[::-1][:5]
    out = z >= OUTLIER_Z  # the rows the message counts: every one beyond the z threshold
    n_out = int(out.sum())
    if per_loss.sum() > 0:
        loss_share, grad_share = (float(per_loss[out].sum() / per_loss.sum()),
                                  float(per_grad[out].sum() / per_grad.sum()) if per_grad.sum() > 0 else 0.0)
    ev = {"used": used, "rows": worst.tolist(), "n_outlying": n_out, "robust_z": z[worst].tolist(),
          "top_share_of_loss": loss_share,
          "top_share_of_gradient": grad_share, "top_rows": top.tolist(), "residual_scale_mad": float(raw_mad),
          "residual_scale_used": float(mad)}
    if loss == "mse":
        # Huber's δ = 1.345·σ keeps 95% efficiency on Gaussian noise (Huber 1964); a small δ bounds each
        # row's gradient by δ, so plain SGD may then need a larger lr
        huber = {"loss": "huber", "delta": round_sig(1.345 * mad)}
        alts = [{"loss": "mae"}]
        if lr is not None:
            alts = [{**huber, **f} for f in _lr_candidates([3 * lr, 10 * lr], lr)] + alts
        return [Finding("outliers", "warning",
                        f"{n_out} sample(s) ({n_out / res.size:.1%} of rows) have robust z ≥ {OUTLIER_Z:g} (up to "
                        f"{z.max():.3g}) and carry {loss_share:.0%} of the loss and {grad_share:.0%} of the gradient "
                        "under MSE.",
                        None, ev, huber, alternatives=alts)]
    return [Finding("outliers", "info",
                    f"{n_out} sample(s) have robust z ≥ {OUTLIER_Z:g} (up to {z.max():.3g}); the {loss} loss already "
                    "limits their pull "
                    f"({grad_share:.0%} of the gradient).", None, ev, {})]


def unshuffled_batches(ctx):
    cfg = ctx.cfg
    if cfg["shuffled"] or cfg["steps_per_epoch"] < 2:
        return []
    ev = {"used": []}
    rho = None
    if ctx.has_data:
        from scipy.stats import spearmanr  # lazy on purpose, like sklearn
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


def _mlp_fixes(ctx):
    """A flexible model for the same data: a tanh MLP with Adam on standardized features, then wider."""
    base = {"model": "mlp", "hidden": (32, 32), "activation": "tanh", "optimizer": "adam", "lr": 0.01}
    if ctx.cfg["standardize"] is None:
        base["standardize"] = "zscore"
    return [base, {**base, "hidden": (64, 64), "lr": 0.003}, {**base, "activation": "relu", "init": "keras"}]


def underfitting_and_plateau(ctx):
    """underfitting (linear model): its own optimum is far above what the data allow, reached or
    not; plateau: stalled far above what the data (or the model's own optimum) allow."""
    if ctx.r.diverged or not ctx.has_data:
        return []
    floor = ctx.data_floor()
    final = ctx.final_loss()
    opt = ctx.linear_optimum()
    drop = ctx.trend()
    ev = {"used": "the data (cross-validated kNN floor"
                  + (", the linear model's optimum" if opt is not None else "") + ")",
          "final_loss": final, "data_floor": floor, "linear_optimum": opt, "drop_last_quarter": drop}
    if ctx.cfg["model"] == "linear" and floor is not None:
        # physics, not a stall: the best this model can do on these rows against what the data allow
        best = opt if opt is not None else final
        if best >= FAR * floor and best - floor > 1e-3 * max(abs(floor), 1e-12):
            X, y = ctx.sample()
            res = ctx.predictions() - y
            ev["residual_structure_r2"] = _structure(X, res)
            what = "optimum" if opt is not None else "final loss"
            fixes = _mlp_fixes(ctx)
            return [Finding("underfitting", "warning",
                            f"the best a linear model can do here (its {what} {best:.3g}) is {best / floor:.3g}× what "
                            f"a flexible model reaches on the same data ({floor:.3g}); "
                            f"{ev['residual_structure_r2']:.0%} of the residuals' variance is predictable from X.",
                            None, ev, fixes[0],
                            alternatives=fixes[1:])]
    h = ctx.hist
    # far from what the model (linear: its optimum) or the data (kNN) allow at the end, falling slowly
    # or not at all: the catch-all when no other finding names the cause (diagnose drops it then)
    if drop is None or drop < -STALL_DROP or h[-1] > FAR * np.min(h):
        return []
    lr, cfg = ctx.cfg["lr"], ctx.cfg
    std = {"standardize": "zscore"} if cfg["standardize"] is None else {}
    adam = {} if cfg["optimizer"] in ("adam", "adamw") else {"optimizer": "adam"}
    general = [{**adam, "lr": 0.01, **std}, *_lr_candidates([3 * lr, 10 * lr], lr), {"epochs": 3 * cfg["epochs"]}]
    general = [f for f in general if any(cfg.get(k) != v for k, v in f.items())]  # no change is no fix
    how = ("stopped improving" if drop <= STALL_DROP else
           f"was still falling slowly ({drop:.1%} over the last quarter of the epochs)" if drop <= 0.1 else
           f"was still falling ({drop:.0%} over the last quarter of the epochs): the run ended before converging,")
    if not general:
        return []
    if opt is not None and final >= FAR * opt and final > opt + 1e-12:
        return [Finding("plateau", "warning",
                        f"the loss {how} at {final:.3g}, {final / opt:.3g}× the optimum {opt:.3g} this "
                        "model can reach.", None, ev, general[0], alternatives=general[1:])]
    if floor is None or final < FAR * floor or final - floor < 1e-3 * max(abs(floor), 1e-12):
        return []
    X, y = ctx.sample()
    ev["residual_structure_r2"] = _structure(X, ctx.predictions() - y)
    fixes = general
    if ctx.cfg["model"] == "mlp":
        wider = tuple(max(32, 2 * w) for w in ctx.cfg["hidden"])
        fixes = [general[0], {"hidden": wider, **general[0]}, *general[1:]]
    if not fixes:
        return []
    return [Finding("plateau", "warning",
                    f"the loss {how} at {final:.3g}, {final / floor:.3g}× what the data allow "
                    f"({floor:.3g}); {ev['residual_structure_r2']:.0%} of the residuals' variance is still predictable "
                    "from X.", None, ev, fixes[0], alternatives=fixes[1:])]


def _structure(X, res):
    """Cross-validated R² of a kNN regressor predicting the residuals from X: how much of what the
    model misses is still systematic."""
    from sklearn.model_selection import cross_val_score  # lazy on purpose: sklearn only when diagnosing
    from sklearn.neighbors import KNeighborsRegressor
    Xs = Scaler.fit(X, "zscore").transform(X, np.float64)
    k = max(1, min(10, int(0.8 * X.shape[0]) - 1))  # a CV fold trains on 80% of the rows
    return float(np.mean(cross_val_score(KNeighborsRegressor(k), Xs, res, cv=5, scoring="r2")))


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
    restored = (ctx.cfg.get("early_stopping") is not None and ctx.cfg.get("restore_best")
                and ctx.r.best_epoch is not None)
    sev = "info" if restored else "warning"
    msg = (f"the validation loss rose ×{rise:.3g} after epoch {e_best} (to {val[-1]:.3g}) while the training "
           f"loss kept falling ({h[e_best]:.3g} → {h[-1]:.3g})")
    msg += "; early stopping restored the best epoch's parameters." if restored else "."
    if restored:
        return [Finding("overfitting", sev, msg, ctx.step_of_epoch(e_best + 1), ev, {})]
    patience = max(3, min(10, val.size // 10))
    wd = 1e-2 if ctx.cfg["optimizer"] == "adamw" else 1e-3
    fixes = [{"early_stopping": patience}, {"early_stopping": patience, "weight_decay": 10 * wd},
             {"weight_decay": 10 * wd}] if ctx.cfg.get("early_stopping") is None else \
        [{"weight_decay": 10 * wd}, {"restore_best": True}]
    return [Finding("overfitting", sev, msg, ctx.step_of_epoch(e_best + 1), ev, fixes[0], alternatives=fixes[1:])]


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
    act, hidden = ctx.cfg["activation"], tuple(ctx.cfg["hidden"])
    # ReLU passes gradients through unscaled where sigmoid multiplies them by ≤ ¼ per layer; it needs an
    # init whose variance keeps the signal (Glorot), and Adam rescales what is left per parameter
    fixes = [{"activation": "relu", "init": "keras"}] if act in ("sigmoid", "tanh") else [{"init": "keras"}]
    fixes += [{**fixes[0], "optimizer": "adam", "lr": 0.001}, {"activation": "tanh", "init": "keras"},
              {"hidden": hidden[:2]}, {"hidden": hidden[:2], "optimizer": "adam", "lr": 0.01}]
    fixes = [f for f in fixes if any(ctx.r.inputs is None or ctx.r.inputs.kwargs.get(k) != v for k, v in f.items())]
    return [Finding("vanishing_gradients", "warning",
                    f"the first layer's gradient is {med:.2g}× the last layer's (layer norms "
                    + ", ".join(f"{v:.2g}" for v in ev["layer_grad_norms"])
                    + f"): the early {act} layers barely learn.",
                    step, ev, fixes[0], alternatives=fixes[1:])]


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
    fixes = []
    if sev == "warning":
        # a unit dead for every row gets no gradient and cannot come back: start where units are alive
        # (Glorot weights, zero biases), take smaller steps that do not push them under, or use an
        # activation with a gradient everywhere
        fixes = [{"init": "keras"}, {"init": "keras", **_lr_candidates([lr / 10], lr)[0]},
                 {"activation": "tanh", "init": "keras"}, _lr_candidates([lr / 10], lr)[0]]
        fixes = [f for f in fixes if any(ctx.r.inputs is None or ctx.r.inputs.kwargs.get(k) != v
                                         for k, v in f.items())]
    return [Finding("dead_relu", sev,
                    f"{frac[worst]:.0%} of the ReLU units of hidden layer {worst + 1} output 0 for every training row"
                    + (f" and have since step {step}" if step is not None else "") + ".",
                    step, ev, fixes[0] if fixes else {}, alternatives=fixes[1:])]


DETECTORS = (nonfinite, lr_too_high, lr_too_low, unscaled_features, outliers, unshuffled_batches,
             underfitting_and_plateau, overfitting, vanishing_gradients, dead_relu)


def detect(result):
    """Every detector's findings on ``result``, most severe first and not verified (what
    ``diagnose(result, verify=False)`` returns); the seconds they took go to ``result._diagnose_seconds``.
    Here rather than in minireg.diagnose so that verify.py, which diagnoses each re-run, can import it."""
    # import what the detectors use (here, not at the top: `import minireg` stays free of sklearn) before
    # timing them: the one-off imports (a few seconds on a first call) would otherwise make the projected
    # re-runs look long and switch verification off
    import scipy.optimize  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.neighbors  # noqa: F401
    tick = time.perf_counter()
    ctx = Context(result)
    findings = []
    with np.errstate(all="ignore"):
        for detector in DETECTORS:
            findings.extend(detector(ctx))
    if any(f.severity != "info" and f.code != "plateau" for f in findings):
        findings = [f for f in findings if f.code != "plateau"]  # the catch-all: another finding names the cause
    result._diagnose_seconds = time.perf_counter() - tick
    return sort_findings(findings)
