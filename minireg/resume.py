"""No work lost: continue a run bit for bit, stop on Ctrl-C with what was trained, checkpoints.

A run's whole state is small: the flat parameters, the optimizer state (3, P), the step counter,
where in which epoch it stands, the shuffling stream, the plateau schedule and the early-stopping
bookkeeping. ``Continuation`` holds exactly that; every TrainResult carries one
(``result.continuation``), a saved run stores it, and ``train(X, y, resume=previous, epochs=k)``
starts from it, so that 8 epochs and then 12 more give the 20-epoch run's numbers bit for bit.

Ctrl-C: while the compiled loop runs (in a worker thread, without the GIL), the main thread waits
for it; Python's SIGINT handler then sets a one-byte flag that the loop reads before every step, and
the run returns what it trained so far with ``interrupted=True``.

Checkpoints: ``train(..., checkpoint=path)`` writes the run so far with minireg.io.save (atomic:
a new file replaces the old one only once complete) every ``checkpoint_every`` epochs and at the
end; by default every epoch, but no more often than CHECKPOINT_SHARE of the training time allows.
"""
import os
import signal
import threading
import time

import numpy as np

from ._validate import OPTIMIZER_DEFAULTS, SCHEDULE_PARAMS
from .continuation import Continuation  # noqa: F401 (re-exported: train() imports it from here)
from .io import load
from .result import TrainResult

CHECKPOINT_SHARE = 0.04  # automatic interval: writing takes at most this share of the run's time
# arguments a resumed run keeps from the run it continues (changing them would make the saved
# parameters, state or data mean something else)
FIXED_ON_RESUME = ("model", "hidden", "activation", "optimizer", "dtype", "standardize", "standardize_y",
                   "winsorize", "winsorize_y", "seed", "init", "device", "flavor")


def previous_run(resume):
    """The TrainResult to continue: given, or loaded from a saved run's path."""
    if isinstance(resume, TrainResult):
        previous = resume
    elif isinstance(resume, (str, os.PathLike)):
        previous = load(resume)
    else:
        raise TypeError(f"resume must be a TrainResult or the path of a saved run, got {type(resume).__name__}.")
    if previous.continuation is None:
        raise ValueError("this run cannot be resumed: it was saved by a minireg version that did not record its "
                         "continuation state. Train it again with this version.")
    if previous.diverged:
        raise ValueError(f"the run diverged at step {previous.diverged_at}, so there is nothing to continue; "
                         "train it again (e.g. with a lower lr).")
    return previous


def resume_arguments(previous, call, given):
    """train()'s arguments for continuing ``previous``: its settings, overridden by those given."""
    cfg = previous.config
    if "epochs" not in given:
        raise ValueError("resume=... needs epochs=: how many more epochs to train (the partly done epoch of an "
                         "interrupted run counts as one).")
    changed = sorted(k for k in FIXED_ON_RESUME if k in given and not _same(call[k], cfg.get(k), k))
    if changed:
        raise ValueError(
            f"{', '.join(changed)} cannot change when resuming: the saved parameters and optimizer state belong "
            "to the run's model, optimizer, data scaling and shuffling stream. Start a new run instead (e.g. "
            "init=previous.params).")
    if cfg["step_lrs"] and "step_lrs" not in given:
        raise ValueError("the run being resumed used step_lrs; give step_lrs= again, one lr per new step.")
    out = {k: cfg[k] for k in ("model", "activation", "loss", "delta", "optimizer", "lr", "batch_size", "shuffle",
                               "seed", "dtype", "trace", "trace_every", "trace_budget", "standardize",
                               "standardize_y", "winsorize", "winsorize_y", "early_stopping", "min_delta",
                               "restore_best", "clip_grad_norm", "clip_grad_value", "l1", "schedule", "device",
                               "progress")}
    out["flavor"], out["l2"] = cfg.get("flavor", "torch"), cfg.get("l2", 0.0)  # (runs saved before flavors)
    out["hidden"] = tuple(cfg["hidden"]) if cfg["hidden"] else (10,)
    out["activation"] = cfg["activation"] or "relu"
    out["standardize"] = cfg["standardize"] or False
    out["winsorize"] = tuple(cfg["winsorize"]) if cfg["winsorize"] else None
    out.update({k: cfg[k] for k in OPTIMIZER_DEFAULTS[cfg["optimizer"]]})
    out.update({k: cfg[k] for k in SCHEDULE_PARAMS[cfg["schedule"]] if k in cfg})
    val = cfg["validation"]
    if val == "given":
        inputs = previous.inputs
        if "validation" not in given and inputs is None:
            raise ValueError("the run being resumed validated on arrays passed as validation=(X_val, y_val), which "
                             "a saved run does not keep; pass validation= again.")
        val = inputs.kwargs["validation"] if inputs is not None else None
    out["validation"] = val
    out.update({k: call[k] for k in given if k not in ("resume", "checkpoint", "checkpoint_every")})
    return out


def _same(a, b, key):
    if key in ("hidden", "activation") and b in ((), None):
        return True  # a linear model has neither; train() ignores them for it
    if key == "hidden":
        return tuple(a or ()) == tuple(b or ())
    if key == "standardize":
        return (a or None) == (b or None) or (a is True and b == "zscore")
    if key == "init":
        return True  # the parameters come from the run; init is not used
    if key == "winsorize":
        return (tuple(a) if a else None) == (tuple(b) if b else None)
    return a == b


# ---- Ctrl-C
class Interrupt:
    """While active (a context manager, main thread only), SIGINT sets ``flag[0]`` instead of raising;
    ``run(fn, *args)`` calls the compiled loop in a worker thread so that the handler can run."""

    def __init__(self):
        self.flag = np.zeros(1, np.uint8)
        self._old = None
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self.active:
            self._old = signal.getsignal(signal.SIGINT)
            if self._old is signal.default_int_handler:
                signal.signal(signal.SIGINT, self._handler)
            else:  # someone else owns SIGINT (e.g. a notebook kernel's own handler): leave it
                self.active = False
        return self

    def _handler(self, signum, frame):
        if self.flag[0]:  # a second Ctrl-C while stopping: the usual KeyboardInterrupt
            raise KeyboardInterrupt
        self.flag[0] = 1

    def __exit__(self, *exc):
        if self.active:
            signal.signal(signal.SIGINT, self._old)

    @property
    def requested(self):
        return bool(self.flag[0])

    def run(self, fn, *args):
        """fn(*args), in a worker thread when SIGINT is being caught (the main thread then waits in
        short sleeps, so that Python runs the handler), else directly."""
        if not self.active:
            return fn(*args)
        out = []
        err = []

        def target():
            try:
                out.append(fn(*args))
            except BaseException as exc:  # re-raised in the caller's thread
                err.append(exc)

        worker = threading.Thread(target=target, name="minireg-train", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
        if err:
            raise err[0]
        return out[0]


# ---- checkpoints
def output_path(name, path):
    """A path a file can be written to (its directory exists, it is not a directory), checked before
    anything is trained."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path, got {type(path).__name__}.")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{name}={path!r}: the directory {directory} does not exist.")
    if os.path.isdir(path):
        raise ValueError(f"{name}={path!r} is a directory; give a file name.")
    return path


class Checkpointer:
    """Writes the run so far to ``path`` every ``every`` epochs (None: every epoch, throttled to
    CHECKPOINT_SHARE of the time) and at the end."""

    def __init__(self, path, every):
        self.path, self.every = os.fspath(path), every
        self.written_epoch = None
        self.seconds = 0.0
        self.writes = 0
        self._last = time.perf_counter()
        self._last_seconds, self._last_size = 0.0, 1

    def due(self, epochs_done, size=1):
        """Whether to write now. ``size``: how much the run holds now (trace rows), since a write
        rewrites the whole file: the next write is predicted as the last one scaled by the growth."""
        if self.every is not None:
            return epochs_done % self.every == 0
        since = time.perf_counter() - self._last
        predicted = self._last_seconds * max(1.0, size / max(self._last_size, 1))
        return since * CHECKPOINT_SHARE >= predicted

    def write(self, result, epochs_done, size=1):
        tick = time.perf_counter()
        result.save(self.path)
        self._last = time.perf_counter()
        self._last_seconds, self._last_size = self._last - tick, max(size, 1)
        self.seconds += self._last_seconds
        self.writes += 1
        self.written_epoch = epochs_done
