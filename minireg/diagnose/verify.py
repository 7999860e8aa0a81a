"""Closing the loop: every fix the diagnosis prints is re-run and judged before it is shown.

For a warning or error finding, the run's own call (same data, seed, epochs and every other
argument) is trained again with the fix applied, and diagnosed again. A fix is kept when

- the finding is cleared: the new run has no warning or error of the same code;
- the outcome improves on comparable terms: the run does not diverge and its score's excess over
  the noise level falls by at least IMPROVE (relative). The score is the mean squared error in the
  target's original units on the validation rows when the run has them, else on the training rows;
  the noise level is the lower of a least-squares line's and a cross-validated kNN's MSE on the
  same rows, so that the excess tracks the error against the noiseless target. For outliers the
  score is the median absolute residual on the training rows, with no noise level (a loss change
  such as Huber is not judged by its own loss, and a mean would reward fitting the outliers).

The finding's candidates are tried in order (``finding.fix``, then ``finding.alternatives``); the
first that clears it, improves the score and leaves no warning at all is kept at once; failing
that, the one that raises the fewest new warnings, then leaves the fewest, then scores best (its
remaining warnings are listed). When none clears it and improves the score, the finding says so
and its ``fix`` is empty; a finding that names a risk rather than an observed failure (RISK_CODES:
the data's scales, outliers, the batch order) then becomes info, since removing the risk did not
change the outcome: it is not what limits this run.
"""
import math
import time
import warnings

import numpy as np

from ..controls import Scaler
from ..findings import SEVERITY_ORDER, fix_call, sort_findings
from ..train import DivergenceWarning, split_rows, train
from .detectors import detect

IMPROVE = 0.2
DEFAULT_BUDGET = 30.0  # seconds of re-runs that verify="auto" allows per diagnosis
ALARM = ("warning", "error")
RISK_CODES = ("unscaled_features", "outliers", "unshuffled_batches")


def _alarms(findings):
    return {f.code for f in findings if f.severity in ALARM}


class Verifier:
    """Re-runs a result's call with changed arguments; each distinct change is trained once."""

    def __init__(self, result):
        self.result = result
        self.inputs = result.inputs
        self._runs = {}
        self._noise = {}
        self.seconds = 0.0

    @staticmethod
    def _key(fix):
        return tuple(sorted((k, repr(v)) for k, v in fix.items()))

    def run(self, fix):
        """(result, its unverified findings) of the call with ``fix`` applied."""
        key = self._key(fix)
        if key not in self._runs:
            # a re-run is the diagnosis' own: it never writes the user's checkpoint file
            kw = {**self.inputs.kwargs, **fix, "progress": False, "checkpoint": None, "checkpoint_every": None}
            tick = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DivergenceWarning)
                r = train(self.inputs.X, self.inputs.y, **kw)
                found = detect(r)
            self.seconds += time.perf_counter() - tick
            self._runs[key] = (r, found)
        return self._runs[key]

    def estimate(self):
        """Seconds one re-run is expected to take (the run's own time, plus its diagnosis)."""
        return self.result.seconds + getattr(self.result, "_diagnose_seconds", 0.0)

    def outcome(self, r, robust):
        """The numbers a fix is judged by (see the module docstring)."""
        kw = self.inputs.kwargs
        X = np.asarray(self.inputs.X, np.float64)
        y = np.asarray(self.inputs.y, np.float64).ravel()
        val = kw.get("validation")
        if isinstance(val, (tuple, list)):
            Xtr, ytr, Xv, yv = X, y, np.asarray(val[0], np.float64), np.asarray(val[1], np.float64).ravel()
        elif val is not None:
            Xtr, ytr, Xv, yv = split_rows(X, y, float(val), r.config["seed"])
        else:
            Xtr, ytr, Xv, yv = X, y, None, None
        hist = r.history
        out = {"final_loss": float(hist["loss"][-1]) if hist["loss"].size else math.nan,
               "val_loss": float(hist["val_loss"][-1]) if "val_loss" in hist and hist["val_loss"].size else None,
               "diverged": bool(r.diverged)}
        on_val = Xv is not None and not robust
        Xs, ys = (Xv, yv) if on_val else (Xtr, ytr)
        score = math.inf
        if not r.diverged and np.all(np.isfinite(r.theta)):
            with np.errstate(all="ignore"):
                try:
                    res = np.asarray(r.predict(Xs), np.float64) - ys
                except ValueError:  # predictions beyond float range
                    res = np.full(ys.shape, np.inf)
            if np.all(np.isfinite(res)):
                score = float(np.median(np.abs(res)) if robust else np.mean(res * res))
        out["score"] = score
        out["noise"] = 0.0 if robust else self.noise(Xtr, ytr, Xv if on_val else None, yv)
        measure = ("median |residual| on the training rows" if robust else
                   "validation MSE" if on_val else "training MSE")
        return out, measure

    def noise(self, Xtr, ytr, Xv, yv):
        """The MSE no fix is expected to beat on these rows (see the module docstring); cached."""
        key = Xv is not None
        if key not in self._noise:
            from sklearn.model_selection import cross_val_predict  # lazy on purpose: sklearn only when diagnosing
            from sklearn.neighbors import KNeighborsRegressor
            sc = Scaler.fit(Xtr, "zscore")
            A = sc.transform(Xtr, np.float64)
            At = np.column_stack([A, np.ones(A.shape[0])])
            coef = np.linalg.lstsq(At, ytr, rcond=None)[0]
            k = max(1, min(5, int(0.8 * A.shape[0]) - 1))
            if Xv is None:
                levels = [np.mean((At @ coef - ytr) ** 2)]
                if A.shape[0] >= 10:
                    levels.append(np.mean((cross_val_predict(KNeighborsRegressor(k), A, ytr, cv=5) - ytr) ** 2))
            else:
                B = sc.transform(Xv, np.float64)
                levels = [np.mean((np.column_stack([B, np.ones(B.shape[0])]) @ coef - yv) ** 2),
                          np.mean((KNeighborsRegressor(k).fit(A, ytr).predict(B) - yv) ** 2)]
            self._noise[key] = float(min(levels))
        return self._noise[key]


def _improved(before, after):
    if after["diverged"] or not np.isfinite(after["score"]):
        return False
    if not np.isfinite(before["score"]):
        return True
    excess_before = before["score"] - before["noise"]
    if excess_before <= 0:
        return after["score"] <= (1 - IMPROVE) * before["score"]
    return after["score"] - before["noise"] <= (1 - IMPROVE) * excess_before


def verify_finding(finding, verifier, original_alarms):
    """Try the finding's fixes in order and record what happened in ``finding.verified``; the
    finding's ``fix`` becomes the verified one (empty when none worked)."""
    robust = finding.code == "outliers"
    before, measure = verifier.outcome(verifier.result, robust)
    kwargs = verifier.inputs.kwargs
    candidates = []
    for c in [finding.fix, *finding.alternatives]:
        if c and isinstance(kwargs.get("init"), dict) and {"hidden", "model"} & c.keys() and "init" not in c:
            c = {**c, "init": "torch"}  # the given init arrays have the old shapes
        if c and c not in candidates:
            candidates.append(c)
    tried, chosen, fallback = [], None, None
    for fix in candidates:
        try:
            r, found = verifier.run(fix)
        except (ValueError, TypeError) as exc:  # a fix this run cannot take (e.g. a resumed run's optimizer)
            tried.append({"fix": dict(fix), "cleared": False, "improved": False, "after": None, "new_alarms": [],
                          "left": [], "why": f"not applicable: {exc}"})
            continue
        after = verifier.outcome(r, robust)[0]
        alarms = _alarms(found)
        cleared = finding.code not in alarms and not (finding.code == "nonfinite" and r.diverged)
        better = _improved(before, after)
        new = sorted(alarms - original_alarms)
        why = ("diverged" if after["diverged"] else
               "finding not cleared" if not cleared else
               f"{measure} not improved ({after['score']:.3g} vs {before['score']:.3g})" if not better else
               "raised " + ", ".join(new) if new else "worked")
        left = sorted(alarms)
        if why == "worked" and left:
            why = "worked; left: " + ", ".join(left)
        tried.append({"fix": dict(fix), "cleared": cleared, "improved": better, "after": after, "new_alarms": new,
                      "left": left, "why": why})
        if cleared and better:
            if not alarms:
                chosen = tried[-1]
                break
            rank = (len(new), len(left), after["score"])
            if fallback is None or rank < fallback[0]:
                fallback = (rank, tried[-1])
    chosen = chosen or (fallback[1] if fallback else None)
    finding.verified = {"cleared": chosen is not None, "fix": chosen["fix"] if chosen else {}, "measure": measure,
                        "before": before, "after": chosen["after"] if chosen else None,
                        "new_alarms": chosen["new_alarms"] if chosen else [],
                        "left": chosen["left"] if chosen else [], "tried": tried}
    finding.fix = dict(chosen["fix"]) if chosen else {}
    if chosen is None and finding.code in RISK_CODES and tried and not any(t["improved"] for t in tried):
        finding.severity = "info"
        finding.message += (" Re-running with " + " or ".join(fix_call(t["fix"]) for t in tried)
                            + f" did not improve the {measure}, so it is not what limits this run.")
    return finding


def verify(result, findings, verify="auto", budget=DEFAULT_BUDGET):
    """Verify the fixes of ``findings`` (warnings and errors) by re-running ``result``'s call."""
    targets = [f for f in findings if f.severity in ALARM and (f.fix or f.alternatives)]
    if verify is False or not targets:
        return findings
    if getattr(result, "inputs", None) is None:
        if verify is True:
            raise ValueError(
                "verifying a fix re-trains the run, and this run does not keep the arrays it was trained on "
                "(a loaded run). Train it again with minireg.train(X, y, ...) and diagnose that result, or call "
                "diagnose(verify=False).")
        for f in targets:
            f.evidence["not_verified"] = ("a run loaded from disk does not keep the arrays it was trained on, so "
                                          "its fixes cannot be re-run here")
        return findings
    verifier = Verifier(result)
    if verify == "auto":
        n = sum(1 + len(f.alternatives) for f in targets)
        projected = verifier.estimate() * n
        if projected > budget:
            for f in targets:
                f.verified = None
                f.evidence["not_verified"] = (f"re-running {n} candidate fix(es) would take ~{projected:.3g} s, "
                                              f"over the {budget:g} s budget: diagnose(verify=True) re-runs them")
            return findings
    original = _alarms(findings)
    for f in sorted(targets, key=lambda f: SEVERITY_ORDER[f.severity]):
        verify_finding(f, verifier, original)
    return sort_findings(findings)
