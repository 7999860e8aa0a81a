"""Many runs on the GPU at once: ``train_many(X, y, runs)``, the route of ``minireg.sweep(device="cuda")``.

Each run is checked, prepared and allocated by train() itself (stages 1-3, the very code of a single
call), then the runs that can share a launch are trained side by side by onelaunch.py, one block
per run, and each gets the TrainResult that ``train(X, y, **kw)`` returns (the same numbers, result
fields, trace, continuation and warnings).

Runs share a launch when they take the one-launch path (onelaunch.plan) and agree on everything
but what each block keeps for itself: the data as trained on (after the validation split and the
scaling), the layer sizes and activation, the loss and delta, the dtype, the optimizer and its
hyperparameters, L1 and clipping, the batch size, the epochs, shuffling or not, and the trace
settings. They may differ in their initial parameters and row orders (seed, init) and their
learning rates (lr, schedule, step_lrs). A run that cannot share a launch (resumed, early stopping,
a plateau schedule, a checkpoint, too large for the one-launch path, or device="cpu") runs alone,
through train()'s own loop.

Ctrl-C: the host sees it between launches; the groups and runs finished before are returned, the
rest are not run (the sweep reports ``interrupted``).
"""
import dataclasses
import hashlib
import time

import numpy as np

from .. import _validate as V
from ..kernels import losses
from ..kernels.loop import TRACE_OFF
from ..resume import Interrupt
from ..train import (Prepared, RunInputs, _collect, _result, allocate, call_lrs, checked_lr, config_of, epoch_order,
                     prepare, train, warn_end)
from . import onelaunch
from .activations import code_of


def prepare_many(X, y, runs, label="configuration"):
    """train(X, y, **kw, progress=False)'s stages 1-3 for every kw of ``runs`` (no progress bars: a
    run's calls then cover ``buf.chunk`` epochs each): a list of train.Prepared. Raises what train()
    raises for a bad argument, naming the configuration (``label`` and its arguments).

    A configuration that differs from an earlier one only in a given number ``lr`` and an integer
    ``seed`` (the common sweep) takes that one's resolved settings with its own lr and seed (checked
    as resolve() checks them), then train()'s own prepare() and allocate(): resolve() checks the
    data and every argument again, the larger part of preparing a small run."""
    token = _collect.set(True)
    out, resolved = [], {}
    try:
        for kw in runs:
            kw = {**kw, "progress": False}
            try:
                key = _same_but_lr_and_seed(kw)
                ref = resolved.get(key) if key is not None else None
                if ref is not None:
                    p = _like(ref, kw, X, y)
                else:
                    p = train(X, y, **kw)
                    if key is not None and p.previous is None:
                        resolved[key] = p
                out.append(p._replace(setup=time.perf_counter() - p.started))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{label} {kw!r}: {exc}") from exc
        return out
    finally:
        _collect.reset(token)


_SIMPLE = (type(None), bool, int, float, str, np.integer, np.floating, np.bool_)


def _same_but_lr_and_seed(kw):
    """A key shared by the configurations equal to kw but for their lr and seed values, or None
    when kw has a value that cannot be compared so (an array, a dict) or lr/seed of another kind."""
    if not isinstance(kw.get("lr", 0.0), (int, float, np.integer, np.floating)) or isinstance(kw.get("lr"), bool):
        return None
    if not isinstance(kw.get("seed", 0), (int, np.integer)) or isinstance(kw.get("seed"), bool):
        return None
    items = []
    for k, v in kw.items():
        if k in ("lr", "seed"):
            continue
        if isinstance(v, tuple) and all(isinstance(u, _SIMPLE) for u in v):
            v = ("tuple", *v)
        elif not isinstance(v, _SIMPLE):
            return None
        items.append((k, type(v).__name__, v))
    return frozenset(kw), tuple(sorted(items, key=lambda kv: kv[0]))


def _like(ref, kw, X, y):
    """The Prepared of kw, which equals ref's configuration but for lr and seed."""
    started = time.perf_counter()
    s = ref.s
    lr = checked_lr(kw["lr"], s.dtype) if "lr" in kw else s.lr
    seed = V.integer("seed", kw["seed"], 0) if "seed" in kw else s.seed
    s = dataclasses.replace(s, lr=lr, seed=seed)
    data = prepare(s, ref.X64, ref.y64, None)
    buf = allocate(s, data, None, {})
    call = {**ref.inputs.kwargs, "lr": kw.get("lr", ref.inputs.kwargs["lr"]), "seed": seed}
    return Prepared(s, data, buf, None, {}, started, RunInputs(X, y, call), ref.X64, ref.y64)


def _digest(*arrays):
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def group_key(p):
    """What runs must share to train in one launch, or None when p must run alone."""
    s, data, buf = p.s, p.data, p.buf
    if s.device != "cuda" or p.previous is not None or buf.stopper is not None or buf.plateau is not None \
            or buf.keeper is not None:
        return None
    path, _ = onelaunch.plan(s.layout.sizes, data.bs, np.dtype(s.dtype).itemsize)
    if path != onelaunch.PATH_ONE:
        return None
    srows = tuple(int(v) for v in buf.trace_arrays[8])
    return (s.dtype, tuple(s.layout.sizes), code_of(buf.model_arrays[4]), s.loss, buf.c.tobytes(),
            type(buf.opt).__name__, tuple(buf.opt), buf.controls.tobytes(), int(buf.l1_end), data.bs, data.n,
            bool(buf.shuffled), buf.total, buf.mode, s.trace_every, srows, buf.state.shape,
            _digest(data.Xa, data.ya, data.Xv, data.yv))


class _Orders:
    """The row orders of a group's shuffled runs, drawn epoch by epoch from each run's stream (as
    train() draws them), the last epoch kept: a launch may end inside an epoch and the next one
    start there. Each stream's state is kept where train() starts a call (every ``chunk`` epochs),
    so that a run that stops early leaves its stream where train() would (``settle``)."""

    def __init__(self, group):
        self.group = group
        self.next = 0  # the first epoch not drawn yet
        self.last = None  # (R, n) orders of epoch next - 1
        self.starts = [{} for _ in group]  # run -> {chunk start epoch: stream state before it}

    def __call__(self, e_from, e_to):
        n = self.group[0].data.n
        out = np.empty((len(self.group), e_to - e_from, n), np.int64)
        for e in range(e_from, e_to):
            if e == self.next - 1:
                out[:, e - e_from] = self.last
                continue
            assert e == self.next, "epochs are drawn in turn"
            for r, p in enumerate(self.group):
                if e % p.buf.chunk == 0:
                    self.starts[r][e] = p.buf.shuffle_rng.bit_generator.state
                out[r, e - e_from] = epoch_order(p.s, p.data, p.buf, e)
            self.last = out[:, e - e_from].copy()
            self.next += 1
        return out

    def settle(self, r, epoch=None, stopped=False):
        """Leave run r's stream where train() leaves it (train() draws the orders of ``chunk`` epochs per
        call): after every epoch when the run ended (epoch None); after the call holding ``epoch`` when
        it diverged there; right after drawing ``epoch`` when it was stopped (Ctrl-C) in it, whose order
        is returned then (the continuation's)."""
        p = self.group[r]
        buf, total, chunk, n = p.buf, p.buf.total, p.buf.chunk, p.data.n
        if p.s.order is not None:
            return p.s.order[epoch].copy() if stopped else None
        if epoch is None:
            return None  # the run drew every epoch, as train() does
        c0 = epoch // chunk * chunk
        if c0 in self.starts[r]:
            buf.shuffle_rng.bit_generator.state = self.starts[r][c0]
        # else c0 == self.next: stopped where no launch drew that epoch yet, the stream is there
        perm = None
        for _ in range(c0, epoch + 1 if stopped else min(total, c0 + chunk)):
            perm = buf.shuffle_rng.permutation(n)
        return perm


def run_group(group, stop=None):
    """Train the runs of one group (same group_key) side by side; their TrainResults."""
    tick = time.perf_counter()
    p0 = group[0]
    s0, data0, buf0 = p0.s, p0.data, p0.buf
    R, total, spe = len(group), buf0.total, data0.steps_per_epoch
    rs = onelaunch.RunSet(data0.Xa, data0.ya, data0.Xv, data0.yv, buf0.model_arrays, buf0.c, data0.bs, R, data0.P,
                          buf0.state.shape[0], s0.dtype)
    tables, tab_of, keys = [], [], {}
    for p in group:
        lrs, _ = call_lrs(p.s, p.data, p.buf, 0, total, 0, 0)
        base = onelaunch.call_lrs(lrs, p.s.step_lrs is not None, 0, total, 0, spe)
        key = (base.tobytes(), float(p.buf.power))
        if key not in keys:
            keys[key] = len(tables)
            tables.append((base, p.buf.power))
        tab_of.append(keys[key])
    orders = _Orders(group) if buf0.shuffled else None
    host_tr = [(p.buf.tr_index, p.buf.tr_scalars, p.buf.tr_params, p.buf.tr_grad, p.buf.tr_update, p.buf.tr_state)
               for p in group] if buf0.mode != TRACE_OFF else []
    trace = (buf0.mode, s0.trace_every, buf0.trace_arrays[8], host_tr)
    status = rs.run(buf0.opt, losses.CODES[s0.loss], buf0.controls, buf0.l1_end, 0, total, 0, 0, 0,
                    [p.buf.theta for p in group], [p.buf.state for p in group], orders, tables, tab_of, trace,
                    [p.buf.history for p in group],
                    [p.buf.val_history for p in group] if data0.Xv.shape[0] else [None] * R, stop)
    share = (time.perf_counter() - tick) / R
    _, why = onelaunch.plan(s0.layout.sizes, data0.bs, np.dtype(s0.dtype).itemsize)
    why += f"; {R} runs side by side in one launch" if R > 1 else ""
    results = []
    for r, p in enumerate(group):
        s, data, buf = p.s, p.data, p.buf
        t, row, div = int(status[r, onelaunch.S_T]), int(status[r, onelaunch.S_ROW]), int(status[r, onelaunch.S_DIV])
        interrupted = div == -2
        e_at, offset = int(status[r, onelaunch.S_E]), int(status[r, onelaunch.S_K]) * data.bs
        done = e_at if div != -1 else total
        perm = None
        if orders is not None:
            perm = orders.settle(r, e_at if div != -1 else None, interrupted)
        warn_end(div, done, interrupted, t, e_at)
        config = config_of(s, data, buf, None, p.resumed_changes, 0, onelaunch.PATH_ONE, why)
        # seconds, as train()'s: its own checks, scaling and buffers, and its share of the group's launches
        setup = p.setup
        result = _result(s, data, buf, t, row, e_at, offset, perm, buf.shuffle_rng.bit_generator.state, done,
                         div if div >= 0 else -1, interrupted, None, config, time.perf_counter() - share - setup, 0.0,
                         p.inputs)
        result.setup_seconds = setup
        results.append(result)
    return results


def train_many(X, y, runs, on_result=None, label="configuration"):
    """``[train(X, y, **kw, progress=False) for kw in runs]``, the GPU runs that can share a launch
    trained side by side (see the module docstring). ``on_result(i, result)`` is called as each run
    finishes (the runs of a group finish together). Ctrl-C stops at the next launch: the runs of that
    group come back with ``interrupted=True`` (resumable, as from train()), None for the runs not
    started."""
    prepared = prepare_many(X, y, runs, label)
    results = [None] * len(prepared)
    groups, alone = {}, []
    for i, p in enumerate(prepared):
        key = group_key(p)
        if key is None:
            alone.append(i)
        else:
            groups.setdefault(key, []).append(i)

    def done(i, result):
        results[i] = result
        if on_result is not None:
            on_result(i, result)
        return result.interrupted

    stopped = False
    with Interrupt() as stop:
        for idxs in groups.values():
            for i, res in zip(idxs, run_group([prepared[i] for i in idxs], stop.flag), strict=True):
                stopped |= done(i, res)
            if stopped:
                break
    for i in alone:  # train()'s own loop, which catches Ctrl-C itself
        if stopped:
            break
        stopped = done(i, prepared[i].trained())
    return results
