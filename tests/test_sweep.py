"""minireg.sweep: grid validation before any run, the memory guard, the table, and results that
are bit-for-bit those of a sequential loop — locally (joblib) and on a real dask.distributed cluster."""
import io
import sys
import warnings

import numpy as np
import pytest

import minireg
from minireg import datasets

SWEEP = sys.modules["minireg.sweep"]  # the module (minireg.sweep is the function)
GRID = {"optimizer": ["sgd", "adam"], "lr": [0.05, 1000.0]}
FIXED = dict(epochs=15, batch_size=16, validation=0.25, trace="norms", seed=1)
NUMBERS = ("final_loss", "val_loss", "diverged", "diverged_at", "finding", "severity")


@pytest.fixture(scope="module")
def data():
    return datasets.linear_1d(n=80)


@pytest.fixture(scope="module")
def sequential(data):
    """The reference: a plain loop over minireg.train, in grid order."""
    X, y = data
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        for opt in GRID["optimizer"]:
            for lr in GRID["lr"]:
                r = minireg.train(X, y, optimizer=opt, lr=lr, **FIXED)
                r.diagnose()
                out.append(r)
    return out


@pytest.fixture(scope="module")
def local(data):
    return minireg.sweep(*data, grid=GRID, n_jobs=1, **FIXED)


def assert_same_runs(result, reference, findings=True):
    assert len(result) == len(reference)
    rows = result.records()
    for row, got, ref in zip(rows, result.results, reference, strict=True):
        h = got["history"] if isinstance(got, dict) else got.history
        assert set(h) == set(ref.history)
        for k in ref.history:
            assert h[k].dtype == ref.history[k].dtype
            assert h[k].tobytes() == ref.history[k].tobytes(), k  # bit for bit, NaN/inf included
        if not isinstance(got, dict):
            assert got.theta.tobytes() == ref.theta.tobytes()
            assert got.trace.loss.tobytes() == ref.trace.loss.tobytes()
            assert got.n_steps == ref.n_steps and got.diverged_at == ref.diverged_at
        assert np.array_equal([row["final_loss"]], [float(ref.history["loss"][-1])], equal_nan=True)
        assert np.array_equal([row["val_loss"]], [float(ref.history["val_loss"][-1])], equal_nan=True)
        assert row["diverged"] == ref.diverged
        assert (row["diverged_at"] if row["diverged"] else None) == ref.diverged_at
        if not findings:
            continue
        top = ref.findings[0] if ref.findings else None
        assert row["finding"] == (top.code if top else None) or (top is None and row["finding"] != row["finding"])
        if top:
            assert row["severity"] == top.severity


def test_table_rows_columns_and_order(local, sequential):
    table = local.table
    import pandas as pd
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["optimizer", "lr", *NUMBERS, "seconds"]
    assert list(zip(table["optimizer"], table["lr"], strict=True)) == [("sgd", 0.05), ("sgd", 1000.0),
                                                                       ("adam", 0.05), ("adam", 1000.0)]
    assert table["diverged"].tolist() == [r.diverged for r in sequential]
    assert table["diverged"].any() and not table["diverged"].all()  # the grid has both outcomes
    assert (table["seconds"] > 0).all()
    assert_same_runs(local, sequential)
    best = local.best()
    assert best is not None and not table["diverged"][best]
    assert local[best] is local.results[best]


def test_parallel_local_equals_sequential(data, sequential):
    s = minireg.sweep(*data, grid=GRID, n_jobs=2, **FIXED)
    assert_same_runs(s, sequential)


def test_keep_history_and_list_table_without_pandas(data, sequential, monkeypatch):
    monkeypatch.setattr(SWEEP, "_pandas", lambda: None)  # as if pandas were not installed
    s = minireg.sweep(*data, grid=GRID, n_jobs=1, keep="history", **FIXED)
    assert isinstance(s.table, list) and len(s.table) == 4 and isinstance(s.table[0], dict)
    assert set(s.table[0]) == {"optimizer", "lr", *NUMBERS, "seconds"}
    assert set(s.results[0]) == {"config", "history", "findings"}
    assert_same_runs(s, sequential)


def test_plot_panels_per_first_key(local):
    import matplotlib.pyplot as plt
    fig = local.plot(val=True)
    try:
        axes = fig.axes
        assert [ax.get_title() for ax in axes] == ["optimizer=sgd", "optimizer=adam"]
        assert all(len(ax.get_legend().get_texts()) == 2 for ax in axes)
        assert len(axes[0].lines) == 4  # 2 training + 2 validation curves
        assert "(diverged)" in axes[0].get_legend().get_texts()[1].get_text()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the diverged curve must not break the log axis' ticks
            fig.savefig(io.BytesIO(), format="png", dpi=30)
    finally:
        plt.close(fig)
    fig = local.plot("lr")
    try:
        assert [ax.get_title() for ax in fig.axes] == ["lr=0.05", "lr=1000.0"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="not a grid key"):
        local.plot("loss")


@pytest.mark.parametrize("grid, fixed, err, match", [
    ({"lrr": [0.1]}, {}, ValueError, "grid key 'lrr' is not a train\\(\\) argument. Did you mean 'lr'"),
    ({"optimiser": ["sgd"]}, {}, ValueError, "Did you mean 'optimizer'"),
    ({"lr": []}, {}, ValueError, "grid\\['lr'\\] is an empty list"),
    ({"lr": 0.1}, {}, TypeError, "must be a list of values"),
    ({"optimizer": "adam"}, {}, TypeError, "must be a list of values"),
    ({"hidden": (32, 32)}, {"model": "mlp"}, TypeError, "\\[\\(32,\\), \\(64, 64\\)\\]"),
    ({}, {}, ValueError, "grid is empty"),
    ([("lr", [0.1])], {}, TypeError, "grid must be a dict"),
    ({"lr": [0.1]}, {"lr": 0.2}, ValueError, "both in the grid and a fixed argument"),
    ({"lr": [0.1]}, {"epochz": 3}, ValueError, "fixed argument 'epochz'.*Did you mean 'epochs'"),
    ({"lr": [0.1]}, {"progress": True}, ValueError, "progress"),
    ({"optimizer": ["sgd", "adma"]}, {}, ValueError, "configuration .*Did you mean 'adam'"),
    ({"lr": [0.1, -1.0]}, {}, ValueError, "configuration .*lr must be a finite number"),
    ({"momentum": [0.9]}, {"optimizer": "adam"}, TypeError, "unexpected argument 'momentum'"),
])
def test_grid_is_validated_before_anything_runs(data, monkeypatch, grid, fixed, err, match):
    def never(*a, **k):
        raise AssertionError("a run started")
    monkeypatch.setattr(SWEEP, "_run_one", never)
    with pytest.raises(err, match=match):
        minireg.sweep(*data, grid=grid, n_jobs=1, **fixed)


def test_a_gpu_sweep_refuses_cpu_worker_settings_and_bad_values_before_anything_runs(data, monkeypatch):
    def never(*a, **k):
        raise AssertionError("a run started")
    monkeypatch.setattr(SWEEP, "_run_one", never)
    monkeypatch.setattr(SWEEP, "_run_on_gpu", never)
    with pytest.raises(ValueError, match="device='cuda'.*client="):
        minireg.sweep(*data, grid={"lr": [0.1]}, device="cuda", client=object())
    with pytest.raises(ValueError, match="n_jobs=2 sets CPU worker processes.*Leave n_jobs out"):
        minireg.sweep(*data, grid={"lr": [0.1]}, device="cuda", n_jobs=2)
    with pytest.raises(ValueError, match="sweep configuration .*lr must be a finite number"):
        minireg.sweep(*data, grid={"lr": [0.1, -1.0]}, device="cuda")
    with pytest.raises(ValueError, match="sweep configuration .*device='gpu' is not one of"):
        minireg.sweep(*data, grid={"device": ["cpu", "gpu"]})


def test_memory_budget(data, monkeypatch):
    monkeypatch.setattr(SWEEP, "_run_one", lambda *a, **k: pytest.fail("a run started"))
    X, y = data
    grid = {"lr": [0.01, 0.02, 0.03, 0.04]}
    # each run: 80 rows / batch 1 x 1000 epochs = 80k steps, full trace of 2 params: ~6 MiB
    with pytest.raises(ValueError, match="memory_budget=10 MiB.*trace='norms'.*keep='history'"):
        minireg.sweep(X, y, grid=grid, n_jobs=2, epochs=1000, batch_size=1, trace=True, memory_budget=10 * 2**20)
    from minireg import _validate
    per_run = SWEEP._run_bytes({"epochs": 1000, "batch_size": 1, "trace": True}, 80, 1,
                               _validate.optimizer_hparams("sgd", {}))[0]
    assert 80_000 * (16 + 6 * 8 + 3 * 2 * 8) <= per_run <= 80_001 * (16 + 6 * 8 + 3 * 2 * 8)
    monkeypatch.undo()
    # only the runs in flight hold a trace when only histories are kept
    s = minireg.sweep(X, y, grid={"lr": [0.01, 0.02]}, n_jobs=1, keep="history", epochs=1000, batch_size=1,
                      trace=True, memory_budget=10 * 2**20)
    assert len(s) == 2 and isinstance(s.results[0], dict)


def test_dask_distributed_cluster_equals_local(data, sequential, local):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster, get_task_stream
    # diagnose=False: the diagnosis in worker processes is checked by the joblib test above; here each
    # worker would spend ~3 s importing scikit-learn for it
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        with get_task_stream(client) as ts:
            s = minireg.sweep(*data, grid=GRID, client=client, diagnose=False, **FIXED)
    assert len(ts.data) >= 4 and {t["worker"] for t in ts.data}  # the runs went to the cluster's workers
    assert_same_runs(s, sequential, findings=False)
    for ra, rb in zip(s.records(), local.records(), strict=True):
        for k in ("final_loss", "val_loss", "diverged", "diverged_at"):
            assert ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]), k
        assert ra["finding"] is None and ra["severity"] is None


def test_without_diagnosis(data, sequential):
    s = minireg.sweep(*data, grid={"lr": [0.05]}, n_jobs=1, diagnose=False, optimizer="sgd", **FIXED)
    row = s.records()[0]
    assert row["finding"] is None and row["severity"] is None
    assert s.results[0].history["loss"].tobytes() == sequential[0].history["loss"].tobytes()
    with pytest.raises(TypeError, match="diagnose must be True or False"):
        minireg.sweep(*data, grid={"lr": [0.05]}, diagnose="yes")


def test_the_default_runs_a_small_grid_in_this_process(monkeypatch):
    import joblib
    started = []
    real = joblib.Parallel

    class Recording(real):
        def __init__(self, *a, **k):
            started.append(k.get("n_jobs"))
            super().__init__(*a, **k)
    monkeypatch.setattr(joblib, "Parallel", Recording)
    X, y = datasets.linear_1d()
    s = minireg.sweep(X, y, {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1]}, epochs=20)
    assert len(s) == 4 and started == []  # no worker processes for four runs of a few milliseconds
    s2 = minireg.sweep(X, y, {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1]}, epochs=20, n_jobs=1)
    assert s.records() == [{**r, "seconds": s.records()[i]["seconds"]} for i, r in enumerate(s2.records())]
