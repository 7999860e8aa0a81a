"""TrainResult: the outcome of one training run."""
import numpy as np

from . import _validate
from .kernels.activations import kernel_arg
from .kernels.constants import run_constants
from .kernels.models import predict_rows
from .plot import plot_path, plot_result

_PREDICT_ROWS = 4096

# TrainResult.save, .diagnose, .repair, .report and ._repr_html_ delegate to minireg.io,
# minireg.diagnose and minireg.report, which sit above this module: io builds a TrainResult when it
# loads a run, and the diagnosis (and the report, through it) re-runs train(), which builds one. So
# they import this module, not the other way round, and hand their functions over here with
# @implements when they are imported (``import minireg`` imports them all, before any run exists).
DELEGATED = ("save", "diagnose", "repair", "report", "_repr_html_")
_delegates = {}


def implements(method):
    """Decorator: the function that ``TrainResult.<method>`` delegates to (see DELEGATED)."""
    if method not in DELEGATED:
        raise ValueError(f"TrainResult.{method} is not delegated; expected one of {DELEGATED}")

    def register(fn):
        _delegates[method] = fn
        return fn
    return register


def _delegate(method):
    try:
        return _delegates[method]
    except KeyError:
        raise RuntimeError(f"TrainResult.{method} needs the module that implements it, which "
                           "`import minireg` imports; it has not been imported.") from None


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


class TrainResult:
    def __init__(self, *, layout, theta, config, history, trace, diverged, diverged_at, n_steps, seconds,
                 x_scaler, y_scaler, stopped_epoch=None, best_epoch=None, data=None,
                 inputs=None):
        self.layout = layout
        self.theta = theta
        self.params = {k: v.copy() for k, v in layout.unflatten(theta).items()}
        self.config = config
        self.history = history
        self.trace = trace
        self.diverged = diverged
        self.diverged_at = diverged_at
        self.n_steps = n_steps
        self.seconds = seconds
        self.x_scaler = x_scaler  # fitted on the training rows; predict applies it
        self.y_scaler = y_scaler  # predictions come back in the target's original units
        self.stopped_epoch = stopped_epoch  # early stopping: the epoch it stopped at, or None
        self.best_epoch = best_epoch  # early stopping: the best epoch (its params are restored)
        # (X, y, X_val, y_val) exactly as the kernel trained on them (scaled, in the run's dtype), for
        # the diagnosis and trace.explain; None for a run loaded from disk
        self.data = data
        # train()'s arrays and arguments as called (RunInputs), for re-running a fix; None when loaded
        self.inputs = inputs
        # compiling the kernels, or loading them from numba's disk cache, on a process's first run of a
        # kind: kept out of ``seconds``, which is the run's own time
        self.compile_seconds = 0.0
        # train()'s own work before the first step (checks, scaling, buffers), part of ``seconds``
        self.setup_seconds = 0.0
        # a loaded run: {"rows": k, "of": n} when ``data`` is the saved sample of k training rows
        self.saved_sample = None
        self.gram = None  # a loaded linear run: X̃ᵀX̃/n of all its training rows (the exact MSE curvature)
        self.interrupted = False  # stopped by Ctrl-C; train(X, y, resume=result, epochs=k) continues it
        # where the run stands, exactly enough to continue it (minireg.resume.Continuation)
        self.continuation = None

    def set_theta(self, theta):
        """Make ``theta`` (flat) the result's parameters (``params`` follows): a replayed run's kept epoch."""
        self.theta = np.array(theta, self.theta.dtype, copy=True)
        self.params = {k: v.copy() for k, v in self.layout.unflatten(self.theta).items()}

    @property
    def dtype(self):
        return self.theta.dtype

    def predict(self, X):
        """Predictions (n_samples,) of the final parameters, computed by the same forward kernel."""
        X = _validate.data_X(X, np.float64, action="predicting")
        d = self.layout.sizes[0]
        if X.shape[1] != d:
            raise ValueError(f"X has {X.shape[1]} features, but the model was trained on {d}.")
        with np.errstate(over="ignore", invalid="ignore"):
            X64 = self.x_scaler.transform(X, np.float64)
        if not np.isfinite(X64).all():
            raise ValueError(
                "X cannot be scaled with the scaler fitted in training: its values (largest |value| "
                f"{np.abs(X).max():.3g}) overflow float64. Rescale X first.")
        _validate.fits_float32("X" if self.x_scaler.identity else "X after the fitted scaling", X64,
                               np.dtype(self.dtype).name)
        X = np.ascontiguousarray(X64, dtype=self.dtype)
        rows = min(_PREDICT_ROWS, X.shape[0])
        sizes, woff, boff, aoff, nacts = self.layout.kernel_arrays(rows)
        acts = np.empty(nacts, self.dtype)
        c = run_constants(0.0, self.dtype)
        out = np.empty(X.shape[0], self.dtype)
        ident = np.arange(X.shape[0], dtype=np.int64)
        predict_rows(X, ident, self.theta, sizes, woff, boff, aoff, kernel_arg(self.config["activation"]), acts, c, out)
        if self.y_scaler.kind is not None:
            with np.errstate(over="ignore", invalid="ignore"):  # a diverged/huge model predicts inf/NaN
                out = self.y_scaler.inverse(out).astype(self.dtype)
        return out

    def outcome(self):
        """(kind, text): what happened, in words. kind is "bad" (diverged, exploding, rising), "warn"
        (interrupted, still improving) or "ok" (converged, stopped early)."""
        loss = np.asarray(self.history["loss"], np.float64)
        steps = f"{self.n_steps} steps"
        if self.diverged:
            return "bad", f"diverged at step {self.diverged_at}: the loss or the parameters became NaN/inf"
        if self.interrupted:
            return "warn", f"interrupted (Ctrl-C) after {steps}; train(X, y, resume=result, epochs=...) continues it"
        fin = loss[np.isfinite(loss)]
        if not fin.size:
            return "warn", "no epoch finished"
        low, last = float(fin.min()), float(fin[-1])
        if last >= 1e3 * max(low, 1e-300) or (fin.size > 1 and last >= 100 * max(float(fin[0]), 1e-300)):
            return "bad", f"exploding: the loss grew ×{last / max(low, 1e-300):.3g} over {steps} (to {last:.3g})"
        if self.stopped_epoch is not None:
            return "ok", (f"stopped early at epoch {self.stopped_epoch}"
                          + (f", the parameters of epoch {self.best_epoch} restored" if self.config.get("restore_best")
                             and self.best_epoch is not None else ""))
        if fin.size < 4:
            return "warn", f"{fin.size} epoch(s): too few to tell whether it converged"
        if last > 2 * low and last > 2 * float(np.min(fin[-max(1, fin.size // 4):])):
            return "bad", f"rising at the end: the loss is {last / low:.3g}× its minimum {low:.3g}"
        # the best epoch of the last quarter against the best before it: minibatch noise moves single epochs
        q3 = int(0.75 * fin.size)
        before, late = float(fin[:q3].min()), float(fin[q3:].min())
        change = (before - late) / before if before > 0 else 0.0
        if change > 0.01:
            kind, text = "warn", f"still improving: its best loss fell {change:.1%} in the last quarter of the epochs"
        else:
            kind, text = "ok", "converged: no better loss in the last quarter of the epochs" + (
                f" than {before:.3g}" if change <= 0 else f" (within {change:.2%})")
        alarms = [f.code for f in vars(self).get("findings") or () if f.severity in ("warning", "error")]
        if alarms:  # settled is not the same as fine: the diagnosis found what holds it back
            text = ("settled" if kind == "ok" else text.split(":")[0]) + ", but the diagnosis found: " \
                + ", ".join(alarms)
            kind = "warn"
        return kind, text

    def save(self, path, rows=2000):
        """Write the run to ``path`` (minireg.io); ``rows``: training rows kept as a sample for the
        loaded run's diagnosis and bound (0: none)."""
        return _delegate("save")(self, path, rows)

    def diagnose(self, verify="auto", budget=30.0):
        """The failure modes found in this run, most severe first (a list of :class:`Finding`).
        Also kept as ``self.findings``. Each warning's and error's fix is re-run and verified
        (``finding.verified``) when ``verify`` is True, or when "auto" and the re-runs fit in
        ``budget`` seconds; see minireg.diagnose.verify."""
        self.findings = _delegate("diagnose")(self, verify=verify, budget=budget)
        return self.findings

    def repair(self, max_rounds=5):
        """Apply verified fixes round by round until no warning or error remains; returns a
        :class:`minireg.diagnose.Repair` (the repaired run, the changes with before/after numbers)."""
        return _delegate("repair")(self, max_rounds=max_rounds)

    def report(self, path):
        """Write a self-contained HTML report of the run to ``path`` (config, findings with evidence
        and fixes, stability bound, loss and norm plots; see minireg.report); returns ``path``."""
        return _delegate("report")(self, path)

    def _repr_html_(self):
        """Compact HTML for Jupyter: config table, final loss, diverged, top findings, loss plot."""
        return _delegate("_repr_html_")(self)

    def plot(self, ax=None, fig=None):
        """The run's figure (matplotlib, imported lazily): the loss (a divergence shown on a log scale
        over its finite range, the non-finite step marked), and the panels the run has data for
        (norms, update/param ratio, per-layer gradient norms of an MLP, a changing lr). With ``ax``
        only the loss, on that axes, so runs can be overlaid; ``fig`` draws into that figure."""
        return plot_result(self, ax=ax, fig=fig)

    def plot_path(self, ax=None):
        """For a model with two parameters (linear, one feature): the path of (W1, b1) over the loss
        contours — oscillation and divergence become visible."""
        return plot_path(self, ax=ax)

    def __repr__(self):
        cfg = self.config
        model = cfg["model"] if cfg["model"] == "linear" else f"mlp{cfg['sizes']}/{cfg['activation']}"
        loss = self.history["loss"]
        last = f"{loss[-1]:.6g}" if loss.size else "n/a"
        kind, text = self.outcome()
        status = (f"DIVERGED at step {self.diverged_at}" if self.diverged else
                  "INTERRUPTED (resume=... continues it)" if self.interrupted else text.split(":")[0].split(",")[0])
        return (
            f"TrainResult({model}, loss={cfg['loss']}, optimizer={cfg['optimizer']}, lr={cfg['lr']:g}, "
            f"{_count(self.n_steps, 'step')} over {_count(loss.size, 'epoch')}, final loss {last}, {status}, "
            f"{self.seconds:.3g} s{', traced' if self.trace is not None else ''})"
        )
