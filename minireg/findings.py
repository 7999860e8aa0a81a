"""Finding: one diagnosed failure mode, with its evidence and the argument change to try.

A module of its own, outside minireg.diagnose (whose verification re-runs train()): minireg.io
rebuilds the findings saved with a run, and io sits below train(), which loads a saved run to resume it.
"""
from dataclasses import dataclass, field
from math import floor, log10

import numpy as np

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
CODES = ("lr_too_high", "lr_too_low", "unscaled_features", "outliers", "unshuffled_batches", "underfitting",
         "overfitting", "vanishing_gradients", "dead_relu", "nonfinite", "plateau")


@dataclass
class Finding:
    code: str  # one of CODES
    severity: str  # "info" | "warning" | "error"
    message: str  # one plain sentence with the numbers
    step: int | None = None  # first step where the evidence appears
    evidence: dict = field(default_factory=dict)  # the numbers used, and what they came from
    fix: dict = field(default_factory=dict)  # train() arguments to change, e.g. {"lr": 0.4}
    # what verifying the fix found (diagnose(verify=...)): {"cleared", "fix", "measure", "before",
    # "after", "tried", "new_alarms"}; None when the fix was not re-run
    verified: dict | None = None
    # further fixes to try, in order, when ``fix`` does not clear the finding (not shown or saved)
    alternatives: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self):
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}; expected one of {CODES}")
        if self.severity not in SEVERITY_ORDER:
            raise ValueError(f"unknown severity {self.severity!r}")
        self.fix = {k: plain_number(v) for k, v in self.fix.items()}
        self.alternatives = [{k: plain_number(v) for k, v in a.items()} for a in self.alternatives]

    def __str__(self):
        where = f" at step {self.step}" if self.step is not None else ""
        text = f"[{self.severity}] {self.code}{where}: {self.message}"
        v = self.verified
        if self.fix:
            text += "\n  fix: " + fix_call(self.fix)
        elif v is not None and not v["cleared"] and self.severity != "info":
            text += "\n  fix: none found: " + ", ".join(fix_call(t["fix"]) + f" ({t['why']})" for t in v["tried"])
        if v is not None and v["cleared"]:
            text += "\n  verified: " + verification_text(v)
        elif v is None and self.fix and "not_verified" in self.evidence:
            text += "\n  not verified: " + self.evidence["not_verified"]
        return text

    def to_dict(self):
        """Plain JSON-ready data (numpy scalars and arrays become floats and lists)."""
        return _plain({"code": self.code, "severity": self.severity, "message": self.message, "step": self.step,
                       "evidence": self.evidence, "fix": self.fix, "verified": self.verified})

    @classmethod
    def from_dict(cls, d):
        return cls(d["code"], d["severity"], d["message"], d["step"], d["evidence"], d["fix"], d.get("verified"))


def plain_number(v):
    """A fix's value as the plain Python value to paste: numpy scalars as Python numbers (``lr=0.34``,
    not ``np.float64(0.34)``), floats to 2 significant digits, lists as tuples."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round_sig(v)
    if isinstance(v, list):
        return tuple(v)
    return v


def fix_call(fix):
    """A fix as the call to paste: ``train(..., lr=0.34, standardize='zscore')``."""
    return "train(..., " + ", ".join(f"{k}={_arg(v)}" for k, v in fix.items()) + ")"


def _arg(v):
    if isinstance(v, dict):
        return "{...}"
    return repr(v)


def _num(x):
    return "n/a" if x is None else f"{x:.3g}"


def verification_text(v):
    """One line: what re-running with the fix changed, on the measure it was judged by."""
    b, a = v["before"], v["after"]
    text = f"re-ran with it: {v['measure']} {_num(b['score'])} → {_num(a['score'])}"
    if b["diverged"] and not a["diverged"]:
        text += " (diverged → finite)"
    elif b.get("noise") and a["score"] >= b["noise"]:  # (held-out targets may be cleaner than the estimate)
        text += f" (noise level {_num(b['noise'])})"
    text += ", finding cleared"
    if v.get("left"):
        text += "; still to fix: " + ", ".join(v["left"])
    return text


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


# within a severity, causes before their symptoms: the data, then the model and optimizer settings,
# then what they lead to (a non-finite loss, a stall)
CAUSE_ORDER = {c: i for i, c in enumerate((
    "unscaled_features", "outliers", "unshuffled_batches", "lr_too_high", "vanishing_gradients", "dead_relu",
    "underfitting", "overfitting", "lr_too_low", "nonfinite", "plateau"))}


def sort_findings(findings):
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], CAUSE_ORDER[f.code], f.step or 0))


def round_sig(x, digits=2):
    """A learning rate or threshold rounded to ``digits`` significant figures, for fixes and messages."""
    if x == 0 or x != x or x in (float("inf"), float("-inf")):
        return x
    return float(round(float(x), -int(floor(log10(abs(x)))) + digits - 1))
