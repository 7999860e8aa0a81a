"""Saved runs: result.save(path) / minireg.load(path) — exact round trips, atomic writes, and a clear
ValueError (never a wrong result) for truncated, corrupt, foreign or newer files."""
import json
import math
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import linear_data

import minireg
from minireg import io as mio
from minireg.trace import Trace

NOT_A_RUN = r"is not a (complete )?minireg run"


def _xy(n=60, d=3, seed=0):
    """Features on different scales, all around 5."""
    return linear_data(n, d, seed, w=[1.0, -0.2, 3.0], x_scale=np.array([1.0, 10.0, 0.1])[:d], x_shift=5.0)


RUNS = {
    "linear-untraced": dict(),
    "linear-traced-scaled": dict(trace=True, standardize=True, standardize_y=True, winsorize=(0.05, 0.95),
                                 winsorize_y=True, optimizer="sgd", momentum=0.9, lr=0.05),
    "mlp-traced-val-es": dict(model="mlp", hidden=(5, 3), activation="tanh", optimizer="adam", amsgrad=True,
                              lr=0.05, epochs=80, batch_size=16, trace=True, standardize="robust",
                              standardize_y=True, validation=0.25, early_stopping=3, min_delta=1e-3),
    "mlp-untraced-given-val": dict(model="mlp", hidden=4, optimizer="rmsprop", centered=True, momentum=0.5,
                                   lr=0.01, epochs=30, standardize="minmax", schedule="plateau", patience=2,
                                   validation="given"),
    "mlp-norms-float32": dict(model="mlp", hidden=(6,), dtype="float32", trace="norms", trace_every=3,
                              optimizer="adamw", batch_size=20, clip_grad_norm=0.5, epochs=20),
    "linear-diverged": dict(optimizer="sgd", lr=1e4, trace=True, epochs=50),
}


def _train(name):
    X, y = _xy()
    kw = dict(RUNS[name])
    if kw.get("validation") == "given":
        kw["validation"] = _xy(n=20, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        return minireg.train(X, y, **kw), X


def _same_array(a, b):
    assert type(a) is type(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b, strict=True)


def _same_value(a, b):
    """Exact equality of nested config/findings values (NaN equals NaN, tuples stay tuples)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same_value(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, z in zip(a, b, strict=True):
            _same_value(x, z)
    elif isinstance(a, np.ndarray):
        _same_array(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def _same_scaler(s, t):
    assert s.kind == t.kind and s.constant == t.constant
    for u, v in [(s.center, t.center), (s.scale, t.scale)] + (list(zip(s.clip, t.clip, strict=True)) if s.clip else []):
        assert type(u) is type(v)
        np.testing.assert_array_equal(u, v, strict=True)
    assert (s.clip is None) == (t.clip is None)


def _same_trace(a, b):
    if a is None:
        assert b is None
        return
    assert isinstance(b, Trace)
    assert (a.mode, a.every, len(a), repr(a)) == (b.mode, b.every, len(b), repr(b))
    for col in ("step", "epoch", "loss", "lr", "grad_norm", "update_norm", "param_norm", "clipped"):
        _same_array(getattr(a, col), getattr(b, col))
    for block in ("params", "grad", "update"):
        if getattr(a, block) is None:
            assert getattr(b, block) is None
        else:
            _same_array(getattr(a, block), getattr(b, block))
    assert list(a.state) == list(b.state)
    for k in a.state:
        _same_array(a.state[k], b.state[k])
    steps = np.asarray(a.step)
    for i in {int(steps[0]), int(steps[len(steps) // 2]), int(steps[-1])}:
        sa, sb = a.step(i), b.step(i)
        assert sa.keys() == sb.keys()
        for k in sa:
            _same_value(sa[k], sb[k])


def _same_result(r, loaded, X):
    _same_array(r.theta, loaded.theta)
    assert loaded.layout.sizes == r.layout.sizes and loaded.layout.names == r.layout.names
    assert list(loaded.params) == list(r.params)
    for k in r.params:
        _same_array(r.params[k], loaded.params[k])
    _same_value(r.config, loaded.config)
    assert list(loaded.history) == list(r.history)
    for k in r.history:
        _same_array(r.history[k], loaded.history[k])
    _same_trace(r.trace, loaded.trace)
    _same_scaler(r.x_scaler, loaded.x_scaler)
    _same_scaler(r.y_scaler, loaded.y_scaler)
    for attr in ("diverged", "diverged_at", "n_steps", "seconds", "setup_seconds", "compile_seconds", "stopped_epoch",
                 "best_epoch"):
        assert getattr(loaded, attr) == getattr(r, attr) and type(getattr(loaded, attr)) is type(getattr(r, attr)), attr
    assert repr(loaded) == repr(r)
    _same_array(r.predict(X), loaded.predict(X))
    Xnew = np.random.default_rng(7).normal(size=(9, X.shape[1])) * 20
    _same_array(r.predict(Xnew), loaded.predict(Xnew))
    # the data: a seeded sample of the training rows as trained on (all of them up to 2000 rows)
    n = r.data[0].shape[0]
    assert loaded.saved_sample == {"rows": min(n, 2000), "of": n} and loaded.inputs is None
    if n <= 2000:
        _same_array(r.data[0], loaded.data[0])
        _same_array(r.data[1], loaded.data[1])
    if r.config["model"] == "linear":
        Xt = np.column_stack([np.asarray(r.data[0], np.float64), np.ones(n)])
        np.testing.assert_allclose(loaded.gram, Xt.T @ Xt / n, rtol=1e-12)


@pytest.mark.parametrize("name", list(RUNS))
def test_round_trip_is_exact(tmp_path, name):
    r, X = _train(name)
    path = tmp_path / "run.npz"
    assert r.save(path) == str(path)
    loaded = minireg.load(path)
    assert loaded.findings == []
    _same_result(r, loaded, X)
    # what the variants are meant to cover really happened
    if name == "mlp-traced-val-es":
        assert r.stopped_epoch is not None and r.best_epoch is not None and "val_loss" in r.history
        assert list(r.trace.state) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    if name == "linear-diverged":
        assert r.diverged and loaded.diverged and r.diverged_at == loaded.diverged_at
    # a loaded run saves and loads again to the same thing
    loaded.save(tmp_path / "again.npz")
    _same_result(r, minireg.load(tmp_path / "again.npz"), X)


def test_findings_slot_round_trips(tmp_path):
    r, X = _train("linear-untraced")
    r.findings = [{"kind": "lr_too_high", "step": 3, "evidence": (1.5, float("nan"), float("-inf")),
                   "hint": "lower lr", "ratio": np.float32(0.25), "steps": np.array([1, 2, 3])}]
    r.save(tmp_path / "f.npz")
    loaded = minireg.load(tmp_path / "f.npz")
    _same_value(r.findings, loaded.findings)
    meta = _meta(tmp_path / "f.npz")
    json.dumps(meta, allow_nan=False)  # strict JSON
    assert meta["format"] == "minireg-run" and meta["version"] == 1
    from minireg.diagnose import Finding
    finding = Finding("nonfinite", "error", "the loss became NaN at step 4.", 4,
                      {"loss": np.float64(np.inf), "rows": np.array([1, 2])}, {"lr": 0.1})
    r.findings = [finding]
    r.save(tmp_path / "f.npz")
    back = minireg.load(tmp_path / "f.npz").findings
    assert back == [Finding("nonfinite", "error", "the loss became NaN at step 4.", 4,
                            {"loss": math.inf, "rows": [1, 2]}, {"lr": 0.1})]
    r.findings = [object()]
    with pytest.raises(TypeError, match=r"findings\[0\]"):
        r.save(tmp_path / "g.npz")
    assert not (tmp_path / "g.npz").exists() and os.listdir(tmp_path) == ["f.npz"]


def test_any_file_name_and_pathlike(tmp_path):
    r, X = _train("linear-untraced")
    path = tmp_path / "sub dir" / "my run.minireg"
    path.parent.mkdir()
    assert mio.save(r, path) == str(path)
    assert sorted(os.listdir(path.parent)) == ["my run.minireg"]
    _same_result(r, minireg.load(str(path)), X)


# ---------------------------------------------------------------------------------------------- atomic


def test_save_replaces_an_existing_file_and_leaves_no_temp_files(tmp_path):
    a, X = _train("linear-untraced")
    b, _ = _train("mlp-traced-val-es")
    path = tmp_path / "run.npz"
    a.save(path)
    b.save(path)
    assert os.listdir(tmp_path) == ["run.npz"]
    _same_result(b, minireg.load(path), X)


@pytest.mark.parametrize("where", ["write_array", "fsync", "replace", "interrupt"])
def test_failed_save_keeps_the_old_file_intact(tmp_path, monkeypatch, where):
    old, X = _train("linear-traced-scaled")
    new, _ = _train("mlp-traced-val-es")
    path = tmp_path / "run.npz"
    old.save(path)
    before = path.read_bytes()

    if where in ("write_array", "interrupt"):
        real = np.lib.format.write_array
        calls = []

        def write_array(fp, array, *args, **kwargs):  # dies in the middle of the archive
            calls.append(1)
            if len(calls) == 4:
                fp.write(b"half an array")
                raise (KeyboardInterrupt if where == "interrupt" else OSError(28, "No space left on device"))
            return real(fp, array, *args, **kwargs)

        monkeypatch.setattr(np.lib.format, "write_array", write_array)
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    else:
        monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(PermissionError(13, "denied")))

    with pytest.raises(KeyboardInterrupt if where == "interrupt" else OSError):
        new.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["run.npz"]  # no temp file left behind
    assert path.read_bytes() == before
    _same_result(old, minireg.load(path), X)
    # and a failed first save leaves nothing at all
    fresh = tmp_path / "fresh.npz"
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(5, "boom")))
    with pytest.raises(OSError):
        new.save(fresh)
    assert os.listdir(tmp_path) == ["run.npz"]


# ---------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        minireg.load(path)


def test_truncated_files_always_raise(tmp_path):
    r, X = _train("mlp-traced-val-es")
    full = tmp_path / "run.npz"
    r.save(full)
    data = full.read_bytes()
    n = len(data)
    offsets = sorted(set(range(100)) | {n * k // 50 for k in range(50)} | {n - 1, n - 2, n - 22, n - 23})
    cut = tmp_path / "cut.npz"
    for off in offsets:
        cut.write_bytes(data[:off])
        with pytest.raises(ValueError, match=NOT_A_RUN) as info:
            minireg.load(cut)
        assert "cut.npz" in str(info.value)
        if off >= 41:  # the first member's name is readable: it is recognisably a damaged minireg run
            assert "not a complete minireg run" in str(info.value)


def test_corrupt_bytes_raise_or_load_exactly(tmp_path):
    """Flip bytes all over the file: load either raises ValueError or (a field no check needs, such as
    a zip timestamp) returns exactly the original run; never a wrong result."""
    r, X = _train("mlp-traced-val-es")
    full = tmp_path / "run.npz"
    r.save(full)
    data = full.read_bytes()
    n = len(data)
    bad = tmp_path / "bad.npz"
    rng = np.random.default_rng(0)
    offsets = sorted(set(range(0, 64)) | {n * k // 120 for k in range(120)} | set(range(n - 200, n)))
    raised = 0
    for off in offsets:
        b = bytearray(data)
        b[off] ^= int(rng.integers(1, 256))
        bad.write_bytes(bytes(b))
        try:
            loaded = minireg.load(bad)
        except ValueError as exc:
            assert "bad.npz" in str(exc) and "minireg run" in str(exc)
            raised += 1
        else:
            _same_result(r, loaded, X)
    assert raised > len(offsets) // 2


def test_foreign_files(tmp_path):
    cases = {}
    (tmp_path / "notes.txt").write_text("just some text\n" * 10)
    cases["notes.txt"] = "not an .npz"
    (tmp_path / "empty.npz").write_bytes(b"")
    cases["empty.npz"] = "empty"
    np.savez(tmp_path / "other.npz", a=np.arange(3), minireg_not=np.ones(2))
    cases["other.npz"] = "without minireg metadata"
    np.save(tmp_path / "arr.npy", np.arange(10))
    cases["arr.npy"] = "not an .npz"
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    cases["plain.zip"] = "without minireg metadata"
    np.savez(tmp_path / "meta_not_bytes.npz", minireg=np.arange(4.0))
    cases["meta_not_bytes.npz"] = "not minireg metadata"
    np.savez(tmp_path / "meta_not_json.npz", minireg=np.frombuffer(b"{nope", np.uint8))
    cases["meta_not_json.npz"] = "JSONDecodeError"
    np.savez(tmp_path / "other_format.npz",
             minireg=np.frombuffer(json.dumps({"format": "other", "version": 1}).encode(), np.uint8))
    cases["other_format.npz"] = "not of format 'minireg-run'"
    for name, why in cases.items():
        with pytest.raises(ValueError, match=NOT_A_RUN) as info:
            minireg.load(tmp_path / name)
        assert name in str(info.value) and why in str(info.value), str(info.value)
    with pytest.raises((IsADirectoryError, PermissionError, ValueError)):
        minireg.load(tmp_path)


def _meta(path):
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z["minireg"].tobytes())


def _rewrite(path, edit_meta=None, edit_arrays=None, **save_kw):
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(members["minireg"].tobytes())
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(members)
    members["minireg"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **members, **save_kw)


def test_newer_version_asks_to_upgrade(tmp_path):
    r, _ = _train("linear-untraced")
    path = tmp_path / "future.npz"
    r.save(path)
    _rewrite(path, lambda m: m.update(version=2, written_by="minireg 9.0", theta_v2="whatever"))
    with pytest.raises(ValueError, match=r"written by a newer minireg") as info:
        minireg.load(path)
    msg = str(info.value)
    assert "future.npz" in msg and "version 2 > supported 1" in msg and "pgrade" in msg


def test_inconsistent_metadata_is_rejected(tmp_path):
    r, _ = _train("linear-traced-scaled")
    path = tmp_path / "run.npz"
    edits = [
        (lambda m: m.update(version=0), None),
        (lambda m: m.update(version="1"), None),
        (lambda m: m["arrays"].pop("theta"), None),
        (lambda m: m["arrays"]["theta"].update(shape=[5]), None),
        (lambda m: m.update(sizes=[7, 1]), None),
        (lambda m: m.update(history=["loss", "lr", "val_loss"]), None),
        (lambda m: m["trace"].update(state=["exp_avg"]), None),
        (lambda m: m["x_scaler"].update(kind="pca"), None),
        (None, lambda a: a.pop("trace.grad")),
        (None, lambda a: a.update(theta=a["theta"].astype(np.float32))),
    ]
    for meta_edit, array_edit in edits:
        r.save(path)
        _rewrite(path, meta_edit, array_edit)
        with pytest.raises(ValueError, match="is not a complete minireg run"):
            minireg.load(path)


def test_pickled_members_are_never_unpickled(tmp_path):
    r, _ = _train("linear-untraced")
    path = tmp_path / "run.npz"
    r.save(path)

    def swap(arrays):
        arrays["theta"] = np.array([{"evil": 1}, None], dtype=object)

    _rewrite(path, edit_arrays=swap, allow_pickle=True)
    with pytest.raises(ValueError, match="is not a complete minireg run"):
        minireg.load(path)


def test_format_is_documented_and_members_are_plain_npy(tmp_path):
    r, _ = _train("mlp-traced-val-es")
    path = tmp_path / "run.npz"
    r.save(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert names[0] == "minireg.npy"
    meta = _meta(path)
    assert set(meta["arrays"]) == {n[:-4] for n in names[1:]}
    with np.load(path, allow_pickle=False) as z:  # readable by plain numpy
        np.testing.assert_array_equal(z["theta"], r.theta)
        np.testing.assert_array_equal(z["trace.state.exp_avg"], r.trace.state["exp_avg"])
    for key in ("format", "version", "sizes", "dtype", "config", "history", "x_scaler", "trace", "findings"):
        assert key in meta and f"``{key}``" in mio.__doc__


def test_io_imports_neither_sklearn_nor_matplotlib():
    code = ("import sys, minireg, minireg.io; minireg.load; "
            "bad = [m for m in ('sklearn', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)
