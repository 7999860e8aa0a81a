"""Diagnosis: name each failure mode of a run from its trace, history and data, with the
evidence, the step where it began, and the fix (see detectors.py for the rules and thresholds)."""
import numpy as np

from .. import _validate as V
from .curvature import StabilityBound, condition_number, stability_bound, steps_to_shrink
from .detectors import DETECTORS, Context, _outliers, _unscaled, robust_residuals
from .findings import CODES, Finding, sort_findings
from .lr_range import LRRangeResult, lr_range_test

__all__ = ["Finding", "CODES", "diagnose", "check_data", "stability_bound", "StabilityBound", "lr_range_test",
           "LRRangeResult"]


def diagnose(result):
    """All findings of a run, most severe first."""
    ctx = Context(result)
    findings = []
    with np.errstate(all="ignore"):
        for detect in DETECTORS:
            findings.extend(detect(ctx))
    return sort_findings(findings)


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
        np.abs(res) * np.sqrt((Xt * Xt).sum(axis=1)), robust)
    if y.size >= 10 and np.ptp(y) > 0:
        from scipy.stats import spearmanr
        rho = float(spearmanr(np.arange(y.size), y).statistic)
        if abs(rho) >= 0.5:
            out.append(Finding("unshuffled_batches", "info",
                               f"the targets follow the row order (Spearman ρ={rho:.2f}): train with shuffle=True "
                               "(the default) or minibatches will not be representative.",
                               None, {"used": "target order", "spearman_rho": rho}, {"shuffle": True}))
    return sort_findings(out)
