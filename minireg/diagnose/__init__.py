"""Diagnosis: name each failure mode of a run from its trace, history and data, with the
evidence, the step where it began, and the fix (see detectors.py for the rules and thresholds)."""
import numpy as np

from .. import _validate as V
from ..result import implements
from ..findings import CODES, Finding, _num, fix_call, sort_findings
from .curvature import StabilityBound, stability_bound
from .detectors import _outliers, _unscaled, detect, leverage_outliers, noise_floor, robust_residuals
from .lr_range import LRRangeResult, lr_range_test
from .verify import DEFAULT_BUDGET, Verifier, verify as _verify, verify_finding

__all__ = ["Finding", "CODES", "diagnose", "repair", "Repair", "check_data", "stability_bound", "StabilityBound",
           "lr_range_test",
           "LRRangeResult"]


@implements("diagnose")
def diagnose(result, verify="auto", budget=DEFAULT_BUDGET):
    """All findings of a run, most severe first.

    ``verify``: re-run the run's call with each warning's and error's fix applied and keep the fix
    that clears the finding and improves the outcome (see minireg/diagnose/verify.py); True always,
    False never, "auto" when the re-runs are projected to take at most ``budget`` seconds.
    """
    if verify not in (True, False, "auto"):
        raise ValueError(f"verify must be True, False or 'auto', got {verify!r}.")
    budget = V.real("budget", budget, low=0.0, allow_inf=True)
    return _verify(result, detect(result), verify, budget)


@implements("repair")
def repair(result, *, max_rounds=5):
    """Apply verified fixes round by round until no warning or error remains; returns a
    :class:`Repair`. ``result`` is a TrainResult of this session (one that keeps its inputs)."""
    max_rounds = V.integer("max_rounds", max_rounds, 1)
    if getattr(result, "inputs", None) is None:
        raise ValueError("repair() re-trains the run, and this run does not keep the arrays it was trained on "
                         "(a loaded run). Use minireg.repair(X, y, **train_arguments) instead.")
    current, fix, changes = result, {}, []
    findings = diagnose(current, verify=False)
    for _ in range(max_rounds):
        alarms = [f for f in findings if f.severity in ("warning", "error")]
        if not alarms:
            break
        verifier, step = Verifier(current), None
        for f in alarms:  # most severe first; the first whose fix is verified is applied
            verify_finding(f, verifier, {a.code for a in alarms})
            if f.verified["cleared"]:
                step = f
                break
        if step is None:
            break
        fix = {**fix, **step.fix}
        changes.append({"code": step.code, "fix": dict(step.fix), "measure": step.verified["measure"],
                        "before": step.verified["before"], "after": step.verified["after"]})
        current, findings = verifier.run(step.fix)
    return Repair(current, changes, fix, findings)


class Repair:
    """What :func:`repair` did: ``result`` (the repaired run), ``changes`` (one dict per round:
    ``code``, ``fix``, ``measure``, ``before``, ``after``), ``fix`` (all the changed arguments
    together) and ``findings`` (those left; no warning or error when the repair succeeded)."""

    def __init__(self, result, changes, fix, findings):
        self.result, self.changes, self.fix, self.findings = result, changes, fix, findings

    @property
    def repaired(self):
        return not any(f.severity in ("warning", "error") for f in self.findings)

    def __str__(self):
        lines = [f"repair: {len(self.changes)} change(s)"
                 + ("" if self.repaired else ", warnings remain: "
                    + ", ".join(f.code for f in self.findings if f.severity in ("warning", "error")))]
        for c in self.changes:
            lines.append(f"  {c['code']}: {fix_call(c['fix'])}: {c['measure']} {_num(c['before']['score'])} → "
                         f"{_num(c['after']['score'])}")
        if self.changes:
            lines.append(f"  all together: {fix_call(self.fix)}")
        return "\n".join(lines)

    __repr__ = __str__


def check_data(X, y):
    """Findings about the data alone, before training: feature scales/conditioning, outliers of a
    least-squares fit, and targets sorted in row order (which matters with shuffle=False)."""
    X = V.data_X(X, np.float64)
    y = V.data_y(y, X.shape[0], np.float64)
    with np.errstate(all="ignore"):
        return _check_data(X, y)


def _check_data(X, y):
    out = list(_unscaled(X, "the raw features"))
    Xt = np.column_stack([X, np.ones(X.shape[0])])
    coef = np.linalg.lstsq(Xt, y, rcond=None)[0]
    res = Xt @ coef - y
    robust = robust_residuals(X, y)
    out += _outliers(res, res * res, "mse", "residuals of a least-squares fit" + (
        " (robust z from a Huber fit)" if robust is not None else ""),
        np.abs(res) * np.sqrt((Xt * Xt).sum(axis=1)), robust, noise_floor(y))
    if not any(f.code == "outliers" for f in out):
        out += leverage_outliers(X, y, "the raw features")
    if y.size >= 10 and np.ptp(y) > 0:
        from scipy.stats import spearmanr  # lazy on purpose, like sklearn in the detectors
        rho = float(spearmanr(np.arange(y.size), y).statistic)
        if abs(rho) >= 0.5:
            out.append(Finding("unshuffled_batches", "info",
                               f"the targets follow the row order (Spearman ρ={rho:.2f}): train with shuffle=True "
                               "(the default) or minibatches will not be representative.",
                               None, {"used": "target order", "spearman_rho": rho}, {"shuffle": True}))
    return sort_findings(out)
