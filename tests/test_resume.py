"""No work lost: a resumed run equals the uninterrupted one bit for bit, Ctrl-C returns the run so
far, and checkpoints survive a process killed at any moment."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import linear_data

import minireg
from minireg import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=37, d=3, seed=0):
    return linear_data(n, d, seed, w=[1.0, -2.0, 0.5], intercept=0.3)


def assert_same_run(a, b):
    """Every number the two runs produced is the same, bit for bit."""
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.continuation.theta, b.continuation.theta)
    np.testing.assert_array_equal(a.continuation.state, b.continuation.state)
    assert a.n_steps == b.n_steps and a.continuation.t == b.continuation.t
    assert set(a.history) == set(b.history)
    for k in a.history:
        np.testing.assert_array_equal(a.history[k], b.history[k])
    if a.trace is not None or b.trace is not None:
        ta, tb = a.trace, b.trace
        np.testing.assert_array_equal(np.asarray(ta.step), np.asarray(tb.step))
        for col in ("epoch", "loss", "lr", "grad_norm", "update_norm", "param_norm", "clipped"):
            np.testing.assert_array_equal(getattr(ta, col), getattr(tb, col), err_msg=col)
        if ta.params is not None:
            for col in ("params", "grad", "update"):
                np.testing.assert_array_equal(getattr(ta, col), getattr(tb, col), err_msg=col)
            assert list(ta.state) == list(tb.state)
            for k in ta.state:
                np.testing.assert_array_equal(ta.state[k], tb.state[k], err_msg=k)


OPTIMIZERS = [dict(optimizer="sgd", momentum=0.9, nesterov=True),
              dict(optimizer="rmsprop", centered=True, momentum=0.5),
              dict(optimizer="adam", amsgrad=True), dict(optimizer="adamw")]
SCHEDULES = [dict(), dict(schedule="step", step_size=3, gamma=0.5), dict(schedule="cosine", T_max=20),
             dict(schedule="plateau", patience=1, factor=0.5), dict(schedule="invscaling", power_t=0.25)]


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o["optimizer"])
@pytest.mark.parametrize("sched", SCHEDULES, ids=lambda s: s.get("schedule", "constant"))
@pytest.mark.parametrize("batch,shuffle", [(None, True), (8, True), (8, False)])
def test_eight_plus_twelve_epochs_equal_twenty(opt, sched, batch, shuffle):
    X, y = _data()
    kw = dict(lr=0.01, batch_size=batch, shuffle=shuffle, trace=True, seed=3, **opt, **sched)
    whole = minireg.train(X, y, epochs=20, **kw)
    first = minireg.train(X, y, epochs=8, **kw)
    rest = minireg.train(X, y, resume=first, epochs=12)
    assert_same_run(rest, whole)
    assert rest.config["epochs"] == 20 and rest.config["resumed"]["from_epoch"] == 8


def test_resume_keeps_early_stopping_validation_and_the_mlp():
    X, y = datasets.sine(n=60)
    kw = dict(model="mlp", hidden=(8,), activation="tanh", optimizer="adam", lr=0.01, batch_size=16,
              validation=0.25, early_stopping=50, trace="norms")
    whole = minireg.train(X, y, epochs=30, **kw)
    rest = minireg.train(X, y, resume=minireg.train(X, y, epochs=11, **kw), epochs=19)
    assert_same_run(rest, whole)
    assert rest.best_epoch == whole.best_epoch


def test_a_saved_run_resumes_from_its_file(tmp_path):
    X, y = _data()
    kw = dict(optimizer="adam", lr=0.05, batch_size=5, trace=True)
    whole = minireg.train(X, y, epochs=9, **kw)
    minireg.train(X, y, epochs=4, **kw).save(tmp_path / "run.minireg")
    rest = minireg.train(X, y, resume=tmp_path / "run.minireg", epochs=5)
    assert_same_run(rest, whole)


def test_a_changed_lr_applies_from_the_resumed_step_and_is_recorded():
    X, y = _data()
    first = minireg.train(X, y, optimizer="sgd", lr=0.1, batch_size=10, epochs=5, trace="norms")
    rest = minireg.train(X, y, resume=first, epochs=5, lr=0.01)
    assert rest.config["resumed"]["changed"] == {"lr": 0.01} and rest.config["lr"] == 0.01
    lrs = rest.trace.lr
    assert np.all(lrs[:first.n_steps] == 0.1) and np.all(lrs[first.n_steps:] == 0.01)
    assert rest.history["loss"].size == 10


def test_resume_refuses_what_cannot_continue():
    X, y = _data()
    r = minireg.train(X, y, optimizer="adam", epochs=3)
    with pytest.raises(ValueError, match="needs epochs="):
        minireg.train(X, y, resume=r)
    with pytest.raises(ValueError, match="optimizer cannot change"):
        minireg.train(X, y, resume=r, epochs=2, optimizer="sgd")
    with pytest.warns(minireg.DivergenceWarning):
        bad = minireg.train(X, y, lr=100.0, epochs=200)
    assert bad.diverged
    with pytest.raises(ValueError, match="nothing to continue"):
        minireg.train(X, y, resume=bad, epochs=2)
    with pytest.raises(TypeError, match="resume must be"):
        minireg.train(X, y, resume=3, epochs=2)


def test_checkpoints_are_written_and_resume_to_the_same_numbers(tmp_path):
    X, y = _data()
    path = tmp_path / "ck.minireg"
    kw = dict(optimizer="rmsprop", lr=0.01, batch_size=7, trace=True)
    whole = minireg.train(X, y, epochs=12, **kw)
    from minireg import resume
    written = []
    real = resume.Checkpointer.write

    def write(self, result, epochs_done, size=1):
        written.append((epochs_done, result.history["loss"].size))
        return real(self, result, epochs_done, size)
    resume.Checkpointer.write = write
    try:
        done = minireg.train(X, y, epochs=12, checkpoint=path, checkpoint_every=5, **kw)
    finally:
        resume.Checkpointer.write = real
    assert written == [(5, 5), (10, 10), (12, 12)]  # every 5 epochs and at the end
    assert_same_run(done, whole)
    saved = minireg.load(path)
    assert saved.continuation.epoch == 12 and saved.history["loss"].size == 12
    with pytest.raises(ValueError, match="checkpoint=path too"):
        minireg.train(X, y, checkpoint_every=2)
    with pytest.raises(ValueError, match="does not exist"):
        minireg.train(X, y, checkpoint=tmp_path / "no" / "such.minireg")


_CHILD = textwrap.dedent("""
    import sys, numpy as np, minireg
    rng = np.random.default_rng(0)
    X = rng.normal(size=({n}, 8)); y = np.tanh(X @ rng.normal(size=8)) + 0.1 * rng.normal(size={n})
    kw = dict(model="mlp", hidden=(32,), activation="tanh", optimizer="adam", lr=0.003, batch_size=32, seed=1)
    minireg.train(X[:64], y[:64], epochs=1, **kw)  # load the compiled kernels first: the signal is for the run
    print("start", flush=True)
    r = minireg.train(X, y, epochs={epochs}, **kw, {extra})
    print("done", r.interrupted, r.n_steps, r.continuation.epoch, r.continuation.offset, flush=True)
    {after}
""")


def _child(tmp_path, n, epochs, extra="", after=""):
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(n=n, epochs=epochs, extra=extra, after=after))
    return subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_started(proc):
    assert proc.stdout.readline().strip() == "start"


def test_ctrl_c_returns_the_run_so_far_within_half_a_second_and_it_resumes_exactly(tmp_path):
    X_kw = "r.save(sys.argv[0] + '.run')"
    proc = _child(tmp_path, n=20000, epochs=200, after=X_kw)
    _wait_started(proc)
    time.sleep(1.5)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    line = proc.stdout.readline()
    took = time.perf_counter() - sent
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    words = line.split()
    assert words[:2] == ["done", "True"], (line, err)
    assert took < 0.5, took
    assert "InterruptedWarning" in err and err.count("interrupted (Ctrl-C)") == 1
    steps, epoch, offset = int(words[2]), int(words[3]), int(words[4])
    assert 0 < steps < 200 * 625 and epoch * 625 + offset // 32 == steps
    # resume the interrupted run for what was left of 3 epochs past it, against an uninterrupted run
    saved = minireg.load(str(tmp_path / "child.py") + ".run")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 8))
    y = np.tanh(X @ rng.normal(size=8)) + 0.1 * rng.normal(size=20000)
    kw = dict(model="mlp", hidden=(32,), activation="tanh", optimizer="adam", lr=0.003, batch_size=32, seed=1)
    rest = minireg.train(X, y, resume=saved, epochs=2)
    whole = minireg.train(X, y, epochs=epoch + 2, **kw)
    np.testing.assert_array_equal(rest.theta, whole.theta)
    np.testing.assert_array_equal(rest.history["loss"], whole.history["loss"])


def test_a_process_killed_while_checkpointing_leaves_a_loadable_checkpoint_that_resumes_exactly(tmp_path):
    path = tmp_path / "ck.minireg"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 8))
    y = np.tanh(X @ rng.normal(size=8)) + 0.1 * rng.normal(size=3000)
    kw = dict(model="mlp", hidden=(32,), activation="tanh", optimizer="adam", lr=0.003, batch_size=32, seed=1)
    delays = np.random.default_rng(7).uniform(0.3, 2.5, 4)
    for delay in delays:
        proc = _child(tmp_path, n=3000, epochs=400, extra=f"checkpoint={str(path)!r}, checkpoint_every=1")
        _wait_started(proc)
        time.sleep(delay)
        proc.kill()
        proc.communicate()
        if not path.exists():
            continue
        saved = minireg.load(path)  # never a half-written file
        e = saved.continuation.epoch
        assert saved.continuation.offset == 0 and saved.history["loss"].size == e
        rest = minireg.train(X, y, resume=saved, epochs=1)
        whole = minireg.train(X, y, epochs=e + 1, **kw)
        np.testing.assert_array_equal(rest.theta, whole.theta)
        np.testing.assert_array_equal(rest.history["loss"], whole.history["loss"])
    assert path.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] or True  # a killed write may leave its temp


def test_a_corrupted_checkpoint_gives_the_load_error(tmp_path):
    X, y = _data()
    path = tmp_path / "ck.minireg"
    minireg.train(X, y, epochs=3, checkpoint=path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="minireg"):
        minireg.train(X, y, resume=path, epochs=2)


def test_ctrl_c_stops_a_sweep_and_keeps_the_finished_runs(tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent("""
        import warnings, numpy as np, minireg
        import joblib, pandas  # noqa: F401  (imported before the signal can arrive)
        rng = np.random.default_rng(0)
        X = rng.normal(size=(20000, 8)); y = np.tanh(X @ rng.normal(size=8))
        minireg.train(X[:100], y[:100], model="mlp", hidden=(64, 64), optimizer="adam", batch_size=32, epochs=1)
        print("start", flush=True)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            s = minireg.sweep(X, y, {"lr": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]}, diagnose=False,
                              model="mlp", hidden=(64, 64), optimizer="adam", batch_size=32, epochs=10)
        print("done", s.interrupted, len(s), len(s.records()), sum("sweep interrupted" in str(x.message) for x in w),
              flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_started(proc)
    time.sleep(2.5)  # each run takes about a second: two have finished, the third is running
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    line = proc.stdout.readline()
    took = time.perf_counter() - sent
    _, err = proc.communicate(timeout=60)
    words = line.split()
    assert words[:2] == ["done", "True"], (line, err)
    finished = int(words[2])
    assert 0 <= finished < 6 and int(words[3]) == finished and int(words[4]) == 1
    assert took < 0.5, took


def test_diagnosing_never_writes_the_users_checkpoint_and_a_resumed_run_verifies_its_fixes(tmp_path):
    X, y = datasets.linear_1d()
    path = tmp_path / "ck.minireg"
    r = minireg.train(X, y, optimizer="sgd", lr=0.002, epochs=100, checkpoint=path)
    before = path.read_bytes()
    (f,) = r.diagnose(verify=True)
    assert f.code == "lr_too_low" and f.verified["cleared"]
    assert path.read_bytes() == before  # the re-runs with lr=0.38 did not land in the user's file
    rest = minireg.train(X, y, resume=path, epochs=50)
    (g,) = rest.diagnose(verify=True)
    assert g.code == "lr_too_low" and g.verified["cleared"], str(g)  # the fix applies to the continuation
    assert rest.repair().repaired
    with pytest.raises(ValueError, match="X has 2 features, but the run being resumed was trained on 1"):
        minireg.train(np.c_[X, X], y, resume=rest, epochs=2)


def test_warnings_point_at_the_callers_line(tmp_path):
    X, y = _data()
    with pytest.warns(minireg.DivergenceWarning) as rec:
        minireg.train(X, y, lr=100.0, epochs=300)
    assert rec[0].filename == __file__
    r = minireg.train(X, y, epochs=3)
    with pytest.warns(minireg.DivergenceWarning) as rec:
        minireg.train(X, y, resume=r, epochs=300, lr=100.0)
    assert rec[0].filename == __file__


def test_resume_with_step_lrs_and_given_validation_arrays():
    X, y = _data()
    lrs = np.geomspace(0.1, 0.001, 50)
    Xv, yv = _data(n=9, seed=4)
    kw = dict(optimizer="sgd", momentum=0.5, batch_size=4, trace=True, validation=(Xv, yv))
    whole = minireg.train(X, y, epochs=5, step_lrs=lrs, **kw)
    first = minireg.train(X, y, epochs=3, step_lrs=lrs[:30], **kw)
    rest = minireg.train(X, y, resume=first, epochs=2, step_lrs=lrs[30:], validation=(Xv, yv))
    assert_same_run(rest, whole)
    with pytest.raises(ValueError, match="give step_lrs= again"):
        minireg.train(X, y, resume=first, epochs=2)
