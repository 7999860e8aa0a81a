"""Saved runs: ``result.save(path)`` and ``minireg.load(path)``.

A saved run is everything a :class:`~minireg.TrainResult` holds except the full training data: the
parameters and layout, the resolved config, the per-epoch history, the trace (every array), the
fitted scalers, the run's bookkeeping (diverged, diverged_at, n_steps, seconds, stopped_epoch,
best_epoch) and its ``findings``. A loaded run predicts bit-for-bit what the original predicts, and
its trace, repr and params work as before. Of the training data it keeps a seeded sample of at most
``rows`` rows (default SAMPLE_ROWS; ``save(path, rows=0)`` keeps none) as trained on (scaled, in the
run's dtype), and for the linear model X̃ᵀX̃/n over all rows, so that a loaded run's diagnosis
and report can check the data and give the stability bound (exact for linear MSE); ``result.data``
is then that sample (None without one).

File format "minireg-run", version 1
------------------------------------
One uncompressed ``.npz`` archive (a zip of ``.npy`` files, as written by ``numpy.savez``; any
file name works, ``.npz`` is conventional). No member holds pickled objects, and ``load`` reads
with ``allow_pickle=False``. Members, in this order:

``minireg``
    The metadata: a 1-D uint8 array holding UTF-8 JSON. Always the first member, so a file
    can be recognised as a minireg run from its first bytes. Keys:

    - ``format``: ``"minireg-run"``; ``version``: 1 (an integer, raised on incompatible change);
      ``written_by``: e.g. ``"minireg 0.1.0"``.
    - ``sizes``: the layer sizes ``[d, h1, ..., 1]`` (the parameter layout, see minireg.layout);
      ``dtype``: ``"float64"`` or ``"float32"``.
    - ``diverged``, ``diverged_at``, ``n_steps``, ``seconds``, ``stopped_epoch``, ``best_epoch``,
      ``compile_seconds``, ``setup_seconds`` (optional).
    - ``config``: the run's resolved settings (``result.config``).
    - ``history``: the names of the history columns, in order.
    - ``x_scaler``, ``y_scaler``: ``{"kind": null|"zscore"|"minmax"|"robust", "constant": [column
      indices], "clipped": bool}``; their numbers are members (below).
    - ``trace``: null, or ``{"mode": "full"|"norms", "every": k, "state": [state names]}``.
    - ``interrupted``: whether Ctrl-C stopped the run (optional, false when absent).
    - ``sample``: null/absent, or ``{"rows": k, "of": n}``: the members ``sample.X`` (k, d) and
      ``sample.y`` (k,) hold k of the n training rows as trained on; ``gram`` (d+1, d+1), when present,
      is X̃ᵀX̃/n of all n rows with X̃ = [X, 1].
    - ``continuation``: null or absent (then the run cannot be resumed), or where the run stands,
      as minireg.resume.Continuation keeps it: ``{"t", "epoch", "offset", "rng_state" (the
      shuffling stream's numpy bit-generator state), "plateau": null|[lr, best, bad_epochs],
      "stopper": null|{"best", "best_epoch", "wait"}}``; its arrays are members (below).
    - ``findings``: a list (``result.findings`` when the run has it, else ``[]``); an item with a
      ``to_dict()`` method (a diagnosis ``Finding``) is stored as that dict and loaded back as a
      ``Finding``.
    - ``arrays``: a manifest ``{member: {"dtype": numpy dtype string, "shape": [...]}}`` of every
      other member (plus ``"scalar": true`` where the value was a numpy scalar, not an array).

    ``config`` and ``findings`` are JSON with four tagged forms for what plain JSON cannot hold
    exactly: ``{"__tuple__": [...]}``, ``{"__float__": "nan"|"inf"|"-inf"}``, ``{"__numpy__":
    dtype, "value": v}`` (a numpy scalar) and ``{"__ndarray__": dtype, "shape": [...], "data":
    [flat values]}``. The file holds strict JSON (no NaN/Infinity tokens).

``theta``
    The flat parameter vector (P,) in the run's dtype (names and shapes follow from ``sizes``).
``history.<name>``
    One 1-D array per history column (``loss``, ``lr``, ``val_loss``, ...).
``x_scaler.center``, ``x_scaler.scale`` (and ``x_scaler.clip_low``, ``x_scaler.clip_high`` when
``clipped``); the same for ``y_scaler``
    float64, one value per feature (0-d for the target).
``trace.step``, ``trace.epoch`` (int64), ``trace.loss``, ``trace.lr``, ``trace.grad_norm``,
``trace.update_norm``, ``trace.param_norm`` (run dtype), ``trace.clipped`` (bool)
    The trace's columns, one entry per recorded row (only when ``trace`` is not null).
``trace.params``, ``trace.grad``, ``trace.update``, ``trace.state.<name>``
    (rows, P) arrays, only for ``mode == "full"``.
``continuation.theta``, ``continuation.state``, ``continuation.history``, ``continuation.lr_history``
(and ``continuation.val_history``, ``continuation.perm``, ``continuation.best_theta`` when the run has them)
    What ``train(resume=...)`` starts from: the last step's parameters, the optimizer state (3, P),
    the history so far, the part-done epoch's row order, early stopping's best parameters.

Writing is atomic: the archive goes to a temporary file in the destination's directory, is
flushed and fsync'ed, and then renamed over the destination (``os.replace``), so ``path`` holds
either its old content or the complete new run, never a partial file.

Reading verifies the archive before building anything: the zip structure, the CRC-32 of every
member, the metadata, and the dtype and shape of every member against the manifest. A missing
file raises FileNotFoundError; a truncated, corrupt or foreign file raises ValueError ("... is not
a (complete) minireg run"); a file from a newer format version raises ValueError asking to upgrade.
"""
import errno
import io as _io
import json
import math
import os
import secrets
import zipfile

import numpy as np

from ._version import __version__
from .continuation import Continuation
from .controls import Scaler
from .findings import Finding
from .layout import Layout
from .result import TrainResult, implements
from .trace import Trace

FORMAT = "minireg-run"
FORMAT_VERSION = 1
_META = "minireg"
_TRACE_COLUMNS = ("loss", "lr", "grad_norm", "update_norm", "param_norm", "clipped")  # Trace's scalar table order
_TRACE_BLOCKS = ("params", "grad", "update")
_TAGS = ("__tuple__", "__float__", "__numpy__", "__ndarray__")
_ZIP_MAGIC = b"PK\x03\x04"


# --------------------------------------------------------------------------------------------------
# JSON with exact round trips for tuples, non-finite floats and numpy values


def _encode(v, where):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.generic):
        if v.dtype.kind not in "biuf" or v.dtype.itemsize > 8:
            raise TypeError(f"cannot save {where}: numpy {v.dtype} value {v!r} has no exact JSON form")
        return {"__numpy__": v.dtype.str, "value": _encode(v.item(), where)}
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v) if math.isfinite(v) else {"__float__": repr(float(v))}
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf" or v.dtype.itemsize > 8:
            raise TypeError(f"cannot save {where}: an array of dtype {v.dtype} has no exact JSON form")
        return {"__ndarray__": v.dtype.str, "shape": list(v.shape),
                "data": [_encode(x, where) for x in v.ravel().tolist()]}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x, f"{where}[{i}]") for i, x in enumerate(v)]}
    if isinstance(v, list):
        return [_encode(x, f"{where}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str) or k in _TAGS:
                raise TypeError(f"cannot save {where}: key {k!r} (keys must be strings, not {_TAGS})")
            out[k] = _encode(x, f"{where}[{k!r}]")
        return out
    to_dict = getattr(v, "to_dict", None)
    if callable(to_dict):  # e.g. a diagnosis Finding: saved (and loaded back) as its dict
        return _encode(to_dict(), where)
    raise TypeError(f"cannot save {where}: {type(v).__name__} {v!r} is not JSON-serializable")


def _decode(v):
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "__tuple__" in v:
        return tuple(_decode(x) for x in v["__tuple__"])
    if "__float__" in v:
        if v["__float__"] not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad tagged float {v!r}")
        return float(v["__float__"])
    if "__numpy__" in v:
        return np.dtype(v["__numpy__"]).type(_decode(v["value"]))
    if "__ndarray__" in v:
        data = [_decode(x) for x in v["data"]]
        return np.array(data, dtype=np.dtype(v["__ndarray__"])).reshape(v["shape"])
    return {k: _decode(x) for k, x in v.items()}


# --------------------------------------------------------------------------------------------------
# save


SAMPLE_ROWS = 2000


def _pack(result, rows=SAMPLE_ROWS):
    """(members in file order, metadata) for a TrainResult; raises before anything is written."""

    arrays, manifest = {}, {}

    def put(name, value):
        a = np.asarray(value)
        if type(a) is not np.ndarray:
            a = a.view(np.ndarray)  # e.g. the trace's step column
        if a.dtype.hasobject:
            raise TypeError(f"cannot save {name}: object arrays are not part of the format")
        arrays[name] = a
        manifest[name] = {"dtype": a.dtype.str, "shape": list(a.shape)}
        if isinstance(value, np.generic):
            manifest[name]["scalar"] = True

    put("theta", result.theta)
    for key, col in result.history.items():
        put(f"history.{key}", col)
    scalers = {}
    for which in ("x_scaler", "y_scaler"):
        s = getattr(result, which)
        put(f"{which}.center", s.center)
        put(f"{which}.scale", s.scale)
        if s.clip is not None:
            put(f"{which}.clip_low", s.clip[0])
            put(f"{which}.clip_high", s.clip[1])
        scalers[which] = {"kind": s.kind, "constant": [int(c) for c in s.constant],
                          "clipped": s.clip is not None}
    tr = result.trace
    trace_meta = None
    if tr is not None:
        trace_meta = {"mode": tr.mode, "every": int(tr.every), "state": list(tr.state)}
        put("trace.step", tr.step)
        put("trace.epoch", tr.epoch)
        for col in _TRACE_COLUMNS:
            put(f"trace.{col}", getattr(tr, col))
        if tr.mode == "full":
            for block in _TRACE_BLOCKS:
                put(f"trace.{block}", getattr(tr, block))
            for name, block in tr.state.items():
                put(f"trace.state.{name}", block)

    sample = None
    data = result.data
    if rows and data is not None and np.asarray(data[0]).shape[0]:
        Xa, ya = np.asarray(data[0]), np.asarray(data[1])
        n = Xa.shape[0]
        pick = np.arange(n) if n <= rows else np.sort(np.random.default_rng(0).choice(n, rows, replace=False))
        put("sample.X", np.ascontiguousarray(Xa[pick]))
        put("sample.y", np.ascontiguousarray(ya[pick]))
        sample = {"rows": int(pick.size), "of": int(n)}
        if result.config.get("model") == "linear":
            Xt = np.column_stack([np.asarray(Xa, np.float64), np.ones(n)])
            put("gram", Xt.T @ Xt / n)
    elif getattr(result, "saved_sample", None) is not None and data is not None:  # a loaded run saved again
        put("sample.X", np.asarray(data[0]))
        put("sample.y", np.asarray(data[1]))
        sample = dict(result.saved_sample)
        if getattr(result, "gram", None) is not None:
            put("gram", result.gram)
    cont = getattr(result, "continuation", None)
    if cont is not None:
        for name, value in cont.arrays().items():
            put(f"continuation.{name}", value)

    def opt_int(v):
        return None if v is None else int(v)

    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "written_by": f"minireg {__version__}",
        "sizes": [int(s) for s in result.layout.sizes], "dtype": np.dtype(result.theta.dtype).name,
        "diverged": bool(result.diverged), "diverged_at": opt_int(result.diverged_at),
        "n_steps": int(result.n_steps), "seconds": float(result.seconds),
        "compile_seconds": float(getattr(result, "compile_seconds", 0.0)),
        "setup_seconds": float(getattr(result, "setup_seconds", 0.0)),
        "stopped_epoch": opt_int(result.stopped_epoch), "best_epoch": opt_int(result.best_epoch),
        "config": _encode(result.config, "config"),
        "history": list(result.history),
        **scalers,
        "trace": trace_meta,
        "findings": _encode(getattr(result, "findings", None) or [], "findings"),
        "interrupted": bool(getattr(result, "interrupted", False)),
        "sample": sample,
        "continuation": None if cont is None else _encode(cont.meta(), "continuation"),
        "arrays": manifest,
    }
    text = json.dumps(meta, allow_nan=False, separators=(",", ":"))
    members = {_META: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    members.update(arrays)
    return members


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows, where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@implements("save")
def save(result, path, rows=SAMPLE_ROWS):
    """Write ``result`` to ``path`` atomically in the minireg-run format; returns ``path``.

    An existing file at ``path`` is replaced only once the new one is completely on disk. ``rows``:
    how many training rows (a seeded sample) to keep for the loaded run's diagnosis and bound; 0
    keeps none.
    """
    path = os.fspath(path)
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
        raise ValueError(f"rows must be a whole number >= 0 (0 keeps no training rows), got {rows!r}.")
    members = _pack(result, int(rows))
    directory = os.path.dirname(os.path.abspath(path))
    # a hidden sibling, so that os.replace stays within one file system (and so is atomic)
    tmp = os.path.join(directory, f".{os.path.basename(path)[:200]}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **members)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)
    return path


# --------------------------------------------------------------------------------------------------
# load


class _Broken(Exception):
    """Internal: the file is not a (complete) minireg run; the reason is the message."""


def _first_member_name(head):
    """The name of the first zip member, from its local file header (None if unreadable)."""
    if len(head) < 30 or not head.startswith(_ZIP_MAGIC):
        return None
    n = int.from_bytes(head[26:28], "little")
    if len(head) < 30 + n:
        return None
    return head[30:30 + n].decode("utf-8", "replace")


def _need(cond, reason):
    if not cond:
        raise _Broken(reason)


def _is_int(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


class _Foreign(_Broken):
    """Internal: readable, but plainly something else than a minireg run."""


class _Incomplete(_Broken):
    """The metadata says minireg run, but the rest does not hold up."""


class _NewerVersion(Exception):
    """Internal: the file is a minireg run of a newer format version; the message is the error."""


def load(path):
    """Read a run written by :meth:`TrainResult.save` and return it as a TrainResult.

    Raises FileNotFoundError if ``path`` does not exist, and ValueError if the file is not a
    complete minireg run (truncated, corrupt or foreign) or was written by a newer minireg.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "minireg.load: no such file", path)
    with open(path, "rb") as fh:
        head = fh.read(256)
        fh.seek(0)
        ours = _first_member_name(head) == _META + ".npy"
        try:
            if not head:
                raise _Broken("the file is empty")
            if not head.startswith(_ZIP_MAGIC):
                raise _Broken("it is not an .npz (zip) archive")
            return _read(fh, path)
        except _NewerVersion as exc:
            raise ValueError(str(exc)) from None
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except Exception as exc:  # zip, npy, JSON and consistency errors alike: the file is unusable
            reason = str(exc) if isinstance(exc, _Broken) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, _Incomplete) or (ours and not isinstance(exc, _Foreign)):
                msg = (f"{path!r} is not a complete minireg run: the file is truncated or corrupt "
                       f"({reason}). Save the run again.")
            else:
                msg = f"{path!r} is not a minireg run ({reason})."
            raise ValueError(msg) from (None if isinstance(exc, _Broken) else exc)


def _read(fh, path):
    zf = zipfile.ZipFile(fh)
    names = zf.namelist()
    _need(_META + ".npy" in names,
          f"an .npz archive without minireg metadata; it holds {', '.join(names[:8]) or 'nothing'}")
    meta_array = np.lib.format.read_array(_io.BytesIO(zf.read(_META + ".npy")), allow_pickle=False)
    _need(meta_array.dtype == np.uint8 and meta_array.ndim == 1, "its 'minireg' member is not minireg metadata")
    meta = json.loads(meta_array.tobytes().decode("utf-8"))
    if not (isinstance(meta, dict) and meta.get("format") == FORMAT):
        raise _Foreign(f"its metadata is not of format {FORMAT!r}")
    # from here on the file says it is a minireg run: any failure means it is incomplete or corrupt
    version = meta.get("version")
    if not _is_int(version, 1):
        raise _Incomplete(f"format version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise _NewerVersion(
            f"{path!r} was written by a newer minireg ({meta.get('written_by', 'unknown version')}): "
            f"its format version {version} > supported {FORMAT_VERSION}. Upgrade minireg to load it.")
    try:
        bad = zf.testzip()
        if bad is not None:
            raise _Incomplete(f"member {bad!r} fails its CRC-32 check")
        return _build(fh, meta)
    except _Broken as exc:
        raise _Incomplete(str(exc)) from None
    except Exception as exc:
        raise _Incomplete(f"{type(exc).__name__}: {exc}") from exc


def _build(fh, meta):
    manifest = meta["arrays"]
    _need(isinstance(manifest, dict), "bad manifest")
    fh.seek(0)
    with np.load(fh, allow_pickle=False) as npz:
        present = set(npz.files)

        def get(name):
            _need(name in manifest and name in present, f"member {name!r} is missing")
            a = npz[name]
            want = manifest[name]
            _need(a.dtype.str == want["dtype"] and list(a.shape) == want["shape"],
                  f"member {name!r} is {a.dtype.str}{list(a.shape)}, the manifest says "
                  f"{want['dtype']}{want['shape']}")
            return a[()] if want.get("scalar") else a

        sizes = meta["sizes"]
        _need(isinstance(sizes, list) and len(sizes) >= 2 and all(_is_int(s, 1) for s in sizes) and sizes[-1] == 1,
              f"bad layer sizes {sizes!r}")
        layout = Layout(sizes)
        dtype = np.dtype(meta["dtype"])
        _need(dtype in (np.float64, np.float32), f"bad dtype {meta['dtype']!r}")
        theta = get("theta")
        _need(theta.shape == (layout.size,) and theta.dtype == dtype, "theta does not match the layout")
        history = {key: get(f"history.{key}") for key in meta["history"]}
        _need(all(h.ndim == 1 for h in history.values()), "bad history")

        scalers = {}
        for which in ("x_scaler", "y_scaler"):
            m = meta[which]
            clip = (get(f"{which}.clip_low"), get(f"{which}.clip_high")) if m["clipped"] else None
            _need(m["kind"] in (None, "zscore", "minmax", "robust"), f"bad {which} kind {m['kind']!r}")
            scalers[which] = Scaler(m["kind"], get(f"{which}.center"), get(f"{which}.scale"),
                                    [int(c) for c in m["constant"]], clip)

        trace = None
        tm = meta["trace"]
        if tm is not None:
            _need(tm["mode"] in ("full", "norms") and _is_int(tm["every"], 1), "bad trace metadata")
            step, epoch = get("trace.step"), get("trace.epoch")
            cols = [get(f"trace.{c}") for c in _TRACE_COLUMNS]
            rows = step.shape[0]
            _need(step.ndim == 1 and step.dtype == np.int64 and epoch.shape == (rows,)
                  and all(c.shape == (rows,) for c in cols), "trace columns of different lengths")
            index = np.empty((rows, 2), np.int64)
            index[:, 0], index[:, 1] = step, epoch
            scalars = np.empty((rows, len(_TRACE_COLUMNS)), dtype)
            for j, c in enumerate(cols):
                scalars[:, j] = c
            full = tm["mode"] == "full"
            blocks = {b: get(f"trace.{b}") for b in _TRACE_BLOCKS} if full else dict.fromkeys(_TRACE_BLOCKS)
            state = {name: get(f"trace.state.{name}") for name in tm["state"]} if full else {}
            _need(all(v.shape == (rows, layout.size) for v in (*blocks.values(), *state.values()) if v is not None),
                  "trace blocks do not match the layout")
            trace = Trace(layout, True if full else "norms", tm["every"], index, scalars,
                          blocks["params"], blocks["grad"], blocks["update"], state)

        sample_meta = meta.get("sample")
        sample_X = sample_y = gram = None
        if sample_meta is not None:
            sample_X, sample_y = get("sample.X"), get("sample.y")
            _need(sample_X.ndim == 2 and sample_X.shape[1] == sizes[0] and sample_y.shape == (sample_X.shape[0],),
                  "bad data sample")
            gram = get("gram") if "gram" in manifest else None
        cont = None
        if meta.get("continuation") is not None:
            names = [m[len("continuation."):] for m in manifest if m.startswith("continuation.")]
            arrays = {name: get(f"continuation.{name}") for name in names}
            _need({"theta", "state", "history", "lr_history"} <= set(arrays)
                  and arrays["theta"].shape == (layout.size,) and arrays["state"].ndim == 2
                  and arrays["state"].shape[1] == layout.size,
                  "bad continuation arrays")
            cont = Continuation.from_saved(_decode(meta["continuation"]), arrays)

    for key in ("n_steps",):
        _need(_is_int(meta[key]), f"bad {key}")
    for key in ("diverged_at", "stopped_epoch", "best_epoch"):
        _need(meta[key] is None or _is_int(meta[key]), f"bad {key}")
    config = _decode(meta["config"])
    _need(isinstance(config, dict), "bad config")
    findings = [Finding.from_dict(f) if isinstance(f, dict) and "code" in f else f
                for f in _decode(meta["findings"])]
    result = TrainResult(
        layout=layout, theta=theta, config=config, history=history, trace=trace,
        diverged=bool(meta["diverged"]), diverged_at=meta["diverged_at"], n_steps=meta["n_steps"],
        seconds=float(meta["seconds"]), x_scaler=scalers["x_scaler"], y_scaler=scalers["y_scaler"],
        stopped_epoch=meta["stopped_epoch"], best_epoch=meta["best_epoch"])
    result.findings = findings
    result.interrupted = bool(meta.get("interrupted", False))
    if sample_meta is not None:
        result.data = (sample_X, sample_y, sample_X[:0], sample_y[:0])
        result.saved_sample = sample_meta
        result.gram = gram
    result.compile_seconds = float(meta.get("compile_seconds", 0.0))
    result.setup_seconds = float(meta.get("setup_seconds", 0.0))
    result.continuation = cont
    return result
