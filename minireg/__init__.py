"""minireg: transparent regression training — linear models and MLPs trained by Numba-compiled
loops whose every step can be recorded exactly.

    import minireg
    r = minireg.train(X, y, optimizer="sgd", lr=0.1, trace=True)
    r.history["loss"], r.trace.step(3)
"""
from . import datasets
from .diagnose import Finding, LRRangeResult, StabilityBound, check_data, lr_range_test, stability_bound
from .io import load
from .layout import Layout
from .result import TrainResult
from .sweep import SweepResult, sweep
from .trace import Trace
from .train import DivergenceWarning, train

__version__ = "0.1.0"
__all__ = ["train", "TrainResult", "Trace", "Layout", "DivergenceWarning", "load", "MiniRegressor", "Finding",
           "check_data", "stability_bound", "StabilityBound", "lr_range_test", "LRRangeResult", "datasets",
           "sweep", "SweepResult", "__version__"]


def __getattr__(name):
    # MiniRegressor lives in minireg.sklearn, the only module that imports scikit-learn; it is
    # imported on first use so that `import minireg` stays free of scikit-learn.
    if name == "MiniRegressor":
        from .sklearn import MiniRegressor
        return MiniRegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
