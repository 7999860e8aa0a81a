"""minireg: transparent regression training — linear models and MLPs trained by Numba-compiled
loops whose every step can be recorded exactly.

    import minireg
    r = minireg.train(X, y, optimizer="sgd", lr=0.1, trace=True)
    r.history["loss"], r.trace.step(3)
"""
from .layout import Layout
from .result import TrainResult
from .trace import Trace
from .train import DivergenceWarning, train

__version__ = "0.1.0"
__all__ = ["train", "TrainResult", "Trace", "Layout", "DivergenceWarning", "__version__"]
