"""The ``minireg`` command line: ``python -m minireg ...`` and the ``minireg`` console script.

    minireg train data.csv --target y [--model mlp --hidden 32,32 --optimizer adam --lr 0.01 ...]
    minireg diagnose run.minireg
    minireg report run.minireg -o report.html
    minireg demo [case | all]
    minireg bench [--quick]

Errors a user can cause (a missing file, an unknown column, a non-numeric column, a bad flag value,
anything minireg rejects with ValueError/TypeError) print one line, ``minireg: error: ...``, to
stderr and exit with status 2. ``main(argv)`` returns the exit code instead of exiting.
"""
import argparse
import csv
import difflib
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from . import datasets, optim
from ._version import __version__
from .io import load
from .layout import n_params
from .reference import train_reference
from .trace import row_bytes
from .train import DivergenceWarning, train

PROG = "minireg"
DATA_TYPES = (".csv", ".npz", ".npy", ".parquet", ".pq")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with every usage error as a single ``minireg: error: ...`` line (no usage dump)."""

    def error(self, message):
        raise CLIError(message)


def _did_you_mean(value, options):
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.5)
    if not close:
        lower = {str(o).lower(): str(o) for o in options}
        if str(value).lower() in lower:
            close = [lower[str(value).lower()]]
    return f"; did you mean {close[0]!r}?" if close else ""


def _one_line(text):
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------------
# reading data


def _check_file(path):
    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a data file")


def _pandas():
    """pandas, or None when it is not installed."""
    try:
        import pandas  # lazy on purpose: optional and slow to import, only for reading data files
    except ImportError:
        return None
    return pandas


def _csv_columns(path):
    """{column name: 1-D array} of a CSV file: pandas when installed, else the csv module + numpy."""
    pd = _pandas()
    if pd is not None:
        try:
            df = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise CLIError(f"{path} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read {path} as CSV: {_one_line(exc)}") from None
        if df.shape[1] == 0:
            raise CLIError(f"{path} has no columns")
        return {str(c): df[c].to_numpy() for c in df.columns}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        try:
            rows = [r for r in csv.reader(fh) if r]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read {path} as CSV: {_one_line(exc)}") from None
    if not rows:
        raise CLIError(f"{path} is empty")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise CLIError(f"cannot read {path} as CSV: data row {i} has {len(r)} fields, the header {len(header)}")
    out = {}
    for j, name in enumerate(header):
        cells = [r[j].strip() for r in body]
        try:
            col = np.array([float(c) if c else math.nan for c in cells], dtype=np.float64)
        except ValueError:
            col = np.array(cells, dtype=object)
        out[name] = col
    return out


def _parquet_columns(path):
    try:
        import pyarrow.parquet as pq  # lazy on purpose: optional, only for parquet files
    except ImportError:
        raise CLIError(f"reading Parquet ({path}) needs pyarrow, which is not installed: pip install pyarrow, "
                       "or convert the file to CSV") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid, ...): the file is not readable
        raise CLIError(f"cannot read {path} as Parquet: {_one_line(exc)}") from None
    return {name: table.column(name).to_numpy() for name in table.column_names}


def _column_xy(columns, target, features, path):
    names = list(columns)
    if target is None:
        target = names[-1]
    elif target not in columns:
        raise CLIError(f"{path} has no column {target!r}{_did_you_mean(target, names)} "
                       f"(columns: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''})")
    if features is None:
        features = [n for n in names if n != target]
    else:
        for f in features:
            if f not in columns:
                raise CLIError(f"{path} has no column {f!r}{_did_you_mean(f, names)}")
        if target in features:
            raise CLIError(f"column {target!r} is the target; leave it out of --features")
    if not features:
        raise CLIError(f"{path} has only the target column {target!r}; there is nothing to train on")
    arrays = []
    for name in [*features, target]:
        col = np.asarray(columns[name])
        if col.dtype.kind == "b":
            col = col.astype(np.float64)
        if col.dtype.kind not in "iuf":
            bad = next((v for v in col if not _is_number(v)), None)
            raise CLIError(f"column {name!r} is not numeric (it holds e.g. {bad!r}); encode or drop it"
                           + (" (--features selects columns)" if name != target else ""))
        col = col.astype(np.float64)
        missing = np.flatnonzero(~np.isfinite(col))
        if missing.size:
            raise CLIError(f"column {name!r} has {missing.size} missing/NaN/inf value(s) (first in data row "
                           f"{missing[0]}, counting from 0); drop or impute them")
        arrays.append(col)
    return np.column_stack(arrays[:-1]), arrays[-1], list(features), target


def _is_number(v):
    if v is None or isinstance(v, (bool, np.bool_)):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def load_data(path, target=None, features=None):
    """(X, y, feature names, target name) from a .csv, .npz, .npy or .parquet file."""
    _check_file(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".csv", ".parquet", ".pq"):
        columns = _csv_columns(path) if ext == ".csv" else _parquet_columns(path)
        return _column_xy(columns, target, features, path)
    if features is not None:
        raise CLIError("--features selects named columns of a .csv or .parquet file; "
                       f"{path} has arrays, not named columns")
    if ext == ".npz":
        try:
            data = dict(np.load(path, allow_pickle=False))
        except Exception as exc:
            raise CLIError(f"cannot read {path} as .npz: {_one_line(exc)}") from None
        keys = list(data)
        if target is not None:
            if target not in data:
                raise CLIError(f"{path} has no array {target!r}{_did_you_mean(target, keys)} "
                               f"(arrays: {', '.join(keys)})")
            rest = [k for k in keys if k != target]
            if "X" in rest:
                xkey = "X"
            elif len(rest) == 1:
                xkey = rest[0]
            else:
                raise CLIError(f"{path} holds {', '.join(keys)}: with --target {target} the features must be the "
                               "array 'X' or the only other array")
        else:
            if "X" not in data or "y" not in data:
                raise CLIError(f"{path} holds {', '.join(keys) or 'no arrays'}; expected arrays 'X' and 'y' "
                               "(or name the target array with --target)")
            xkey, target = "X", "y"
        X, y = data[xkey], data[target]
        return _numeric(X, f"{path}[{xkey!r}]"), _numeric(y, f"{path}[{target!r}]"), None, target
    if ext == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise CLIError(f"cannot read {path} as .npy: {_one_line(exc)}") from None
        a = _numeric(a, path)
        if a.ndim != 2 or a.shape[1] < 2:
            raise CLIError(f"{path} holds an array of shape {a.shape}; expected 2-D with the features and, "
                           "in the last column (or the one --target names), the target")
        col = -1
        if target is not None:
            try:
                col = int(target)
            except ValueError:
                raise CLIError(f"for .npy data --target is a column index, got {target!r}") from None
            if not -a.shape[1] <= col < a.shape[1]:
                raise CLIError(f"--target {col} is out of range: {path} has {a.shape[1]} columns")
        col %= a.shape[1]
        return np.delete(a, col, axis=1), a[:, col], None, f"column {col}"
    raise CLIError(f"cannot read {path}: unknown file type {ext or '(no extension)'!r}; "
                   f"use one of {', '.join(DATA_TYPES)}")


def _numeric(a, where):
    if a.dtype.kind == "b":
        return a.astype(np.float64)
    if a.dtype.kind not in "iuf":
        raise CLIError(f"{where} is not numeric (dtype {a.dtype}); save numbers")
    return a


# --------------------------------------------------------------------------------------------------
# argument types


def _hidden(text):
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected layer sizes like 32,32, got {text!r}")
    return sizes


def _batch_size(text):
    if text.lower() in ("full", "none", "all"):
        return None
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'full', got {text!r}")
    return v


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _scalar(text):
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _opt(text):
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. momentum=0.9), got {text!r}")
    if "," in value:
        return key, tuple(_scalar(v) for v in value.split(","))
    return key, _scalar(value)


# --------------------------------------------------------------------------------------------------
# train


def _train_kwargs(args):
    kw = {}
    for name in ("model", "hidden", "activation", "loss", "delta", "optimizer", "lr", "epochs", "seed",
                 "validation", "early_stopping", "dtype"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    if hasattr(args, "batch_size"):  # given (None: full batch)
        kw["batch_size"] = args.batch_size
    if args.no_shuffle:
        kw["shuffle"] = False
    if args.standardize is not None:
        kw["standardize"] = None if args.standardize == "none" else args.standardize
    if args.trace is not None:
        kw["trace"] = {"full": True, "norms": "norms", "off": False}[args.trace]
    elif not getattr(args, "resume", None):
        kw["trace"] = "norms"  # the per-step loss and norms, for the figures and the diagnosis
    if ("hidden" in kw or "activation" in kw) and "model" not in kw:
        kw["model"] = "mlp"  # --hidden / --activation describe an MLP
    if kw.get("model") == "linear" and ("hidden" in kw or "activation" in kw):
        raise CLIError("--hidden and --activation apply to --model mlp, not --model linear")
    for key, value in args.opt or ():
        if key in ("X", "y", "progress"):
            raise CLIError(f"--opt {key}=... is not a training argument that can be set here")
        kw[key] = value
    kw["progress"] = False if args.no_progress else (True if args.progress else None)
    if getattr(args, "resume", None):
        kw["resume"] = args.resume
    if getattr(args, "checkpoint", None):
        kw["checkpoint"] = args.checkpoint
    if getattr(args, "checkpoint_every", None) is not None:
        kw["checkpoint_every"] = args.checkpoint_every
    return kw


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def summary_rows(result, source=None):
    """(label, value) pairs: the config highlights and the outcome of a run."""
    cfg, h = result.config, result.history
    rows = []
    if source:
        rows.append(("data", source))
    model = "linear" if cfg["model"] == "linear" else \
        f"mlp {'-'.join(str(s) for s in cfg['sizes'])} {cfg['activation']}"
    rows.append(("model", f"{model} ({cfg['n_params']} parameters, {cfg['dtype']})"))
    rows.append(("loss", cfg["loss"] + (f" (delta {cfg['delta']:g})" if cfg["loss"] == "huber" else "")))
    opt = f"{cfg['optimizer']}, lr {cfg['lr']:g}"
    extras = [f"{k} {_fmt(cfg[k])}" for k in ("momentum", "weight_decay") if cfg.get(k)]
    if cfg.get("schedule"):
        extras.append(f"schedule {cfg['schedule']}")
    rows.append(("optimizer", opt + (f" ({', '.join(extras)})" if extras else "")))
    bs = "full batch" if cfg["batch_size"] is None else f"{cfg['effective_batch_size']}" + (
        ", shuffled" if cfg["shuffled"] else ", in row order")
    rows.append(("batches", f"{bs}, {cfg['steps_per_epoch']} step(s) per epoch"))
    rows.append(("standardize", str(cfg["standardize"] or "no")))
    rows.append(("samples", f"{cfg['n_samples']} training" + (
        f", {cfg['n_validation']} validation" if cfg["n_validation"] else "")))
    ep = f"{h['loss'].size} of {cfg['epochs']}, {result.n_steps} steps"
    if result.stopped_epoch is not None:
        ep += f" (early stopping at epoch {result.stopped_epoch}, best epoch {result.best_epoch})"
    rows.append(("epochs", ep))
    rows.append(("final loss", f"{h['loss'][-1]:.6g}" if h["loss"].size else "n/a"))
    rows.append(("outcome", result.outcome()[1]))
    if "val_loss" in h:
        rows.append(("val loss", f"{h['val_loss'][-1]:.6g}" if h["val_loss"].size else "n/a"))
    if result.diverged:
        rows.append(("diverged", f"YES, at step {result.diverged_at} (epoch "
                                 f"{result.diverged_at // cfg['steps_per_epoch']}): the run stopped there"))
    else:
        rows.append(("diverged", "no"))
    rows.append(("trace", {False: "off", True: "full", "norms": "norms"}[cfg["trace"]]))
    compiling = getattr(result, "compile_seconds", 0.0)
    rows.append(("time", f"{result.seconds:.3g} s" + (f" (+ {compiling:.3g} s compiling or loading the kernels)"
                                                       if compiling else "")))
    return rows


def _print_table(rows, file=None):
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=file)


_FLAGS = ("model", "hidden", "activation", "loss", "delta", "optimizer", "lr", "epochs", "seed", "validation",
          "early_stopping", "dtype", "standardize", "batch_size")


def cli_flags(fix):
    """A fix as `minireg train` options (``--lr 0.38 --opt momentum=0.9``); None when it holds what
    the command line cannot say (arrays)."""
    parts = []
    for key, v in fix.items():
        flag = "--" + key.replace("_", "-")
        if key == "shuffle":
            parts.append("(without --no-shuffle)" if v else "--no-shuffle")
        elif isinstance(v, dict):
            return None
        elif key == "hidden":
            parts.append(f"--hidden {','.join(str(h) for h in v)}")
        elif key == "batch_size":
            parts.append(f"--batch-size {'full' if v is None else v}")
        elif key == "standardize":
            parts.append(f"--standardize {v or 'none'}")
        elif key in _FLAGS:
            parts.append(f"{flag} {v}")
        elif isinstance(v, tuple):
            parts.append(f"--opt {key}={','.join(str(x) for x in v)}")
        else:
            parts.append(f"--opt {key}={v}")
    return " ".join(parts)


def _print_findings(findings, header="Diagnosis"):
    if not findings:
        print(f"{header}: no problems found.")
        return
    print(f"{header}: {len(findings)} finding(s), most severe first")
    for f in findings:
        print("  " + str(f).replace("\n", "\n  "))
        flags = cli_flags(f.fix) if f.fix else None
        if flags:
            print(f"    on the command line: minireg train ... {flags}")


class _Warnings:
    """Collect warnings: DivergenceWarning is reported in the summary; minireg's own others are
    printed as one line each on stderr; third-party library chatter is dropped."""

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self.caught = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        pkg = os.path.dirname(os.path.abspath(__file__))
        seen = set()
        for w in self.caught:
            if issubclass(w.category, DivergenceWarning) or not os.path.abspath(w.filename).startswith(pkg):
                continue
            msg = _one_line(w.message)
            if msg not in seen:
                seen.add(msg)
                print(f"{PROG}: warning: {msg}", file=sys.stderr)
        return False


def _check_output(path, flag):
    """Fail before training, not after, when an output path cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CLIError(f"{flag} {path}: the directory {directory} does not exist")
    if os.path.isdir(path):
        raise CLIError(f"{flag} {path} is a directory; give a file name")


def cmd_train(args):
    for path, flag in ((args.save, "--save"), (args.report, "--report"), (args.checkpoint, "--checkpoint")):
        if path:
            _check_output(path, flag)
    if args.resume:
        _check_file(args.resume)
        if args.epochs is None:
            raise CLIError("--resume needs --epochs: how many more epochs to train")
    X, y, features, target = load_data(args.data, args.target, args.features)
    kw = _train_kwargs(args)
    with _Warnings():
        result = train(X, y, **kw)
        findings = result.diagnose()
    names = f" ({', '.join(features)})" if features and len(features) <= 8 else ""
    src = f"{args.data}: {X.shape[0]} rows x {X.shape[1]} feature(s){names}, target {target!r}"
    print("minireg train")
    _print_table(summary_rows(result, src))
    print()
    _print_findings(findings)
    if args.save:
        result.save(args.save)
        print(f"\nsaved the run to {args.save}")
    if args.report:
        with _Warnings():
            result.report(args.report)
        print(f"wrote the report to {args.report}")
    return 0


# --------------------------------------------------------------------------------------------------
# diagnose, report


def _load_run(path):
    _check_file(path)
    return load(path)


def findings_of(result, fresh=False):
    """(findings, where they came from): the ones saved with / computed for the run, else a new
    diagnosis (from the history and trace alone for a loaded run, which has no data)."""
    saved = vars(result).get("findings")
    loaded = result.inputs is None
    if not fresh and saved is not None and (saved or not loaded):
        return saved, "saved with the run" if loaded else "diagnosed"
    sample = getattr(result, "saved_sample", None)
    where = ("diagnosed from the saved history and trace (the data is not saved, so the data checks are skipped)"
             if result.data is None else
             f"diagnosed from the saved history, trace and {sample['rows']} of the {sample['of']} training rows"
             if loaded and sample else "diagnosed")
    return result.diagnose(), where


def cmd_diagnose(args):
    result = _load_run(args.run)
    with _Warnings():
        findings, where = findings_of(result, fresh=args.fresh)
    if args.json:
        print(json.dumps([f.to_dict() for f in findings], indent=2, allow_nan=True))
        return 0
    print(f"{args.run}: {result!r}")
    print(f"findings {where}")
    print()
    _print_findings(findings)
    return 0


def cmd_report(args):
    result = _load_run(args.run)
    out = args.output or os.path.splitext(args.run)[0] + ".html"
    _check_output(out, "-o")
    os.environ.setdefault("MPLBACKEND", "Agg")
    with _Warnings():
        result.report(out)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------------------------------
# demo


def default_demo():
    """The seed case: learning rate too high, then its fix (what ``python -m minireg demo`` prints)."""
    X, y = datasets.linear_1d(n=100, seed=0)
    print("Seed case: X ~ U(0,1), y = 2X + 1 + 0.1·noise, 100 rows; linear model, MSE, SGD, batch 32.\n")
    fixed_lr = None
    for lr in (10.0, None):
        lr = fixed_lr if lr is None else lr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)
            r = train(X, y, optimizer="sgd", lr=lr, batch_size=32, epochs=50, trace=True)
        tr = r.trace
        print(f"lr={lr:g}: {r}")
        if r.diverged:
            first, last = tr.loss[0], tr.loss[-2]
            print(f"  the batch loss grew from {first:.3g} to {last:.3g} in {r.diverged_at} steps, and step "
                  f"{r.diverged_at} produced non-finite values: the run stopped there (diverged=True).")
            w = tr.params[:6, 0]
            print("  W1 over the first steps: " + ", ".join(f"{v:.3g}" for v in w)
                  + "  (each step overshoots the minimum further than the last)")
            s = tr.step(3)
            print(f"  step 3 exactly: loss {s['loss']:.4g}, dL/dW1 {s['grad']['W1'][0, 0]:.4g}, "
                  f"update {s['update']['W1'][0, 0]:.4g} = -lr x grad")
            print("  diagnosis:")
            findings = r.diagnose()
            for f in findings:
                print("    " + str(f).replace("\n", "\n    "))
            fixed_lr = next(f.fix["lr"] for f in findings if "lr" in f.fix)
            print(f"  applying the fix: lr={fixed_lr:g}")
        else:
            p = r.params
            print(f"  converged: W1 = {p['W1'].ravel()[0]:.4f}, b1 = {p['b1'][0]:.4f} (truth 2, 1); "
                  f"final loss {r.history['loss'][-1]:.4g} ≈ noise variance {0.1 ** 2:g}; "
                  f"findings: {[f.code for f in r.diagnose()] or 'none'}.")
        print()


def cmd_demo(args):
    CASES = datasets.CASES
    np.set_printoptions(precision=4)
    if args.case is None:
        default_demo()
        print(f"More seed failure cases: {', '.join(CASES)} (minireg demo <case>, or minireg demo all).")
        return 0
    if args.case == "all":
        names = list(CASES)
    elif args.case in CASES:
        names = [args.case]
    else:
        raise CLIError(f"unknown demo case {args.case!r}{_did_you_mean(args.case, [*CASES, 'all'])} "
                       f"(cases: {', '.join(CASES)}, all)")
    for i, name in enumerate(names):
        if i:
            print()
        datasets.run_case(name)
    return 0


# --------------------------------------------------------------------------------------------------
# bench


_BENCH = (  # key, label, n, d, hidden, optimizer, lr, batch_size
    ("linear-full", "linear N=100 d=1 full-batch SGD", 100, 1, (), "sgd", 0.1, None),
    ("mlp64-batch32", "MLP 10-64-64-1 relu Adam batch 32 N=10k", 10_000, 10, (64, 64), "adam", 1e-3, 32),
)
_BENCH_TRACE_BYTES = 256 * 2**20  # a traced measurement records at most this much


def _bench_data(n, d, hidden, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    y = np.sin(X @ w / np.sqrt(d)) + 0.1 * X[:, 0] ** 2 if hidden else X @ w + 1.0
    return X, y + 0.1 * rng.standard_normal(n)


def _numpy_loop(X, y, hidden, optimizer, lr, batch_size):
    """The same training in plain NumPy: minireg.reference, the readable twin of the compiled loop
    (MSE, torch's init and optimizers, relu hidden layers, the same batches)."""
    kw = dict(model="mlp" if hidden else "linear", hidden=hidden or (10,), activation="relu",
              optimizer=optimizer, lr=lr, batch_size=batch_size)

    def run(epochs):
        return train_reference(X, y, epochs=epochs, **kw).n_steps
    return run


def _measure(run, target_s, repeats, max_epochs):
    """µs per step: a warm-up epoch, the epochs autoranged to about target_s, best of ``repeats``."""
    run(1)
    epochs = 1
    while True:
        t0 = time.perf_counter()
        steps = run(epochs)
        seconds = time.perf_counter() - t0
        if seconds >= target_s / 5 or epochs >= max_epochs:
            break
        epochs = min(max_epochs, epochs * 10)
    calibrated = max(1, min(max_epochs, round(epochs * target_s / max(seconds, 1e-9))))
    best = seconds / steps if calibrated == epochs else math.inf
    for _ in range(repeats - (calibrated == epochs)):
        t0 = time.perf_counter()
        steps = run(calibrated)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best * 1e6


def _cuda_available():
    try:
        from . import cuda  # lazy on purpose: minireg.cuda (and numba.cuda) only when measuring a GPU
        if cuda.simulated():
            return False, "numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): not a speed measure"
        cuda.require_gpu()
        return True, ""
    except ImportError as exc:
        return False, f"minireg.cuda is not importable ({_one_line(exc)})"
    except ValueError:
        return False, "no CUDA GPU found"
    except Exception as exc:  # a broken CUDA setup must not break the CPU benchmark
        return False, f"CUDA unavailable ({type(exc).__name__})"


def cmd_bench(args):
    quick = args.quick
    target_s, repeats = (0.04, 1) if quick else (0.45, 3)
    use_cuda, why = _cuda_available()
    timed = "one timed run" if repeats == 1 else f"best of {repeats} timed runs"
    print(f"minireg bench{' --quick' if quick else ''}: µs per optimizer step on this machine's CPU "
          f"({timed} of the whole training call; lower is better)")
    cols = ["minireg", "+trace", "numpy", "numpy/minireg"] + (["cuda"] if use_cuda else [])
    rows = []
    for key, label, n, d, hidden, optimizer, lr, bs in _BENCH:
        X, y = _bench_data(n, d, hidden)
        sizes = (d, *hidden, 1)
        steps_per_epoch = -(-n // (bs or n))
        hparams = optim.DEFAULTS[optimizer]
        bytes_per_row = row_bytes(True, n_params(sizes), len(optim.state_rows(optimizer, hparams)), 8)
        traced_max = max(1, _BENCH_TRACE_BYTES // (bytes_per_row * steps_per_epoch))
        kw = dict(model="mlp" if hidden else "linear", hidden=hidden or (10,), activation="relu",
                  optimizer=optimizer, lr=lr, batch_size=bs, progress=False, trace_budget=2 * _BENCH_TRACE_BYTES)

        def runner(trace, device="cpu", X=X, y=y, kw=kw):  # this workload's data and arguments
            def run(epochs):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return train(X, y, epochs=epochs, trace=trace, device=device, **kw).n_steps
            return run
        untraced = _measure(runner(False), target_s, repeats, 10**6)
        traced = _measure(runner(True), target_s, repeats, traced_max)
        plain = _measure(_numpy_loop(X, y, hidden, optimizer, lr, bs), target_s, repeats, 10**6)
        row = [f"{key} {label}", untraced, traced, plain, f"{plain / untraced:.1f}x"]
        if use_cuda:
            try:
                row.append(_measure(runner(False, "cuda"), target_s, repeats, 10**6))
            except Exception as exc:  # report, do not fail the CPU numbers
                row.append(f"failed: {type(exc).__name__}")
        rows.append(row)
    width = max(len(r[0]) for r in rows)
    print(f"  {'workload':<{width}}  " + "  ".join(f"{c:>13}" for c in cols))
    for r in rows:
        cells = [f"{v:>13.3g}" if isinstance(v, float) else f"{v:>13}" for v in r[1:]]
        print(f"  {r[0]:<{width}}  " + "  ".join(cells))
    print("  +trace: trace=True (every step's params, gradient, update and optimizer state recorded); "
          "numpy: the same training by minireg.reference, in plain NumPy.")
    if not use_cuda:
        print(f"  cuda: not measured: {why}.")
    print("The full comparisons (PyTorch, scikit-learn, larger workloads, float32) are in benchmarks/: "
          "python benchmarks/bench_engine.py; results in benchmarks/RESULTS.md.")
    return 0


# --------------------------------------------------------------------------------------------------
# parser and main


def build_parser():
    p = _Parser(prog=PROG, description="Transparent regression training: train, diagnose, report.")
    p.add_argument("--version", action="version", version=f"minireg {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train on a data file, print a summary and the diagnosis",
                       description="Train on a .csv, .npz, .npy or .parquet file; print a summary table and "
                                   "the diagnosis. Flags left out take train()'s defaults.")
    t.add_argument("data", help="a .csv (header row), .npz (arrays X and y), .npy (2-D; target in the last "
                                "column) or .parquet file (needs pyarrow)")
    t.add_argument("--target", help="the target: a column name (csv/parquet; default the last column), an array "
                                    "name (npz) or a column index (npy; default -1)")
    t.add_argument("--features", type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
                   help="comma-separated feature columns (csv/parquet; default every column but the target)")
    t.add_argument("--model", choices=("linear", "mlp"), help="default linear; mlp when --hidden is given")
    t.add_argument("--hidden", type=_hidden, help="hidden layer sizes, e.g. 32,32")
    t.add_argument("--activation", choices=("relu", "tanh", "sigmoid", "identity"))
    t.add_argument("--loss", choices=("mse", "huber", "mae"))
    t.add_argument("--delta", type=_float, help="the Huber loss' delta")
    t.add_argument("--optimizer", choices=optim.NAMES)
    t.add_argument("--lr", type=_float, help="learning rate")
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument("--batch-size", type=_batch_size, default=argparse.SUPPRESS,
                   help="rows per step, or 'full' (default)")
    t.add_argument("--no-shuffle", action="store_true", help="batches in row order")
    t.add_argument("--seed", type=_positive_int)
    t.add_argument("--standardize", choices=("zscore", "minmax", "robust", "none"))
    t.add_argument("--validation", type=_float, help="fraction of rows held out for validation, e.g. 0.2")
    t.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE")
    t.add_argument("--trace", nargs="?", const="full", choices=("full", "norms", "off"),
                   help="record every step (--trace), only its loss and norms (--trace norms, the default) or "
                        "nothing (--trace off)")
    t.add_argument("--dtype", choices=("float64", "float32"))
    t.add_argument("--opt", type=_opt, action="append", metavar="KEY=VALUE",
                   help="any other train() argument, e.g. --opt momentum=0.9 --opt clip_grad_norm=1 "
                        "--opt winsorize=0.01,0.99 (repeatable)")
    t.add_argument("--save", metavar="PATH", help="write the run (minireg.load reads it back)")
    t.add_argument("--resume", metavar="RUN", help="continue a saved run (its settings, unless given again) for "
                   "--epochs more epochs, exactly as if it had not stopped")
    t.add_argument("--checkpoint", metavar="PATH", help="write the run so far to PATH (atomically) as it trains, "
                   "and at the end; --resume PATH continues it after a crash")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="EPOCHS",
                   help="epochs between checkpoints (default: every epoch, at most 4%% of the training time)")
    t.add_argument("--report", metavar="HTML", help="also write an HTML report of the run")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--progress", action="store_true", help="a progress bar even for short runs")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("diagnose", help="print the findings of a saved run")
    d.add_argument("run", help="a file written by --save / result.save")
    d.add_argument("--fresh", action="store_true",
                   help="diagnose again from the saved history and trace even when findings were saved")
    d.add_argument("--json", action="store_true", help="print the findings as JSON")
    d.set_defaults(func=cmd_diagnose)

    r = sub.add_parser("report", help="write a self-contained HTML report of a saved run")
    r.add_argument("run", help="a file written by --save / result.save")
    r.add_argument("-o", "--output", metavar="HTML", help="default: the run's path with .html")
    r.set_defaults(func=cmd_report)

    m = sub.add_parser("demo", help="train a seed failure case and its fix")
    m.add_argument("case", nargs="?", help="a case of minireg.datasets.CASES, or 'all' (default: the lr-too-high "
                                           "demo and the list of cases)")
    m.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="a quick CPU speed comparison with a plain NumPy loop (~10 s)")
    b.add_argument("--quick", action="store_true", help="shorter measurements (~2 s), noisier")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args) or 0
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except (CLIError, ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if isinstance(exc, OSError) and exc.filename is not None:
            msg = f"{exc.strerror or 'cannot open'}: {exc.filename}"
        else:
            msg = _one_line(exc) or type(exc).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
