"""The command line (minireg/cli.py): train on csv/npz/npy, save → diagnose → report, demo, bench,
and every error path (one ``minireg: error:`` line on stderr, exit status 2, no traceback)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import linear_data

import minireg
from minireg import cli, datasets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The same 3-feature data set as .csv, .npz and .npy (target last), plus a few broken files."""
    d = tmp_path_factory.mktemp("cli")
    X, y = linear_data(120, 3, seed=0, w=[1.0, 2.0, -1.0], intercept=0.5)
    lines = ["a,b,c,y"] + [",".join(repr(float(v)) for v in (*row, t)) for row, t in zip(X, y, strict=True)]
    (d / "data.csv").write_text("\n".join(lines) + "\n")
    np.savez(d / "data.npz", X=X, y=y)
    np.savez(d / "named.npz", features=X, target=y)
    np.save(d / "data.npy", np.column_stack([X, y]))
    np.save(d / "first.npy", np.column_stack([y, X]))
    (d / "text.csv").write_text("a,city,y\n1,Paris,2\n2,Rome,3\n3,Oslo,4\n")
    (d / "missing.csv").write_text("a,b,y\n1,2,3\n4,,6\n7,8,9\n")
    (d / "data.txt").write_text("1 2 3\n")
    (d / "not_a_run.minireg").write_bytes(b"hello, I am not a run")
    return d, X, y


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("minireg: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


FAST = ["--epochs", "20", "--batch-size", "32", "--lr", "0.05", "--no-progress"]


def test_train_csv_prints_summary_and_diagnosis(data, capsys):
    d, X, y = data
    code, out, err = run(capsys, "train", d / "data.csv", "--target", "y", *FAST, "--validation", "0.2")
    assert code == 0, err
    for label in ("data", "model", "loss", "optimizer", "epochs", "final loss", "val loss", "diverged", "time"):
        assert f"  {label} " in out, label
    assert "120 rows x 3 feature(s) (a, b, c), target 'y'" in out
    assert "Diagnosis" in out
    expected = minireg.train(X, y, epochs=20, batch_size=32, lr=0.05, validation=0.2)
    assert f"{expected.history['loss'][-1]:.6g}" in out


def test_train_numpy_csv_reader_matches_pandas(data, capsys, monkeypatch):
    d, X, y = data
    with_pandas = cli._csv_columns(str(d / "data.csv"))
    monkeypatch.setattr(cli, "_pandas", lambda: None)  # as if pandas were not installed
    without = cli._csv_columns(str(d / "data.csv"))
    assert list(with_pandas) == list(without) == ["a", "b", "c", "y"]
    for k in with_pandas:
        np.testing.assert_array_equal(with_pandas[k], without[k])
    np.testing.assert_array_equal(without["y"], y)
    code, out, err = run(capsys, "train", d / "data.csv", *FAST)  # default target: the last column
    assert code == 0, err
    assert "target 'y'" in out
    code, _, err = run(capsys, "train", d / "text.csv", "--target", "y")
    assert_one_line_error(code, err, "'city'", "not numeric")


@pytest.mark.parametrize("name, extra", [("data.npz", []), ("named.npz", ["--target", "target"]),
                                         ("data.npy", []), ("first.npy", ["--target", "0"])])
def test_train_npz_and_npy(data, capsys, name, extra):
    d, X, y = data
    code, out, err = run(capsys, "train", d / name, *extra, *FAST, "--seed", "3")
    assert code == 0, err
    expected = minireg.train(X, y, epochs=20, batch_size=32, lr=0.05, seed=3)
    assert f"final loss   {expected.history['loss'][-1]:.6g}" in out


def test_train_mlp_flags_and_opt(data, capsys):
    d, X, y = data
    code, out, err = run(capsys, "train", d / "data.npz", "--hidden", "8,4", "--activation", "tanh", "--loss",
                         "huber", "--delta", "0.5", "--optimizer", "sgd", "--lr", "0.05", "--epochs", "5",
                         "--batch-size", "16", "--no-shuffle", "--standardize", "zscore", "--early-stopping", "3",
                         "--validation", "0.25", "--trace", "norms", "--dtype", "float32", "--opt", "momentum=0.9",
                         "--opt", "clip_grad_norm=1", "--no-progress")
    assert code == 0, err
    assert "mlp 3-8-4-1 tanh" in out and "float32" in out and "huber (delta 0.5)" in out
    assert "momentum 0.9" in out and "in row order" in out and "norms" in out


def test_progress_bar_when_asked(data, capsys):
    d, _, _ = data
    code, _, err = run(capsys, "train", d / "data.npz", "--epochs", "3", "--progress")
    assert code == 0
    assert "epoch" in err  # tqdm's bar on stderr


def test_save_diagnose_report(data, capsys, tmp_path, monkeypatch):
    X, y = datasets.linear_1d()
    np.savez(tmp_path / "line.npz", X=X, y=y)
    run_path, html_path = tmp_path / "run.minireg", tmp_path / "out.html"
    code, out, err = run(capsys, "train", tmp_path / "line.npz", "--optimizer", "sgd", "--lr", "10", "--epochs",
                         "50", "--batch-size", "32", "--trace", "--save", run_path, "--no-progress")
    assert code == 0, err
    assert "YES, at step" in out and "lr_too_high" in out and "nonfinite" in out
    assert run_path.exists() and "DivergenceWarning" not in err

    code, out, err = run(capsys, "diagnose", run_path)
    assert code == 0, err
    assert "saved with the run" in out and "lr_too_high" in out and "fix: train(..., lr=" in out and "verified:" in out

    code, out, err = run(capsys, "diagnose", run_path, "--fresh")
    assert code == 0 and "diagnosed from the saved history, trace and 100 of the 100 training rows" in out
    assert "nonfinite" in out

    code, out, err = run(capsys, "diagnose", run_path, "--json")
    import json
    assert code == 0 and {f["code"] for f in json.loads(out)} >= {"lr_too_high", "nonfinite"}

    code, out, err = run(capsys, "report", run_path, "-o", html_path)
    assert code == 0, err
    text = html_path.read_text()
    assert "lr_too_high" in text and "data:image/png;base64," in text
    monkeypatch.setattr(sys.modules["minireg.report"], "_result_plots", lambda result: [])  # ~2 s saved
    code, out, err = run(capsys, "report", run_path)  # default: next to the run
    assert code == 0 and (tmp_path / "run.html").exists()


def test_demo(capsys):
    code, out, _ = run(capsys, "demo", "high_lr")
    assert code == 0
    assert "== high_lr" in out and "lr_too_high" in out
    # the fix applied is the one printed with the finding, and it was verified
    import re
    printed = re.search(r"lr_too_high at step \d+: .*\n\s+fix: train\(\.\.\., (lr=[\d.e-]+)\)\n\s+verified: ", out)
    applied = re.search(r"applying the lr_too_high finding's fix, exactly: (.*)\n", out)
    assert printed and applied and printed.group(1) == applied.group(1), out
    assert "findings left: none" in out


def test_demo_default_keeps_the_readme_demo_and_lists_cases(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert out.startswith("Seed case: X ~ U(0,1), y = 2X + 1 + 0.1·noise, 100 rows")
    assert "DIVERGED at step" in out and "converged: W1 = " in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("More seed failure cases:") and all(name in last for name in datasets.CASES)


def test_bench_quick(capsys):
    code, out, _ = run(capsys, "bench", "--quick")
    assert code == 0
    assert "linear-full linear N=100 d=1 full-batch SGD" in out and "mlp64-batch32 MLP 10-64-64-1" in out
    assert "numpy/minireg" in out and "+trace" in out and "benchmarks/" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("linear-full"))
    numbers = [float(v) for v in row.split()[-4:-1]]
    assert all(v > 0 for v in numbers)


@pytest.mark.parametrize("argv, fragments", [
    (["train", "{d}/nope.csv"], ["no such file", "nope.csv"]),
    (["train", "{d}"], ["is a directory"]),
    (["train", "{d}/data.csv", "--target", "yy"], ["no column 'yy'", "did you mean 'y'"]),
    (["train", "{d}/data.csv", "--target", "Y"], ["did you mean 'y'"]),
    (["train", "{d}/data.csv", "--features", "a,bb"], ["no column 'bb'", "did you mean 'b'"]),
    (["train", "{d}/text.csv"], ["column 'city' is not numeric", "'Paris'"]),
    (["train", "{d}/missing.csv"], ["column 'b'", "missing"]),
    (["train", "{d}/data.csv", "--lr", "abc"], ["--lr", "expected a number, got 'abc'"]),
    (["train", "{d}/data.csv", "--lr", "-1"], ["lr must be a finite number"]),
    (["train", "{d}/data.csv", "--hidden", "3x"], ["--hidden", "layer sizes"]),
    (["train", "{d}/data.csv", "--batch-size", "0"], ["--batch-size"]),
    (["train", "{d}/data.csv", "--model", "mpl"], ["--model", "invalid choice"]),
    (["train", "{d}/data.csv", "--model", "linear", "--hidden", "4"], ["--hidden"]),
    (["train", "{d}/data.csv", "--validation", "1.5"], ["validation must be"]),
    (["train", "{d}/data.csv", "--opt", "momentum"], ["KEY=VALUE"]),
    (["train", "{d}/data.csv", "--optimizer", "adam", "--opt", "momentum=0.9"], ["unexpected argument 'momentum'"]),
    (["train", "{d}/data.csv", "--opt", "schedule=cosinus"], ["schedule='cosinus'", "Did you mean 'cosine'"]),
    (["train", "{d}/data.csv", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["train", "{d}/data.txt"], ["unknown file type '.txt'"]),
    (["train", "{d}/data.npz", "--target", "z"], ["no array 'z'"]),
    (["train", "{d}/named.npz"], ["expected arrays 'X' and 'y'"]),
    (["train", "{d}/data.npy", "--target", "y"], ["column index"]),
    (["train", "{d}/data.npy", "--target", "7"], ["out of range"]),
    (["train", "{d}/data.csv", "--save", "{d}/no/dir/run.minireg"], ["--save", "does not exist"]),
    (["train", "{d}/data.csv", "--report", "{d}"], ["--report", "is a directory"]),
    (["diagnose", "{d}/not_a_run.minireg"], ["is not a minireg run"]),
    (["diagnose", "{d}/none.minireg"], ["no such file"]),
    (["report", "{d}/not_a_run.minireg"], ["is not a minireg run"]),
    (["demo", "hi_lr"], ["unknown demo case 'hi_lr'", "did you mean 'high_lr'"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ([], ["required"]),
])
def test_errors_are_one_line_exit_2(data, capsys, argv, fragments):
    d, _, _ = data
    code, _, err = run(capsys, *[a.format(d=d) for a in argv])
    assert_one_line_error(code, err, *fragments)


def test_parquet(data, capsys, monkeypatch, tmp_path):
    d, X, y = data
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pa = None
    if pa is not None:
        pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}), tmp_path / "data.parquet")
        code, out, err = run(capsys, "train", tmp_path / "data.parquet", "--target", "y", *FAST)
        assert code == 0, err
        assert "120 rows x 3 feature(s) (a, b, c)" in out
    else:
        (tmp_path / "data.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, _, err = run(capsys, "train", tmp_path / "data.parquet")
    assert_one_line_error(code, err, "needs pyarrow", "pip install pyarrow")


def test_help_and_version(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "train" in out and "bench" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and minireg.__version__ in out


def test_python_dash_m_exit_code_and_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "minireg", "train", str(tmp_path / "missing.csv"), "--target", "y"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == f"minireg: error: no such file: {tmp_path / 'missing.csv'}"
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_demo_all_runs_every_case(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(datasets, "run_case", lambda name: seen.append(name))
    code, _, _ = run(capsys, "demo", "all")
    assert code == 0 and seen == list(datasets.CASES)


def test_bench_cuda_column_when_a_gpu_is_there(capsys, monkeypatch):
    # the table's layout with a GPU (measurements stubbed: no GPU is needed, and it is fast)
    monkeypatch.setattr(cli, "_cuda_available", lambda: (True, ""))
    monkeypatch.setattr(cli, "_measure", lambda run, *a: 2.0)
    code, out, _ = run(capsys, "bench", "--quick")
    assert code == 0
    header = next(line for line in out.splitlines() if "workload" in line)
    assert header.split()[-1] == "cuda" and "cuda: not measured" not in out
    w1 = next(line for line in out.splitlines() if line.strip().startswith("linear-full"))
    assert w1.split()[-5:] == ["2", "2", "2", "1.0x", "2"]


def test_bench_says_why_there_is_no_cuda(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_measure", lambda run, *a: 2.0)
    code, out, _ = run(capsys, "bench", "--quick")
    ok, why = cli._cuda_available()
    assert code == 0 and (ok or f"cuda: not measured: {why}." in out)


def test_a_printed_fix_pastes_onto_the_command_line(capsys, tmp_path):
    import re
    X, y = datasets.linear_1d()
    np.savez(tmp_path / "line.npz", X=X, y=y)
    code, out, err = run(capsys, "train", tmp_path / "line.npz", "--lr", "10", "--epochs", "50", "--no-progress")
    assert code == 0, err
    flags = re.search(r"on the command line: minireg train \.\.\. (.*)\n", out).group(1)
    assert flags.startswith("--lr ")
    code, out, err = run(capsys, "train", tmp_path / "line.npz", "--epochs", "50", "--no-progress", *flags.split())
    assert code == 0 and "no problems found" in out, out
    from minireg.cli import cli_flags
    assert cli_flags({"winsorize": (0.01, 0.99), "loss": "huber", "delta": 0.14}) == \
        "--opt winsorize=0.01,0.99 --loss huber --delta 0.14"
    code, out, err = run(capsys, "train", tmp_path / "line.npz", "--epochs", "5", "--no-progress",
                         *cli_flags({"winsorize": (0.01, 0.99), "hidden": (4, 3)}).split())
    assert code == 0, err
