"""minireg: transparent regression training — linear models and MLPs trained by Numba-compiled
loops whose every step can be recorded exactly.

    import minireg
    r = minireg.train(X, y, optimizer="sgd", lr=0.1, trace=True)
    r.history["loss"], r.trace.step(3)
"""
from . import datasets
from . import report  # noqa: F401 (imported for TrainResult.report and _repr_html_: see minireg.result)
from .diagnose import Finding, LRRangeResult, Repair, StabilityBound, check_data, lr_range_test, stability_bound
from .diagnose import repair as _repair
from .frameworks import replay
from .io import load
from .layout import Layout
from .plot import plot_compare
from .result import TrainResult
from .sweep import SweepResult, sweep
from .trace import Trace
from .train import DivergenceWarning, train
from ._version import __version__


def repair(X, y=None, *, max_rounds=5, **train_args):
    """Train ``train(X, y, **train_args)`` and apply verified fixes round by round until no warning or
    error remains; returns a :class:`Repair` (``.result``, ``.changes`` with before/after numbers,
    ``.fix``: every changed argument). ``minireg.repair(result)`` repairs a run already trained."""
    if isinstance(X, TrainResult):
        if y is not None or train_args:
            raise TypeError("minireg.repair(result) takes the trained run alone; to train first, call "
                            "minireg.repair(X, y, **train_arguments).")
        return _repair(X, max_rounds=max_rounds)
    if y is None:
        raise TypeError("minireg.repair needs X and y (and train's arguments), or a TrainResult.")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        result = train(X, y, **train_args)
    return _repair(result, max_rounds=max_rounds)
__all__ = ["train", "TrainResult", "Trace", "Layout", "DivergenceWarning", "load", "MiniRegressor", "Finding",
           "check_data", "stability_bound", "StabilityBound", "lr_range_test", "LRRangeResult", "datasets",
           "sweep", "SweepResult", "repair", "Repair", "plot_compare", "replay", "__version__"]


def __getattr__(name):
    # MiniRegressor lives in minireg.sklearn, the only module that imports scikit-learn; it is
    # imported on first use so that `import minireg` stays free of scikit-learn.
    if name == "MiniRegressor":
        from .sklearn import MiniRegressor
        return MiniRegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
