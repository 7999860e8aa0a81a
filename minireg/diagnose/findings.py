"""Finding: one diagnosed failure mode, with its evidence and the argument change to try."""
from dataclasses import dataclass, field

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

    def __post_init__(self):
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}; expected one of {CODES}")
        if self.severity not in SEVERITY_ORDER:
            raise ValueError(f"unknown severity {self.severity!r}")

    def __str__(self):
        where = f" at step {self.step}" if self.step is not None else ""
        text = f"[{self.severity}] {self.code}{where}: {self.message}"
        if self.fix:
            text += "\n  fix: " + ", ".join(f"{k}={v!r}" for k, v in self.fix.items())
        return text

    def to_dict(self):
        """Plain JSON-ready data (numpy scalars and arrays become floats and lists)."""
        return _plain({"code": self.code, "severity": self.severity, "message": self.message, "step": self.step,
                       "evidence": self.evidence, "fix": self.fix})

    @classmethod
    def from_dict(cls, d):
        return cls(d["code"], d["severity"], d["message"], d["step"], d["evidence"], d["fix"])


def _plain(v):
    import numpy as np
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


def sort_findings(findings):
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.step is None, f.step or 0))


def round_sig(x, digits=2):
    """A learning rate or threshold rounded to ``digits`` significant figures, for fixes and messages."""
    if x == 0 or x != x or x in (float("inf"), float("-inf")):
        return x
    from math import floor, log10
    return round(x, -int(floor(log10(abs(x)))) + digits - 1)
