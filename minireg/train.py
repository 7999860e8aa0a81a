"""train(): validate → split/scale → layout/init → allocate → run the compiled loop → TrainResult."""
import contextvars
import dataclasses
import functools
import itertools
import math
import os
import time
import types
import warnings
from typing import NamedTuple

import numpy as np

from . import _parallel, _prepare, _validate as V
from ._prefault import Prefault
from .controls import EarlyStopping, Plateau, Scaler, epoch_lrs, split_validation
from . import optim
from .kernels import activations, losses
from .kernels.constants import run_constants
from .kernels.loop import CD_CLIP_NORM, CD_CLIP_VALUE, CD_L1, CD_L2, N_CONTROLS, COL_GRAD_NORM, COL_PARAM_NORM,\
    COL_UPDATE_NORM, N_SCALAR_COLS, TRACE_FULL, TRACE_NORMS, TRACE_OFF, batch1_eligible, train_epochs
from .layout import Layout, init_params
from .result import TrainResult
from .resume import Checkpointer, Continuation, Interrupt, output_path, previous_run, resume_arguments
from .trace import Trace, row_bytes

# Shuffled runs hand the kernel the permutations of a chunk of epochs at once; this caps that
# array (int64 entries) so long runs on big data do not hold every epoch's permutation in memory.
_MAX_ORDER_ENTRIES = 1 << 22
# a compiled call projected to take longer than this runs in a worker thread, so that Ctrl-C can stop it
_THREAD_AFTER = 0.05
# the names of the arguments the caller of train() gave (not those left at their defaults)
_given = contextvars.ContextVar("minireg_train_given", default=frozenset())
# set by minireg.cuda.many: train() returns its prepared stages (Prepared) instead of running them
_collect = contextvars.ContextVar("minireg_train_collect", default=False)


class Prepared(NamedTuple):
    """A run checked, prepared and allocated by train() (stages 1-3), not yet trained: what
    ``trained()`` trains as train() would, and what minireg.cuda.many trains side by side with
    others. X64, y64: the data as resolve() returned it (before the validation split and scaling);
    setup: the seconds stages 1-3 took, where the caller measured them (minireg.cuda.many)."""
    s: object
    data: object
    buf: object
    previous: object
    resumed_changes: object
    started: object
    inputs: object
    X64: object
    y64: object
    setup: float = 0.0

    def trained(self):
        """Stage 4 and 5: the TrainResult."""
        return run(self.s, self.data, self.buf, self.previous, self.resumed_changes, self.started, self.inputs)


def checked_lr(lr, dtype):
    """resolve()'s checks of a given lr: a real > 0 that the run dtype holds (minireg.cuda.many
    re-checks the lr of a configuration that differs from a resolved one only there)."""
    lr = V.real("lr", lr, low=0.0, low_open=True)
    V.scalar_fits_float32("lr", lr, dtype, positive=True, zero_means=", so the run would not move")
    return lr


class EpochOrder:
    """The row order of any epoch of a run, drawn again from the same stream (for trace.explain)."""

    def __init__(self, seed_seq, n, shuffled):
        self.seed_seq, self.n, self.shuffled = seed_seq, n, shuffled

    def __call__(self, epoch):
        if not self.shuffled:
            return np.arange(self.n)
        rng = np.random.default_rng(self.seed_seq)
        for _ in range(epoch):
            rng.permutation(self.n)
        return rng.permutation(self.n)


class RunInputs:
    """The arrays and arguments a run was called with (the arrays as given, not copied): what the
    diagnosis re-runs, with one argument changed, to verify a fix."""

    def __init__(self, X, y, kwargs):
        self.X, self.y, self.kwargs = X, y, kwargs


def split_rows(X, y, fraction, seed):
    """(X_train, y_train, X_val, y_val) of validation=fraction: the split a run with ``seed`` makes."""
    split_seq = np.random.SeedSequence(seed).spawn(3)[2]
    tr_rows, val_rows = split_validation(X.shape[0], fraction, np.random.default_rng(split_seq))
    return X[tr_rows], y[tr_rows], X[val_rows], y[val_rows]


class DivergenceWarning(RuntimeWarning):
    """Training stopped because the loss or the parameters became NaN or infinite."""


class InterruptedWarning(RuntimeWarning):
    """Training stopped on Ctrl-C; the result holds the run so far (``result.interrupted``)."""


_compiled = set()  # the (run dtype, optimizer) pairs this process has train_epochs for


def _compile_for(dispatcher, args, key):
    """Compile the kernel for these arguments' types, or load it from numba's disk cache, unless this
    process has it already; the seconds that took (kept out of TrainResult.seconds). The argument
    types differ only with the run's dtype and optimizer (``key``), so that is what is remembered
    (typing every argument again would cost a small run more than its training)."""
    if key in _compiled:
        return 0.0
    from numba import typeof
    tick = time.perf_counter()
    dispatcher.compile(tuple(typeof(a) for a in args))
    _compiled.add(key)
    return time.perf_counter() - tick


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel():
    """The stacklevel that points a warning at the first caller outside minireg (the user's line),
    through the wrapper, a resumed run's inner call and the sweep."""
    import sys
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def _steps(n, bs, offset, epochs, steps_per_epoch):
    """Steps of ``epochs`` epochs whose first starts at row ``offset`` (a resumed, part-done epoch)."""
    return -(-(n - offset) // bs) + (epochs - 1) * steps_per_epoch


def _differs(a, b):
    """Whether a resumed run's argument differs from its previous run's setting (arrays, such as
    step_lrs or validation data, count as changed)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) or isinstance(a, (tuple, list)) and any(
            isinstance(v, np.ndarray) for v in a):
        return True
    return a != b


def _records_given(fn):
    """Tells ``fn`` which keyword arguments its caller gave, so that a resumed run keeps every
    setting of its previous run except those given again."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        token = _given.set(frozenset(kwargs))
        try:
            return fn(*args, **kwargs)
        finally:
            _given.reset(token)
    return wrapper


def _interactive():
    """A terminal on stderr, or a Jupyter kernel."""
    import sys
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _progress_bar(progress, epochs, seconds_per_epoch):
    """A per-epoch tqdm bar when asked for (progress=True), or, by default, for runs projected past
    about a second in a terminal or notebook; None otherwise."""
    if progress is None and not (epochs * seconds_per_epoch > 1.0 and epochs > 1 and _interactive()):
        return None
    from tqdm.auto import tqdm
    bar = tqdm(total=epochs, unit="epoch", desc="minireg", leave=False)
    return bar


@_records_given
def train(X, y, *, model="linear", hidden=(10,), activation="relu", loss="mse", delta=1.0,
          optimizer="sgd", lr=None, epochs=100, batch_size=None, shuffle=True, seed=0,
          dtype="float64", init="torch", trace=False, trace_every=1, trace_budget=2**30,
          standardize=False, standardize_y=False, winsorize=None, winsorize_y=False,
          validation=None, early_stopping=None, min_delta=0.0, restore_best=True,
          clip_grad_norm=None, clip_grad_value=None, l1=0.0,
          schedule=None, step_size=None, gamma=None, power_t=None, T_max=None, patience=None,
          factor=None, step_lrs=None, device="cpu", progress=None, resume=None, checkpoint=None,
          checkpoint_every=None, flavor="torch", l2=0.0, order=None, threads=None, **optimizer_hparams):
    """Train a linear model or an MLP with a Numba-compiled loop; return a :class:`TrainResult`.

    Every step runs in compiled code: forward, loss, backward, optimizer update and, with
    ``trace=True``, a full record of the step (``trace="norms"`` keeps only the scalar columns).
    A run whose loss or parameters become non-finite stops there and returns ``diverged=True``.
    See the README for the full argument list; optimizer hyperparameters use PyTorch's names and
    defaults (beta1/beta2 for Adam's betas).

    ``resume``: a TrainResult or a saved run's path to continue for ``epochs`` more epochs, from its
    parameters, optimizer state, step counter, schedule, early stopping and shuffling stream, with
    its settings except those given (a new ``lr``, say); see minireg/resume.py. ``checkpoint``: a
    path the run so far is written to (atomically) every ``checkpoint_every`` epochs and at the end.
    Ctrl-C stops the run and returns it so far, with ``interrupted=True``.
    """
    started = time.perf_counter()
    previous = optimizer_hparams.pop("_previous", None)  # set by the resume branch below
    given = _given.get()
    # the call as given, so that the diagnosis can re-run it with a fix applied (diagnose(verify=...))
    call = {k: v for k, v in locals().items()
            if k not in ("X", "y", "optimizer_hparams", "started", "previous", "given")}
    call.update(optimizer_hparams)
    if resume is not None:
        prev = previous_run(resume)
        d_prev = prev.layout.sizes[0]
        d_now = np.shape(X)[1] if np.ndim(X) == 2 else None
        if d_now is not None and d_now != d_prev:
            raise ValueError(f"X has {d_now} features, but the run being resumed was trained on {d_prev}: resume "
                             "it on the same columns.")
        merged = resume_arguments(prev, call, given)
        changed = {k: merged[k] for k in given if k not in ("resume", "epochs", "checkpoint", "checkpoint_every",
                                                              "progress") and _differs(merged[k], prev.config.get(k))}
        result = train(X, y, **merged, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                       _previous=(prev, changed))
        return result
    previous, resumed_changes = previous if previous is not None else (None, {})
    if previous is not None:
        call["resume"] = previous  # a re-run (diagnose's verification) continues the same run
    # the stages: every check first, then the data, the buffers, the compiled loop, the result
    s, X64, y64 = resolve(X, y, model=model, hidden=hidden, activation=activation, loss=loss, delta=delta,
                    optimizer=optimizer, lr=lr, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                    seed=seed, dtype=dtype, init=init, trace=trace, trace_every=trace_every,
                    trace_budget=trace_budget, standardize=standardize, standardize_y=standardize_y,
                    winsorize=winsorize, winsorize_y=winsorize_y, validation=validation,
                    early_stopping=early_stopping, min_delta=min_delta, restore_best=restore_best,
                    clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value, l1=l1,
                    schedule=schedule, step_size=step_size, gamma=gamma, power_t=power_t, T_max=T_max,
                    patience=patience, factor=factor, step_lrs=step_lrs, device=device, progress=progress,
                    checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                          flavor=flavor, l2=l2, order=order, threads=threads, given=given,
                          optimizer_hparams=optimizer_hparams)
    call["seed"] = s.seed  # a drawn seed is recorded, so a re-run sees the same init and batches
    data = prepare(s, X64, y64, previous)
    buf = allocate(s, data, previous, resumed_changes)
    prepared = Prepared(s, data, buf, previous, resumed_changes, started, RunInputs(X, y, call), X64, y64)
    return prepared if _collect.get() else prepared.trained()


@dataclasses.dataclass(frozen=True)
class Settings:
    """A run's validated, resolved arguments (what ``resolve`` returns; ``result.config`` reports them
    with what the data and the layout add)."""
    model: object
    hidden: object
    activation: object
    loss: object
    delta: object
    optimizer: object
    lr: object
    epochs: object
    batch_size: object
    shuffle: object
    seed: object
    dtype: object
    init: object
    trace: object
    trace_every: object
    trace_budget: object
    hparams: object
    scale_kind: object
    standardize_y: object
    winsorize: object
    winsorize_y: object
    validation: object
    early_stopping: object
    min_delta: object
    restore_best: object
    clip_grad_norm: object
    clip_grad_value: object
    l1: object
    schedule: object
    sched: object
    step_lrs: object
    device: object
    progress: object
    checkpoint: object
    checkpoint_every: object
    layout: object
    flavor: object
    l2: object
    order: object
    threads: object


def resolve(X, y, *, model, hidden, activation, loss, delta, optimizer, lr, epochs, batch_size, shuffle, seed, dtype,
            init, trace, trace_every, trace_budget, standardize, standardize_y, winsorize,
            winsorize_y, validation, early_stopping, min_delta, restore_best, clip_grad_norm,
            clip_grad_value, l1, schedule, step_size, gamma, power_t, T_max, patience, factor,
            step_lrs, device, progress, checkpoint, checkpoint_every, flavor, l2, order, threads, given,
            optimizer_hparams):
    """Stage 1: check every argument and the data before anything is compiled or allocated; one
    ValueError/TypeError naming the argument otherwise. Returns (Settings, X as float64, y as float64)."""
    device = V.choice("device", device, V.DEVICES)
    if device == "cuda":
        from . import cuda  # numba.cuda is imported only when asked for
        cuda.require_gpu()
    model = V.choice("model", model, V.MODELS)
    optimizer = V.choice("optimizer", optimizer, V.OPTIMIZERS)
    flavor = V.choice("flavor", flavor, V.FLAVORS)
    if flavor != "torch":  # the framework's names for arguments, and its defaults for those not given
        optimizer_hparams = dict(optimizer_hparams)
        for name in [k for k in optimizer_hparams if k in V.ALIASES[flavor]]:
            target, value = V.ALIASES[flavor][name], optimizer_hparams.pop(name)
            if target in ("lr", "l2"):
                lr, l2 = (value, l2) if target == "lr" else (lr, value)
                given = given | {target}
            else:
                optimizer_hparams[target] = value
        defaults = optim.flavor_defaults(optimizer, flavor)
        if defaults is None:
            offered = [o for o in V.OPTIMIZERS if optim.flavor_defaults(o, flavor) is not None]
            raise ValueError(f"flavor={flavor!r} has no optimizer={optimizer!r}; it offers {offered}.")
        lr = defaults["lr"] if lr is None else lr
        optimizer_hparams = {**{k: v for k, v in defaults.items() if k != "lr"}, **optimizer_hparams}
        if flavor == "sklearn":
            loss = "squared_error" if "loss" not in given else loss
            l2 = 1e-4 if "l2" not in given else l2  # MLPRegressor's and SGDRegressor's alpha
        if "init" not in given:
            init = "keras" if flavor == "keras" else "sklearn" if model == "mlp" else "zeros"
    lr = 0.01 if lr is None else lr
    loss = V.choice("loss", loss, V.LOSSES)
    dtype = V.run_dtype(dtype)
    if model == "mlp":
        hidden = V.hidden_sizes(hidden)
        activation = V.choice("activation", activation, V.ACTIVATIONS)
    else:
        hidden, activation = (), None
    delta = V.real("delta", delta, low=0.0, low_open=True)
    lr = V.real("lr", lr, low=0.0, low_open=True)
    epochs = V.integer("epochs", epochs, 1)
    if batch_size is not None:
        batch_size = V.integer("batch_size", batch_size, 1)
    shuffle = V.flag("shuffle", shuffle)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    seed = V.integer("seed", seed, 0)
    trace = V.trace_mode(trace)
    if progress is not None:
        progress = V.flag("progress", progress)
    if threads is not None:
        threads = V.integer("threads", threads, 1)
    if checkpoint is not None:
        checkpoint = output_path("checkpoint", checkpoint)
    if checkpoint_every is not None:
        if checkpoint is None:
            raise ValueError("checkpoint_every sets how often the checkpoint file is written; "
                             "pass checkpoint=path too.")
        checkpoint_every = V.integer("checkpoint_every", checkpoint_every, 1)
    trace_every = V.integer("trace_every", trace_every, 1)
    trace_budget = V.real("trace_budget", trace_budget, low=0.0, low_open=True, allow_inf=True)
    hparams = V.optimizer_hparams(optimizer, optimizer_hparams, flavor)
    scale_kind = V.standardize_kind(standardize)
    standardize_y = V.flag("standardize_y", standardize_y)
    winsorize = V.quantile_pair("winsorize", winsorize)
    winsorize_y = V.flag("winsorize_y", winsorize_y)
    if winsorize_y and winsorize is None:
        raise ValueError("winsorize_y=True clips the target to the winsorize quantiles; "
                         "pass winsorize=(low_q, high_q) too.")
    if early_stopping is not None:
        early_stopping = V.integer("early_stopping (the patience)", early_stopping, 0)
    min_delta = V.real("min_delta", min_delta, low=0.0)
    restore_best = V.flag("restore_best", restore_best)
    clip_grad_norm = V.optional_positive("clip_grad_norm", clip_grad_norm)
    clip_grad_value = V.optional_positive("clip_grad_value", clip_grad_value)
    l1 = V.real("l1", l1, low=0.0)
    l2 = V.real("l2 (scikit-learn's alpha)", l2, low=0.0)
    if order is not None:
        order = V.index_array("order", order)
    if l2 > 0 and device == "cuda":
        raise ValueError(f"l2={l2} (scikit-learn's alpha) runs on the CPU only; use device='cpu', or weight_decay.")
    if l1 > 0 and model != "linear":
        raise ValueError(f"l1={l1} is available for model='linear' only; use weight_decay for an MLP.")
    schedule, sched = V.schedule_spec(schedule, {"step_size": step_size, "gamma": gamma, "power_t": power_t,
                                                 "T_max": T_max, "patience": patience, "factor": factor}, epochs)
    if step_lrs is not None:
        if schedule is not None:
            raise ValueError("step_lrs gives every step's lr itself; it cannot be combined with schedule.")
        step_lrs = V.lr_array("step_lrs", step_lrs)
    # a float32 run casts these to float32: refuse values it would turn into inf (or, where 0 would
    # change the meaning, round to 0) instead of silently running with different ones
    for name, value, zero_means in (
            ("lr", lr, ", so the run would not move"), ("delta", delta, ", which makes the Huber loss 0"),
            ("clip_grad_norm", clip_grad_norm, ", which turns clipping off"),
            ("clip_grad_value", clip_grad_value, ", which turns clipping off"), ("l1", l1, None),
            *((k, v, None) for k, v in hparams.items() if isinstance(v, float))):
        V.scalar_fits_float32(name, value, dtype, positive=zero_means is not None, zero_means=zero_means or "")
    if step_lrs is not None and dtype == "float32":
        for i in (int(np.argmax(step_lrs)), int(np.argmin(step_lrs))):
            V.scalar_fits_float32(f"step_lrs[{i}]", float(step_lrs[i]), dtype, positive=True,
                                  zero_means=", so that step would not move")
    # X in float64 when it is scaled, else already in the run's dtype (X itself where it can be)
    X64 = _prepare.training_X(X, dtype, scale_kind, winsorize)
    y64 = V.data_y(y, X64.shape[0], np.float64)
    # y must fit float32 even when standardize_y scales it: predictions come back in its units
    V.fits_float32("y", y64, dtype, hint=" (predictions come back in y's units, as float32), or divide y "
                   "by a power of ten first")
    V.scalable("y", y64, (scale_kind or "zscore") if standardize_y else None,
               winsorize if winsorize_y else None, dtype, "standardize_y")
    validation = V.validation_spec(validation, X64.shape[1], dtype, x_scaled=scale_kind is not None or
                                   winsorize is not None, y_scaled=standardize_y)
    n_all, d = X64.shape
    # refuse runs whose buffers cannot fit in memory before building the layout (Python ints: a
    # hidden size of 2**40 would overflow numpy's int64 products) or allocating anything
    V.check_memory(V.run_memory(
        n=n_all, d=d, n_val=validation[0].shape[0] if isinstance(validation, tuple) else 0,
        sizes=(d, *hidden, 1), batch_size=batch_size, epochs=epochs, itemsize=np.dtype(dtype).itemsize,
        trace=trace, trace_every=trace_every, trace_budget=trace_budget,
        n_state=len(optim.state_rows(optimizer, hparams, flavor))))
    layout = Layout((d, *hidden, 1))
    init = V.init_spec(init, layout, model, dtype)
    return Settings(model=model, hidden=hidden, activation=activation, loss=loss, delta=delta, optimizer=optimizer,
        lr=lr, epochs=epochs, batch_size=batch_size, shuffle=shuffle, seed=seed, dtype=dtype, init=init,
        trace=trace, trace_every=trace_every, trace_budget=trace_budget, hparams=hparams, scale_kind=scale_kind,
        standardize_y=standardize_y, winsorize=winsorize, winsorize_y=winsorize_y, validation=validation,
        early_stopping=early_stopping, min_delta=min_delta, restore_best=restore_best,
        clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value, l1=l1, schedule=schedule, sched=sched,
        step_lrs=step_lrs, device=device, progress=progress, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every, layout=layout, flavor=flavor, l2=l2, order=order,
        threads=threads), X64, y64


class Data(NamedTuple):
    """The training data as the kernels see it (split, scaled, in the run dtype) and its batching."""
    Xa: object
    ya: object
    Xv: object
    yv: object
    x_scaler: object
    y_scaler: object
    n: object
    d: object
    bs: object
    steps_per_epoch: object
    total_steps: object
    n_rows: object
    state_rows: object
    P: object
    init_seq: object
    shuffle_seq: object


def prepare(s, X64, y64, previous):
    """Stage 2: split off the validation rows, fit the scalers on the training rows and apply them, and
    size the batches and the trace (a trace over ``trace_budget`` is refused here)."""
    init_seq, shuffle_seq, split_seq = np.random.SeedSequence(s.seed).spawn(3)
    if isinstance(s.validation, float):
        if X64.shape[0] < 2:
            raise ValueError("validation=fraction needs at least 2 samples (one to train on, one to validate).")
        Xtr, ytr, Xv64, yv64 = split_rows(X64, y64, s.validation, s.seed)
    elif s.validation is not None:
        Xtr, ytr, (Xv64, yv64) = X64, y64, s.validation
    else:
        Xtr, ytr, Xv64, yv64 = X64, y64, X64[:0], y64[:0]
    x_scaler = Scaler.fit(Xtr, s.scale_kind, s.winsorize)
    y_scaler = Scaler.fit(ytr, (s.scale_kind or "zscore") if s.standardize_y else None,
                          s.winsorize if s.winsorize_y else None)
    Xa, Xv = _prepare.to_run_dtype(x_scaler, Xtr, s.dtype), _prepare.to_run_dtype(x_scaler, Xv64, s.dtype)
    ya = _prepare.to_run_dtype(y_scaler, ytr, s.dtype)
    yv = ((yv64 - y_scaler.center) / y_scaler.scale).astype(s.dtype)  # validation targets: scaled, not clipped
    n, d = Xa.shape

    bs = n if s.batch_size is None else min(s.batch_size, n)
    steps_per_epoch = -(-n // bs)
    # a resumed run may start part-way into an epoch (rows before ``offset`` were trained on already)
    first_offset = previous.continuation.offset if previous is not None else 0
    if first_offset >= n:
        raise ValueError(f"the run being resumed stopped at row {first_offset} of an epoch, but X has {n} training "
                         "rows: resume it on the data it was trained on.")
    total_steps = _steps(n, bs, first_offset, s.epochs, steps_per_epoch)
    if s.order is not None:
        V.row_orders("order", s.order, s.epochs, n)
    if s.step_lrs is not None and s.step_lrs.size != total_steps:
        raise ValueError(
            f"step_lrs has {s.step_lrs.size} entries but the run takes {total_steps} steps "
            f"({s.epochs} epochs x {steps_per_epoch} steps); give one lr per step.")
    state_rows = optim.state_rows(s.optimizer, s.hparams, s.flavor)
    P = s.layout.size
    item = np.dtype(s.dtype).itemsize
    n_rows = (-(-total_steps // s.trace_every) + 1) if s.trace is not False else 0
    if s.trace is not False:
        per_row = row_bytes(s.trace, P, len(state_rows), item)
        need = n_rows * per_row
        if need > s.trace_budget:
            raise ValueError(
                f"the trace would need {V.format_bytes(need)} ({n_rows} rows x {per_row} bytes) but "
                f"trace_budget is {V.format_bytes(s.trace_budget)}. Record fewer steps (trace_every="
                f"{max(2, math.ceil(need / s.trace_budget) * s.trace_every)}), keep only the scalar columns "
                f"(trace='norms'), or raise trace_budget."
            )

    return Data(Xa=Xa, ya=ya, Xv=Xv, yv=yv, x_scaler=x_scaler, y_scaler=y_scaler, n=n, d=d, bs=bs,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, n_rows=n_rows, state_rows=state_rows, P=P,
        init_seq=init_seq, shuffle_seq=shuffle_seq)


def allocate(s, data, previous, resumed_changes):
    """Stage 3: the parameters (initialised, or a resumed run's), the optimizer state, the kernels'
    work buffers, the trace arrays, the histories and the epoch controls; returned as a namespace
    with the names used here."""
    cont = previous.continuation if previous is not None else None
    e_first = cont.epoch if cont else 0  # the first epoch this call trains (part-done when offset > 0)
    total = e_first + s.epochs
    if cont is not None:
        theta = np.array(cont.theta, s.dtype, copy=True)
    else:
        rng = np.random.RandomState(s.seed) if s.init == "sklearn" else np.random.default_rng(data.init_seq)
        theta = init_params(s.layout, s.init, rng, s.dtype, s.activation)
    sizes, woff, boff, aoff, nacts = s.layout.kernel_arrays(data.bs)
    model_arrays = (sizes, woff, boff, aoff, activations.kernel_arg(s.activation))
    opt = optim.hyper(s.optimizer, s.hparams, s.flavor)
    controls = np.zeros(N_CONTROLS, s.dtype)
    controls[CD_L1], controls[CD_L2] = s.l1, s.l2
    controls[CD_CLIP_NORM], controls[CD_CLIP_VALUE] = s.clip_grad_norm or 0.0, s.clip_grad_value or 0.0
    l1_end = s.layout.slices["W1"].stop if s.l1 > 0 else 0
    power = s.sched["power_t"] if s.schedule == "invscaling" else 0.0
    c = run_constants(s.delta, s.dtype)
    if cont is not None:
        state = np.array(cont.state[:optim.n_state(s.optimizer)], s.dtype, copy=True)
    else:
        state = np.zeros((optim.n_state(s.optimizer), data.P), s.dtype)
        optim.initial_state(s.optimizer, opt, state)
    work = (np.zeros(nacts, s.dtype), np.zeros(nacts, s.dtype), np.zeros(data.P, s.dtype), np.zeros(data.P, s.dtype),
            np.zeros(data.P, s.dtype), np.zeros(4, s.dtype), np.arange(max(data.n, data.Xv.shape[0]), dtype=np.int64),
            np.zeros(max(a * b for a, b in itertools.pairwise(s.layout.sizes)), s.dtype))
    mode = {False: TRACE_OFF, "norms": TRACE_NORMS, True: TRACE_FULL}[s.trace]
    full_rows = data.n_rows if s.trace is True else 0
    S = len(data.state_rows)
    # np.empty, not np.zeros: numpy backs large empty arrays with transparent huge pages, and first
    # touching calloc'ed small pages cost more than the training itself (W4: 280 µs per trace row).
    # Only the rows the kernel wrote are exposed.
    tr_index = np.empty((data.n_rows, 2), np.int64)
    tr_scalars = np.empty((data.n_rows, N_SCALAR_COLS), s.dtype)
    tr_params = np.empty((full_rows, data.P), s.dtype)
    tr_grad = np.empty((full_rows, data.P), s.dtype)
    tr_update = np.empty((full_rows, data.P), s.dtype)
    tr_state = np.empty((full_rows, S, data.P), s.dtype)
    srows = np.array([r for _, r in data.state_rows], np.int64)
    history = np.full(total, np.nan, s.dtype)
    val_history = np.full(total, np.nan, s.dtype)
    lr_history = np.full(total, np.nan)
    if cont is not None:
        history[:e_first] = cont.history[:e_first]
        lr_history[:e_first] = cont.lr_history[:e_first]
        if cont.val_history is not None and data.Xv.shape[0]:
            val_history[:e_first] = cont.val_history[:e_first]
    shuffled = (s.shuffle and data.bs < data.n) or s.order is not None
    per_epoch = s.early_stopping is not None or s.schedule == "plateau"
    chunk = 1 if per_epoch else max(1, min(s.epochs, _MAX_ORDER_ENTRIES // data.n)) if shuffled else s.epochs
    shuffle_rng = np.random.default_rng(data.shuffle_seq)
    if cont is not None:
        shuffle_rng.bit_generator.state = cont.rng_state
    trace_arrays = (mode, s.trace_every, tr_index, tr_scalars, tr_params, tr_grad, tr_update, tr_state, srows)
    val = (data.Xv, data.yv, val_history)
    lrs_all = epoch_lrs(s.schedule, s.lr, total, s.sched)
    plateau = Plateau(s.lr, s.sched["factor"], s.sched["patience"]) if s.schedule == "plateau" else None
    if plateau is not None and cont is not None and cont.plateau is not None:
        plateau.lr, plateau.best, plateau.bad_epochs = cont.plateau
        if "lr" in resumed_changes:
            plateau.lr = s.lr
    stopper = EarlyStopping(s.early_stopping, s.min_delta, s.restore_best) if s.early_stopping is not None else None
    if stopper is not None and cont is not None and cont.stopper is not None:
        stopper.best, stopper.best_epoch, stopper.wait = (cont.stopper[k] for k in ("best", "best_epoch", "wait"))
        if cont.stopper.get("best_theta") is not None:
            stopper.best_theta = np.array(cont.stopper["best_theta"], s.dtype, copy=True)
    monitored = val_history if data.Xv.shape[0] else history
    keeper = Checkpointer(s.checkpoint, s.checkpoint_every) if s.checkpoint is not None else None

    return types.SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("s", "data", "previous",
                                                                                   "resumed_changes")})


def epoch_order(s, data, buf, e):
    """The row order of epoch e of a shuffled run: the given ``order``'s, else the next permutation of
    the run's stream (so the epochs must be drawn in turn)."""
    if s.order is not None:  # the rows' order given for each epoch
        return s.order[e - buf.e_first]
    return buf.shuffle_rng.permutation(data.n)


def call_lrs(s, data, buf, e0, ne, offset, lrs_from):
    """(lrs, steps) of a call of the loop over epochs e0..e0+ne-1 whose first starts at row ``offset``:
    the ``lrs`` the loop takes (step_lrs' entries from ``lrs_from``, else one per epoch) and the number
    of its steps; records the epochs' lrs in ``buf.lr_history``."""
    # the steps of this call's first epoch, and of all its epochs
    first_steps = _steps(data.n, data.bs, offset, 1, data.steps_per_epoch)
    steps = _steps(data.n, data.bs, offset, ne, data.steps_per_epoch)
    if s.step_lrs is not None:
        lrs = s.step_lrs[lrs_from:lrs_from + steps]
        buf.lr_history[e0:e0 + ne] = np.concatenate([[lrs[0]], lrs[first_steps::data.steps_per_epoch]])[:ne]
    else:
        lrs = np.array([buf.plateau.lr]) if buf.plateau else buf.lrs_all[e0:e0 + ne]
        buf.lr_history[e0:e0 + ne] = lrs
    return lrs, steps


def config_of(s, data, buf, previous, resumed_changes, t_first, cuda_path=None, cuda_path_why=None):
    """result.config of a run: its resolved settings and what the data and the layout add."""
    return {
        "model": s.model, "sizes": s.layout.sizes, "hidden": s.hidden, "activation": s.activation,
        "loss": s.loss, "delta": s.delta, "optimizer": s.optimizer, "lr": s.lr, **s.hparams,
        "epochs": buf.total, "batch_size": s.batch_size, "effective_batch_size": data.bs,
        "steps_per_epoch": data.steps_per_epoch, "shuffle": s.shuffle, "shuffled": buf.shuffled, "seed": s.seed,
        "dtype": s.dtype, "init": "dict" if isinstance(s.init, dict) else s.init, "trace": s.trace,
        "trace_every": s.trace_every, "trace_budget": s.trace_budget, "n_samples": data.n, "n_features": data.d,
        "n_params": data.P, "standardize": s.scale_kind, "standardize_y": s.standardize_y, "winsorize": s.winsorize,
        "winsorize_y": s.winsorize_y, "x_scaler": data.x_scaler.describe(), "y_scaler": data.y_scaler.describe(),
        "validation": (None if s.validation is None else s.validation if isinstance(s.validation, float)
                       else "given"), "n_validation": int(data.Xv.shape[0]),
        "early_stopping": s.early_stopping, "min_delta": s.min_delta, "restore_best": s.restore_best,
        "clip_grad_norm": s.clip_grad_norm, "clip_grad_value": s.clip_grad_value, "l1": s.l1, "l2": s.l2,
        "flavor": s.flavor,
        "schedule": s.schedule, **s.sched, "step_lrs": s.step_lrs is not None, "device": s.device,
        "progress": s.progress, "threads": s.threads,
        "resumed": None if previous is None else {
            "from_epoch": buf.e_first, "from_step": t_first, "offset": buf.cont.offset, "changed": resumed_changes},
        "checkpoint": None if s.checkpoint is None else os.fspath(s.checkpoint),
        "checkpoint_every": s.checkpoint_every,
        # the CUDA path that ran (minireg/cuda/onelaunch.py: "one-launch" or "multi-launch") and why
        **({"cuda_path": cuda_path, "cuda_path_why": cuda_path_why} if s.device == "cuda" else {}),
    }


def run(s, data, buf, previous, resumed_changes, started, inputs):
    """Stage 4: the compiled loop, a chunk of epochs per call, with the per-epoch controls (plateau,
    early stopping, checkpoints, progress bar, Ctrl-C) between the calls; then stage 5, the result."""
    big, n_threads = (_parallel.plan(s.layout, data.n, data.Xv.shape[0], data.bs, s.threads, s.dtype)
                      if s.device == "cpu" else (None, 1))
    ctx = None
    if s.device == "cuda":
        from . import cuda  # numba.cuda is imported only when asked for
        ctx = cuda.Context()
        run_epochs = lambda *args: cuda.train_epochs_cuda(ctx, *args)  # noqa: E731
    else:
        one_row = True if batch1_eligible(s, data.bs, data.n, buf.power) else None
        run_epochs = _parallel.on_threads(train_epochs, n_threads, big, one_row)
    t = buf.cont.t if buf.cont is not None else 0
    t_first = t
    offset = buf.cont.offset if buf.cont is not None else 0
    perm = buf.cont.perm if buf.cont is not None else None
    row, diverged_at, interrupted, e0 = 0, -1, False, buf.e_first
    done = buf.e_first  # whole epochs trained
    bar = None
    # with a possible progress bar, time the first epoch alone to decide whether the run is long
    step_chunk = 1 if (s.progress is not False or buf.keeper is not None) else buf.chunk
    seconds_per_epoch = None
    lrs_from = 0  # step_lrs entries used so far
    status = np.zeros(2, np.int64)  # (epoch, row offset) where the kernel stopped
    stop = Interrupt()

    def snapshot():
        """The run so far, as a TrainResult (for a checkpoint and for the end)."""
        result = _result(s, data, buf, t, row, e0, offset, perm, rng_before, done, diverged_at, interrupted,
                         previous, config(), started, compile_seconds, inputs)
        result.setup_seconds = setup_seconds or 0.0
        return result

    def config():
        return config_of(s, data, buf, previous, resumed_changes, t_first,
                         *((ctx.path, ctx.path_why) if ctx is not None else ()))

    rng_before = buf.shuffle_rng.bit_generator.state
    compile_seconds, setup_seconds = 0.0, None
    with stop:
        while e0 < buf.total and not stop.requested:
            ne = min(step_chunk, buf.total - e0)
            if buf.keeper is not None and s.checkpoint_every is not None:  # end the call on a checkpoint epoch
                ne = min(ne, s.checkpoint_every - (e0 - buf.e_first) % s.checkpoint_every)
            tick = time.perf_counter()
            rng_before = buf.shuffle_rng.bit_generator.state  # to redraw the orders up to where a call stopped
            if buf.shuffled:
                order = np.empty((ne, data.n), np.int64)
                for k in range(ne):
                    order[k] = perm if k == 0 and perm is not None else epoch_order(s, data, buf, e0 + k)
            else:
                order = buf.work[6][:data.n].reshape(1, data.n)
            lrs, steps = call_lrs(s, data, buf, e0, ne, offset, lrs_from)
            # the rows this call can write get their pages faulted in on a helper thread meanwhile
            tables = (buf.tr_index, buf.tr_scalars, buf.tr_params, buf.tr_grad, buf.tr_update, buf.tr_state)
            prefault = Prefault(tables, row, row + -(-steps // s.trace_every) + 1) if s.trace is not False else None
            args = (data.Xa, data.ya, buf.theta, buf.state, buf.model_arrays, losses.CODES[s.loss], buf.opt,
                    (lrs, s.step_lrs is not None, buf.power, buf.l1_end, buf.controls), buf.c, buf.work, order,
                    buf.shuffled,
                    e0, ne, data.bs, t, row, buf.trace_arrays, buf.history, buf.val, offset, stop.flag, status)
            if s.device == "cpu" and seconds_per_epoch is None:
                compile_seconds += _compile_for(train_epochs, (*args, big, one_row),
                                                (s.dtype, type(buf.opt), big is not None, one_row is not None))
                tick = time.perf_counter()
            if setup_seconds is None:  # everything before the first step, compiling aside
                setup_seconds = time.perf_counter() - started - compile_seconds
            threaded = s.device == "cpu" and (seconds_per_epoch or data.n * data.P * 3e-9) * ne > _THREAD_AFTER
            try:
                t_before = t
                t, row, diverged_at = stop.run(run_epochs, *args) if threaded else run_epochs(*args)
            finally:
                if prefault is not None:
                    prefault.stop()
            lrs_from += t - t_before
            if diverged_at >= 0:
                done = int(status[0])
                break
            if diverged_at == -2:  # Ctrl-C: the loop stopped before a step of epoch status[0]
                interrupted = True
                e_stop, offset = int(status[0]), int(status[1])
                done = e_stop
                # continue in that epoch: keep its row order, and the stream as it was after drawing it
                given_first = perm is not None
                perm = order[e_stop - e0].copy() if buf.shuffled else None
                if buf.shuffled:
                    buf.shuffle_rng.bit_generator.state = rng_before
                    for _ in range(e_stop - e0 + 1 - (1 if given_first else 0)):
                        buf.shuffle_rng.permutation(data.n)
                e0 = e_stop
                break
            done = e0 + ne
            offset, perm = 0, None
            if seconds_per_epoch is None:
                seconds_per_epoch = (time.perf_counter() - tick) / ne
                if s.progress is not False:
                    bar = _progress_bar(s.progress, s.epochs, seconds_per_epoch)
                if bar is not None:  # the bar moves about ten times a second
                    step_chunk = max(1, min(buf.chunk, int(0.1 / max(seconds_per_epoch, 1e-9))))
                elif buf.keeper is not None:  # return often enough to write a checkpoint about every second
                    step_chunk = max(1, min(buf.chunk, int(1.0 / max(seconds_per_epoch, 1e-9))))
                else:
                    step_chunk = buf.chunk
                if buf.keeper is not None and s.checkpoint_every is not None:
                    step_chunk = min(step_chunk, s.checkpoint_every)
            if bar is not None:
                bar.update(ne)
                bar.set_postfix(loss=f"{buf.history[done - 1]:.4g}", refresh=False)
            e0 += ne
            if buf.plateau:
                buf.plateau.step(float(buf.monitored[done - 1]))
            if buf.stopper and buf.stopper.update(done - 1, float(buf.monitored[done - 1]), buf.theta):
                break
            if buf.keeper is not None and e0 < buf.total and buf.keeper.due(done - buf.e_first, row + 1):
                rng_before = buf.shuffle_rng.bit_generator.state
                buf.keeper.write(snapshot(), done, row + 1)
        if stop.requested and not interrupted and diverged_at < 0 and e0 < buf.total and not (
                buf.stopper and buf.stopper.stopped_epoch is not None):
            interrupted, offset, perm = True, 0, None  # Ctrl-C between two calls: at an epoch boundary
    if bar is not None:
        bar.close()
    rng_before = buf.shuffle_rng.bit_generator.state
    warn_end(diverged_at, done, interrupted, t, e0)
    result = snapshot()
    if buf.keeper is not None:
        buf.keeper.write(result, done)
    return result


def warn_end(diverged_at, done, interrupted, t, epoch):
    """The warning a run that diverged (at step diverged_at, with ``done`` epochs whole) or was
    interrupted (after t steps, in ``epoch``) ends with."""
    if diverged_at >= 0:
        warnings.warn(
            f"training diverged at step {diverged_at} (epoch {done}): the loss or the parameters became "
            "NaN/inf; the run stopped there. See result.diverged_at and result.trace.",
            DivergenceWarning, stacklevel=_user_stacklevel())
    if interrupted:
        warnings.warn(
            f"training interrupted (Ctrl-C) after {t} steps, in epoch {epoch}: the result holds the run so far "
            "(interrupted=True); train(X, y, resume=result, epochs=...) continues it exactly.",
            InterruptedWarning, stacklevel=_user_stacklevel())


def _result(s, data, buf, t, row, e0, offset, perm, rng_state, done, diverged_at, interrupted, previous, config,
            started, compile_seconds, inputs):
    """The TrainResult of the run so far: the parameters (the best epoch's with restore_best), the
    history and trace of the whole run (a resumed run's include its previous run's), and the
    continuation that train(resume=...) starts from."""
    layout, trace, trace_every, device = s.layout, s.trace, s.trace_every, s.device
    theta, state, stopper, plateau, shuffled = buf.theta, buf.state, buf.stopper, buf.plateau, buf.shuffled
    history, lr_history, val_history = buf.history, buf.lr_history, buf.val_history
    tr_index, tr_scalars, tr_params, tr_grad, tr_update, tr_state = (buf.tr_index, buf.tr_scalars, buf.tr_params,
                                                                    buf.tr_grad, buf.tr_update, buf.tr_state)
    Xa, ya, Xv, yv, n, state_rows = data.Xa, data.ya, data.Xv, data.yv, data.n, data.state_rows
    shuffle_seq, x_scaler, y_scaler = data.shuffle_seq, data.x_scaler, data.y_scaler
    cont = Continuation(
        theta.copy(), state.copy(), t, e0 if interrupted else done, offset if interrupted else 0,
        perm if interrupted else None, rng_state,
        None if plateau is None else (plateau.lr, plateau.best, plateau.bad_epochs),
        None if stopper is None else {"best": stopper.best, "best_epoch": stopper.best_epoch, "wait": stopper.wait,
                                      "best_theta": None if stopper.best_theta is None else stopper.best_theta.copy()},
        history[:done].copy(), lr_history[:done].copy(), val_history[:done].copy() if Xv.shape[0] else None)
    final = theta.copy()
    if stopper and stopper.restore_best and stopper.best_theta is not None and diverged_at < 0:
        final[:] = stopper.best_theta
    tr = None
    if trace is True and device == "cuda":  # the GPU loop leaves a full trace's norms to its rows
        for col, rows in ((COL_GRAD_NORM, tr_grad), (COL_UPDATE_NORM, tr_update), (COL_PARAM_NORM, tr_params)):
            tr_scalars[:row, col] = np.sqrt(np.einsum("ij,ij->i", rows[:row], rows[:row]))
    if trace is not False:
        names = [name for name, _ in state_rows]
        parts = (tr_index[:row], tr_scalars[:row],
                 tr_params[:row] if trace is True else None, tr_grad[:row] if trace is True else None,
                 tr_update[:row] if trace is True else None,
                 {name: tr_state[:row, s] for s, name in enumerate(names)} if trace is True else {})
        old = previous.trace if previous is not None else None
        if old is not None and old.mode == ("full" if trace is True else "norms") and old.every == trace_every\
                and (trace is not True or list(old.state) == names):
            parts = _joined(old, parts)
        tr = Trace(layout, trace, trace_every, *parts)
        tr.context = {"data": (Xa, ya), "config": config, "epoch_order": EpochOrder(shuffle_seq, n, shuffled)}
    hist = {"loss": history[:done], "lr": lr_history[:done]}
    if Xv.shape[0]:
        hist["val_loss"] = val_history[:done]
    result = TrainResult(layout=layout, theta=final, config=config, history=hist, trace=tr,
                         diverged=diverged_at >= 0, diverged_at=None if diverged_at < 0 else int(diverged_at),
                         n_steps=int(t), seconds=time.perf_counter() - started - compile_seconds,
                         x_scaler=x_scaler, y_scaler=y_scaler,
                         stopped_epoch=stopper.stopped_epoch if stopper else None,
                         best_epoch=stopper.best_epoch if stopper else None,
                         data=(Xa, ya, Xv, yv), inputs=inputs)
    result.interrupted = interrupted
    result.continuation = cont
    result.compile_seconds = compile_seconds
    return result


def _joined(old, parts):
    """The previous run's trace rows followed by this call's (index, scalars, params, grad, update, state)."""
    index, scalars, params, grad, update, state = parts
    old_index = np.column_stack([np.asarray(old.step), old.epoch]).astype(np.int64)
    old_scalars = np.column_stack([old.loss, old.lr, old.grad_norm, old.update_norm, old.param_norm,
                                   old.clipped.astype(scalars.dtype)]).astype(scalars.dtype)

    def cat(a, b):
        return None if a is None else np.concatenate([np.asarray(a, b.dtype), b])
    return (np.concatenate([old_index, index]), np.concatenate([old_scalars, scalars]), cat(old.params, params),
            cat(old.grad, grad), cat(old.update, update), {k: cat(old.state[k], v) for k, v in state.items()})
