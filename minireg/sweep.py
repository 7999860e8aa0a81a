"""Grid sweeps: ``minireg.sweep(X, y, grid={...}, n_jobs=-1, client=None, **fixed)``.

Every configuration of the grid (the Cartesian product of its lists, in the grid's key order, the
last key varying fastest) is trained with the fixed arguments and diagnosed, and the sweep returns
a :class:`SweepResult`: ``.table`` (a pandas DataFrame when pandas is installed, else a list of
dicts) with one row per configuration — its grid values, ``final_loss``, ``val_loss`` (when a
validation set is used), ``diverged``, ``diverged_at``, the top finding's ``finding`` code and
``severity`` (from ``result.diagnose()``), ``seconds`` — and ``.results``, the runs in the same
order (TrainResults, or with ``keep="history"`` dicts of their ``config``, ``history`` and
``findings``), which ``.plot()`` draws side by side.

Where the runs go: locally on joblib's process pool (``n_jobs`` as in joblib: -1 all cores, 1 in
this process); with ``client=`` a ``dask.distributed.Client``, on its cluster, through joblib's dask
backend: the same code, one task per configuration. Each run is single-threaded compiled code, so a
run gives bit-for-bit the numbers it gives in a sequential loop, wherever it runs (on machines of the
same CPU type: numba compiles for the host CPU).

``device="cuda"`` (fixed, or in the grid) sends those configurations to this process's GPU
(minireg/cuda/many.py): the ones that differ only in lr, schedule, step_lrs, seed or init (same data,
model, loss, optimizer settings, batch size, epochs and trace settings) train side by side, one
block each, in one kernel launch (onelaunch.py); the others one after the other, each as train()
runs it. Every run gives the numbers train(X, y, **config) gives alone (which match the CPU's within
rounding). n_jobs and client= are for CPU runs: with every configuration on the GPU, giving either
is refused.

Everything is checked before any run starts: grid keys must be train() arguments (a did-you-mean
otherwise), grid values non-empty lists, fixed arguments known, no key in both; and the memory the
kept results would take (each run's trace, and its copy of the data) must fit ``memory_budget``.
"""
import difflib
import inspect
import itertools
import math
import os
import time
import warnings

import numpy as np

from . import _validate as V, optim
from .layout import n_params
from .trace import row_bytes
from .train import DivergenceWarning, InterruptedWarning, _user_stacklevel, train

__all__ = ["sweep", "SweepResult"]

# train() arguments whose single value may itself be a sequence: their grid values must be lists
_SEQUENCE_VALUED = ("hidden", "winsorize", "validation", "step_lrs", "init")
_NOT_SWEPT = ("X", "y", "progress")
_DEFAULT_BUDGET = 2 * 2**30
_PLOT_TOP = 1e200  # loss curves are cut there: exploded runs only leave the chart


def _train_arguments():
    names = [p.name for p in inspect.signature(train).parameters.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY]
    hparams = sorted({k for d in V.OPTIMIZER_DEFAULTS.values() for k in d})
    return [n for n in names if n not in _NOT_SWEPT] + [h for h in hparams if h not in names]


def _unknown(kind, key, known):
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"{kind} {key!r} is not a train() argument.{hint} "
                      f"The arguments are: {', '.join(known)}.")


def _check_grid(grid, fixed):
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict of train-argument name -> list of values, got {type(grid).__name__}.")
    if not grid:
        raise ValueError("grid is empty: give at least one train() argument with a list of values "
                         "(or call minireg.train for a single run).")
    known = _train_arguments()
    for key in fixed:
        if key in _NOT_SWEPT:
            raise ValueError(f"{key!r} cannot be a fixed sweep argument"
                             + (" (sweeps run without progress bars)" if key == "progress" else "") + ".")
        if key not in known:
            raise _unknown("fixed argument", key, known)
    values = {}
    for key, vals in grid.items():
        if not isinstance(key, str):
            raise TypeError(f"grid keys must be train() argument names (strings), got {key!r}.")
        if key not in known:
            raise _unknown("grid key", key, known)
        if key in fixed:
            raise ValueError(f"{key!r} is both in the grid and a fixed argument; give it in one place.")
        if isinstance(vals, np.ndarray) and vals.ndim == 1 and key not in _SEQUENCE_VALUED:
            vals = vals.tolist()
        elif isinstance(vals, range) or (isinstance(vals, tuple) and key not in _SEQUENCE_VALUED):
            vals = list(vals)
        if not isinstance(vals, list):
            example = "[(32,), (64, 64)]" if key == "hidden" else f"[{vals!r}]"
            raise TypeError(f"grid[{key!r}] must be a list of values to try, got {type(vals).__name__} {vals!r}; "
                            f"write e.g. grid={{{key!r}: {example}}}, or pass a single value as a fixed argument "
                            f"({key}=...).")
        if not vals:
            raise ValueError(f"grid[{key!r}] is an empty list: it would leave no configuration to train.")
        values[key] = vals
    return values


def _configs(values):
    keys = list(values)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values.values())]


def _precheck(params):
    """The cheap checks train() would make first, so that a bad grid value fails before any run."""
    V.choice("device", params.get("device", "cpu"), V.DEVICES)
    V.choice("model", params.get("model", "linear"), V.MODELS)
    V.choice("loss", params.get("loss", "mse"), V.LOSSES)
    dtype = params.get("dtype", "float64")
    V.choice("dtype", dtype if isinstance(dtype, str) else np.dtype(dtype).name, V.DTYPES)
    optimizer = V.choice("optimizer", params.get("optimizer", "sgd"), V.OPTIMIZERS)
    if "activation" in params:
        V.choice("activation", params["activation"], V.ACTIVATIONS)
    if "lr" in params:
        V.real("lr", params["lr"], low=0.0, low_open=True)
    if "epochs" in params:
        V.integer("epochs", params["epochs"], 1)
    if params.get("batch_size") is not None:
        V.integer("batch_size", params["batch_size"], 1)
    if "standardize" in params:
        V.standardize_kind(params["standardize"])
    if "trace" in params:
        V.trace_mode(params["trace"])
    hp = {k: v for k, v in params.items() if k in {h for d in V.OPTIMIZER_DEFAULTS.values() for h in d}}
    return V.optimizer_hparams(optimizer, hp)


def _run_bytes(params, n_all, d, hparams):
    """Bytes a kept run holds beyond its parameters: its trace (as train() sizes it) and its copy of
    the data (as trained on, in the run's dtype)."""
    item = np.dtype(params.get("dtype", "float64") if isinstance(params.get("dtype", "float64"), str)
                    else params["dtype"]).itemsize
    val = params.get("validation")
    n = n_all - (min(max(1, int(round(val * n_all))), n_all - 1) if isinstance(val, float) else 0)
    data = (n_all if not isinstance(val, tuple) else n_all + len(val[1])) * (d + 1) * item
    trace = V.trace_mode(params.get("trace", False))
    if trace is False:
        return 0, data
    model = params.get("model", "linear")
    sizes = (d, 1) if model == "linear" else (d, *V.hidden_sizes(params.get("hidden", (10,))), 1)
    P = n_params(sizes)
    bs = params.get("batch_size")
    bs = n if bs is None else min(int(bs), n)
    steps = int(params.get("epochs", 100)) * -(-n // bs)
    every = int(params.get("trace_every", 1))
    rows = -(-steps // every) + 1
    S = len(optim.state_rows(params.get("optimizer", "sgd").lower(), hparams))
    per_row = row_bytes(trace, P, S, item)
    return rows * per_row, data


def _pandas():
    """pandas, or None when it is not installed."""
    try:
        import pandas  # lazy on purpose: optional and slow to import, only for the sweep's table
    except ImportError:
        return None
    return pandas


def _run_one(X, y, params, keep, diagnose=True):
    """One configuration: train, diagnose, and the row of the table (runs in a worker)."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)
            warnings.simplefilter("ignore", InterruptedWarning)  # the sweep says it once for all
            # one thread per run: the sweep's parallelism is its runs (unless the grid sets threads)
            r = train(X, y, progress=False, **{"threads": 1, **params})
            findings = _findings(r, diagnose)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"sweep configuration {params!r}: {exc}") from exc
    return _row(r, findings, time.perf_counter() - started, keep)


def _findings(r, diagnose):
    if not diagnose:
        return []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return r.diagnose(verify=False)  # the sweep itself compares settings


def _row(r, findings, seconds, keep):
    """The table row of a run (and what the sweep keeps of it)."""
    h = r.history
    top = findings[0] if findings else None
    row = {"final_loss": float(h["loss"][-1]) if h["loss"].size else math.nan}
    if "val_loss" in h:
        row["val_loss"] = float(h["val_loss"][-1]) if h["val_loss"].size else math.nan
    row.update(diverged=bool(r.diverged), diverged_at=r.diverged_at, finding=top.code if top else None,
               severity=top.severity if top else None, seconds=seconds, interrupted=bool(r.interrupted))
    if keep == "history":
        return row, {"config": r.config, "history": r.history, "findings": findings}
    return row, r


def _on_gpu(params):
    device = params.get("device", "cpu")
    return isinstance(device, str) and device.lower() == "cuda"


def _run_on_gpu(X, y, params_list, keep, diagnose):
    """The device="cuda" configurations, side by side in as few launches as they allow
    (minireg/cuda/many.py); their (row, result) in order, None for those Ctrl-C left out."""
    from .cuda import many  # lazy on purpose: numba.cuda only when sweeping on the GPU
    out = [None] * len(params_list)

    def on_result(i, r):
        if not r.interrupted:
            tick = time.perf_counter()
            row, kept = _row(r, _findings(r, diagnose), r.seconds + time.perf_counter() - tick, keep)
            row.pop("interrupted")
            out[i] = row, kept

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        warnings.simplefilter("ignore", InterruptedWarning)  # the sweep says it once for all
        many.train_many(X, y, params_list, on_result, label="sweep configuration")
    return out


class SweepResult:
    """What :func:`sweep` returns.

    ``table``: a pandas DataFrame (list of dicts without pandas), one row per configuration in grid
    order; ``results``: the runs in the same order (TrainResult, or with ``keep="history"`` dicts
    with ``config``, ``history`` and ``findings``); ``grid``: the grid as run; ``fixed``: the fixed
    arguments; ``configs``: each row's grid values.
    """

    def __init__(self, grid, fixed, configs, rows, results):
        self.grid, self.fixed, self.configs = grid, fixed, configs
        self.interrupted = False  # Ctrl-C stopped the sweep: only the finished runs are here
        self.results = results
        records = [{**c, **r} for c, r in zip(configs, rows, strict=True)]
        pd = _pandas()
        self.table = records if pd is None else pd.DataFrame.from_records(records)

    def __len__(self):
        return len(self.results)

    def __getitem__(self, i):
        """The i-th run (TrainResult, or its history dict with keep='history')."""
        return self.results[i]

    def history(self, i):
        r = self.results[i]
        return r["history"] if isinstance(r, dict) else r.history

    def records(self):
        """The table as a list of dicts (whatever ``table`` is)."""
        return self.table.to_dict("records") if hasattr(self.table, "to_dict") else list(self.table)

    def best(self, by="final_loss"):
        """The index of the configuration with the lowest ``by`` among the runs that did not diverge
        (None if all diverged)."""
        rows = self.records()
        ok = [i for i, r in enumerate(rows) if not r["diverged"] and np.isfinite(r.get(by, math.nan))]
        return min(ok, key=lambda i: rows[i][by]) if ok else None

    def _label(self, config, skip=()):
        return ", ".join(f"{k}={v}" for k, v in config.items() if k not in skip) or "run"

    def plot(self, key=None, val=False):
        """Loss curves side by side: one panel per value of ``key`` (default: the first grid key),
        each holding the curves of the other grid values, on a log scale. ``val=True`` draws the
        validation loss as dashed lines too. Returns the matplotlib figure."""
        key = list(self.grid)[0] if key is None else key
        if key not in self.grid:
            raise ValueError(f"{key!r} is not a grid key; the grid keys are {list(self.grid)}.")
        with np.errstate(all="ignore"):  # losses near the float limit overflow the log axis' margins
            return self._plot(key, val)

    def _plot(self, key, val):
        import matplotlib.pyplot as plt  # lazy on purpose: only when a plot is asked for
        panels = self.grid[key]
        records = self.records()
        fig, axes = plt.subplots(1, len(panels), figsize=(min(4.2 * len(panels), 18), 3.8), squeeze=False,
                                 constrained_layout=True)
        for ax, value in zip(axes[0], panels, strict=True):
            curves = []  # (finite positive values, diverged)
            for i, cfg in enumerate(self.configs):
                if cfg[key] is not value and cfg[key] != value:
                    continue
                diverged = bool(records[i]["diverged"])
                h = {k: np.where(np.isfinite(v), v, np.nan) for k, v in self.history(i).items()}  # inf: off the axis
                x = np.arange(1, h["loss"].size + 1)
                line, = ax.plot(x, h["loss"], lw=1.2, label=self._label(cfg, (key,)) + (" (diverged)" if diverged
                                                                                      else ""))
                curves.append((h["loss"], diverged))
                if val and "val_loss" in h:
                    ax.plot(x, h["val_loss"], lw=1, ls="--", color=line.get_color())
                    curves.append((h["val_loss"], diverged))
            ax.set(yscale="log", xlabel="epoch", title=f"{key}={value}")
            # diverged runs leave the chart at 100x the largest starting loss of the others (and before
            # the float limit, where matplotlib's log ticks overflow), so the others stay readable
            curves = [(v[np.isfinite(v) & (v > 0)], d) for v, d in curves]
            curves = [(v, d) for v, d in curves if v.size]
            if curves:
                ref = [v for v, d in curves if not d] or [v for v, _ in curves]
                top = min(100 * max(v[0] for v in ref), _PLOT_TOP)
                if max(v.max() for v, _ in curves) > top:
                    ax.set_ylim(min(v.min() for v, _ in curves) / 2, top)
            if ax.lines:
                ax.legend(fontsize=7)
        axes[0, 0].set_ylabel("training loss")
        return fig

    def __repr__(self):
        return f"SweepResult({len(self)} runs over {list(self.grid)})\n{self.table!r}"

    def _repr_html_(self):
        inner = self.table._repr_html_() if hasattr(self.table, "_repr_html_") else repr(self.table)
        return f"<div><b>SweepResult</b>: {len(self)} runs over {list(self.grid)}{inner}</div>"


_WORKERS_PAY_AFTER = 2.0  # seconds of runs below which starting worker processes costs more than it saves


def sweep(X, y, grid, *, n_jobs=None, client=None, keep="results", diagnose=True, memory_budget=_DEFAULT_BUDGET,
          **fixed):
    """Train every configuration of ``grid`` with the ``fixed`` train() arguments; a SweepResult.

    ``grid``: {train-argument name: list of values}, e.g. ``{"optimizer": ["sgd", "adam"],
    "lr": [0.01, 0.1], "standardize": [None, "zscore"]}`` (the Cartesian product: 8 runs).
    ``n_jobs``: local worker processes (joblib; -1 all cores, 1 sequential in this process). None
    (default): the first configuration runs here, and the rest go to all cores only when the
    projected total (its time × the configurations) is over _WORKERS_PAY_AFTER seconds, since
    starting workers costs about a second.
    ``client``: a ``dask.distributed.Client``: the runs go to its cluster instead (n_jobs ignored).
    ``device="cuda"`` (a train() argument, fixed or in the grid): those runs train on this process's
    GPU, the ones that differ only in lr/schedule/seed/init side by side in one launch (see above).
    ``keep``: "results" keeps every TrainResult (with its trace and data); "history" keeps only each
    run's config, history and findings, so only the runs in flight hold their traces.
    ``diagnose``: diagnose every run (the ``finding``/``severity`` columns); False skips it (faster;
    those columns are then None).
    ``memory_budget``: bytes the kept runs may take (traces and data copies, estimated before any
    run starts); a sweep above it is refused with a ValueError.
    The numbers equal, bit for bit, those of a sequential loop over ``minireg.train``.
    """
    if keep not in ("results", "history"):
        raise ValueError(f"keep={keep!r} is not one of 'results', 'history'.")
    diagnose = V.flag("diagnose", diagnose)
    values = _check_grid(grid, fixed)
    configs = _configs(values)
    on_gpu = [_on_gpu({**fixed, **cfg}) for cfg in configs]
    if any(on_gpu):
        if client is not None:
            raise ValueError("device='cuda' runs train on this process's GPU, side by side in one launch; client= "
                             "sends runs to a dask cluster's workers. Sweep on the GPU without client=, or on the "
                             "cluster with device='cpu'.")
        if n_jobs not in (None, 1) and all(on_gpu):
            raise ValueError(f"n_jobs={n_jobs!r} sets CPU worker processes; device='cuda' runs train side by side "
                             "in one launch on this process's GPU. Leave n_jobs out (or sweep with device='cpu').")
    X64 = V.data_X(X, np.float64)
    y64 = V.data_y(y, X64.shape[0], np.float64)
    n_all, d = X64.shape
    memory_budget = V.real("memory_budget", memory_budget, low=0.0, low_open=True)
    per_run = []
    for cfg in configs:
        params = {**fixed, **cfg}
        try:
            hp = _precheck(params)
            if isinstance(params.get("validation"), (list, tuple)):
                params["validation"] = tuple(params["validation"])
            per_run.append(_run_bytes(params, n_all, d, hp))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"sweep configuration {cfg!r}: {exc}") from None
    in_flight = len(configs) if client is not None or all(on_gpu) else _effective_jobs(n_jobs, len(configs))
    if keep == "results":
        need = sum(t + dd for t, dd in per_run)
        what = f"the {len(configs)} kept runs (traces and data copies)"
    else:
        worst = sorted((t + dd for t, dd in per_run), reverse=True)
        need = sum(worst[:in_flight])
        what = f"the {in_flight} runs in flight at once (traces and data copies)"
    if need > memory_budget:
        trace_part = sum(t for t, _ in per_run)
        raise ValueError(
            f"the sweep would hold about {V.format_bytes(need)} for {what}, above memory_budget="
            f"{V.format_bytes(memory_budget)} ({len(configs)} configurations; "
            f"traces {V.format_bytes(trace_part)} in all). "
            "Record less (trace='norms' or trace_every=k), keep only the histories (keep='history'), "
            "sweep a smaller grid, or raise memory_budget.")

    if any(on_gpu):
        return _sweep_gpu_and_cpu(X64, y64, values, fixed, configs, on_gpu, n_jobs, keep, diagnose)
    rows, results, stopped = _run_on_cpu(X64, y64, fixed, configs, n_jobs, client, keep, diagnose)
    if client is not None:
        return SweepResult(values, dict(fixed), configs, rows, results)
    return _finished(values, fixed, configs[:len(rows)], rows, results, len(configs), stopped)


def _finished(values, fixed, configs, rows, results, n_all, stopped):
    done = SweepResult(values, dict(fixed), configs, rows, results)
    done.interrupted = stopped
    if stopped:
        warnings.warn(f"sweep interrupted (Ctrl-C): {len(rows)} of {n_all} configurations finished; the "
                      "result holds those, the rest were cancelled.", InterruptedWarning, stacklevel=_user_stacklevel())
    return done


def _sweep_gpu_and_cpu(X64, y64, values, fixed, configs, on_gpu, n_jobs, keep, diagnose):
    """The device="cuda" configurations on the GPU (first), the others as a CPU sweep; the finished
    runs in grid order."""
    gpu = [i for i, g in enumerate(on_gpu) if g]
    cpu = [i for i, g in enumerate(on_gpu) if not g]
    got = dict(zip(gpu, _run_on_gpu(X64, y64, [{**fixed, **configs[i]} for i in gpu], keep, diagnose),
                   strict=True))
    stopped = any(v is None for v in got.values())
    if cpu and not stopped:
        rows, results, stopped = _run_on_cpu(X64, y64, fixed, [configs[i] for i in cpu], n_jobs, None, keep, diagnose)
        got.update(zip(cpu, zip(rows, results, strict=True), strict=False))
    done = [i for i in range(len(configs)) if got.get(i) is not None]
    return _finished(values, fixed, [configs[i] for i in done], [got[i][0] for i in done],
                     [got[i][1] for i in done], len(configs), stopped)


def _run_on_cpu(X64, y64, fixed, configs, n_jobs, client, keep, diagnose):
    """(rows, results, stopped) of the CPU configurations: the finished runs, in grid order."""
    # lazy on purpose: joblib (scikit-learn's) and, through its dask backend, dask only when sweeping
    import joblib
    jobs = (joblib.delayed(_run_one)(X64, y64, cfg_params, keep, diagnose)
            for cfg_params in ({**fixed, **cfg} for cfg in configs))
    if client is not None:
        with joblib.parallel_config(backend="dask", client=client):
            out = joblib.Parallel(n_jobs=-1)(jobs)
        rows, results = zip(*out, strict=True) if out else ((), ())
        for row in rows:
            row.pop("interrupted")
        return list(rows), list(results), False
    # Ctrl-C: a run in this process stops and says so (interrupted), a worker's run likewise, and the
    # wait here raises KeyboardInterrupt; either way the pending runs are cancelled (the generator is
    # closed) and the sweep returns the runs finished before, in grid order
    rows, results, stopped = [], [], False
    if n_jobs is None:
        # run here while the rest is projected to be short; the first run carries one-off costs
        # (imports, loading kernels), so the projection uses the latest run's time from the second on
        done_here, last, left = [], None, len(configs)
        try:
            while left:
                if last is not None and len(done_here) >= 2 and left >= 2 and last * left > _WORKERS_PAY_AFTER:
                    break
                fn, a, k = next(jobs)
                tick = time.perf_counter()
                done_here.append(fn(*a, **k))
                last, left = time.perf_counter() - tick, left - 1
                if done_here[-1][0]["interrupted"]:
                    left = 0
        except KeyboardInterrupt:
            left, stopped = 0, True
        gen = joblib.Parallel(n_jobs=-1, return_as="generator")(jobs) if left else None
        out = itertools.chain(done_here, gen or ())
    else:
        gen = out = joblib.Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    try:
        for row, result in out:
            if row.pop("interrupted"):
                stopped = True
                break
            rows.append(row)
            results.append(result)
    except KeyboardInterrupt:
        stopped = True
    finally:
        if gen is not None:
            gen.close()
    return rows, results, stopped


def _effective_jobs(n_jobs, n):
    if n_jobs is None:  # the default may go to all cores: count them all in flight
        n_jobs = -1
    cpus = os.cpu_count() or 1
    k = cpus + 1 + n_jobs if n_jobs < 0 else n_jobs
    return max(1, min(n, k))
