"""The engine's contract: trace contents, determinism, divergence, budget, dtypes, inputs."""
import ast
import gc
import os
import pathlib
import subprocess
import sys
import warnings
import weakref

import numpy as np
import pytest
from conftest import nonlinear_data

import minireg
from minireg import datasets


MLP_KW = dict(model="mlp", hidden=(8, 6), activation="tanh", optimizer="adam", lr=0.01,
              epochs=5, batch_size=16, shuffle=True, trace=True)


def test_contract_example_runs():
    X, y = nonlinear_data()
    r = minireg.train(X, y, model="mlp", hidden=(10,), activation="relu", loss="huber", delta=1.0,
                      optimizer="adam", lr=0.01, epochs=20, batch_size=32, shuffle=True, seed=0, trace=True)
    assert r.params["W1"].shape == (4, 10) and r.params["b1"].shape == (10,)
    assert r.params["W2"].shape == (10, 1) and r.params["b2"].shape == (1,)
    assert r.predict(X[:7]).shape == (7,)
    assert r.history["loss"].shape == (20,)
    assert r.n_steps == 20 * 2 == len(r.trace)
    step = r.trace.step(12)
    assert step["step"] == 12 and step["epoch"] == 6
    assert set(step["state"]) == {"exp_avg", "exp_avg_sq"}
    assert step["state"]["exp_avg"]["W1"].shape == (4, 10)
    np.testing.assert_array_equal(step["state"]["exp_avg"]["W1"], r.trace.state["exp_avg"][12][:40].reshape(4, 10))
    np.testing.assert_array_equal(step["params"]["b2"], r.trace.params[12][-1:])
    assert r.trace.names == ("W1", "b1", "W2", "b2")
    assert not r.diverged and r.diverged_at is None
    assert r.config["beta2"] == 0.999 and r.config["eps"] == 1e-8 and r.config["amsgrad"] is False
    assert "adam" in repr(r) and "Trace(" in repr(r.trace)


def test_update_is_exactly_the_parameter_change():
    X, y = nonlinear_data()
    for opt, kw in [("sgd", {"momentum": 0.9, "nesterov": True}), ("rmsprop", {"centered": True}),
                    ("adamw", {"weight_decay": 0.1})]:
        r = minireg.train(X, y, **{**MLP_KW, "optimizer": opt}, **kw)
        tr = r.trace
        np.testing.assert_array_equal(tr.update[:-1], tr.params[1:] - tr.params[:-1])
        np.testing.assert_array_equal(tr.update[-1], r.theta - tr.params[-1])
        np.testing.assert_allclose(tr.grad_norm, np.linalg.norm(tr.grad, axis=1), rtol=1e-12)
        np.testing.assert_allclose(tr.update_norm, np.linalg.norm(tr.update, axis=1), rtol=1e-12)
        np.testing.assert_allclose(tr.param_norm, np.linalg.norm(tr.params, axis=1), rtol=1e-12)


def test_history_is_the_full_data_loss_at_each_epoch_end():
    X, y = nonlinear_data()
    r = minireg.train(X, y, **{**MLP_KW, "loss": "mse"})
    # the epoch-end parameters are those before the first step of the next epoch
    starts = np.flatnonzero(np.diff(r.trace.epoch)) + 1
    for e, row in enumerate(starts):
        pred = _numpy_forward(r.trace.unflatten(r.trace.params[row]), X, "tanh")
        assert r.history["loss"][e] == pytest.approx(np.mean((pred - y) ** 2), rel=1e-12)
    np.testing.assert_allclose(r.history["loss"][-1], np.mean((r.predict(X) - y) ** 2), rtol=1e-12)


def _numpy_forward(params, X, act):
    f = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}[act]
    a = X
    k = 1
    while f"W{k + 1}" in params:
        a = f(a @ params[f"W{k}"] + params[f"b{k}"])
        k += 1
    return (a @ params[f"W{k}"] + params[f"b{k}"])[:, 0]


def test_full_batch_history_matches_minibatch_definition():
    X, y = datasets.linear_1d()
    r = minireg.train(X, y, lr=0.5, epochs=30, trace=True)
    # full batch: the loss at the end of epoch e is the batch loss of step e+1
    np.testing.assert_array_equal(r.history["loss"][:-1], r.trace.loss[1:])
    assert r.history["loss"][-1] == pytest.approx(np.mean((r.predict(X) - y) ** 2), rel=1e-13)


def test_same_seed_is_bit_identical_and_another_seed_differs():
    X, y = nonlinear_data()
    a = minireg.train(X, y, **MLP_KW, seed=5)
    b = minireg.train(X, y, **MLP_KW, seed=5)
    c = minireg.train(X, y, **MLP_KW, seed=6)
    for name in ("params", "grad", "update", "loss"):
        np.testing.assert_array_equal(getattr(a.trace, name), getattr(b.trace, name))
    np.testing.assert_array_equal(a.trace.state["exp_avg_sq"], b.trace.state["exp_avg_sq"])
    assert not np.array_equal(a.trace.params, c.trace.params)


def test_shuffle_changes_batches_and_no_shuffle_takes_consecutive_rows():
    X, y = nonlinear_data()
    init = minireg.train(X, y, **{**MLP_KW, "epochs": 1}).trace.unflatten(
        minireg.train(X, y, **{**MLP_KW, "epochs": 1}).trace.params[0])
    kw = {**MLP_KW, "optimizer": "sgd", "init": init}
    ordered = minireg.train(X, y, **{**kw, "shuffle": False})
    shuffled = minireg.train(X, y, **kw)
    assert not np.allclose(ordered.trace.loss, shuffled.trace.loss)
    # step 0 without shuffling sees rows 0..15: its loss is the loss of those rows
    pred = _numpy_forward(init, X[:16], "tanh")
    assert ordered.trace.loss[0] == pytest.approx(np.mean((pred - y[:16]) ** 2), rel=1e-12)
    # the last batch of an epoch holds the remaining 60 - 48 = 12 rows and is averaged over them
    assert ordered.config["steps_per_epoch"] == 4


def test_high_lr_on_seed_001_diverges_without_exception():
    X, y = datasets.linear_1d(n=100, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = minireg.train(X, y, optimizer="sgd", lr=10, batch_size=32, epochs=200, trace=True)
    assert r.diverged and r.diverged_at is not None
    assert [w.category for w in caught] == [minireg.DivergenceWarning]
    tr = r.trace
    np.testing.assert_array_equal(tr.step, np.arange(r.diverged_at + 1))  # every step up to it
    assert r.n_steps == r.diverged_at + 1
    assert np.isfinite(tr.params).all()  # the parameters before each recorded step were finite
    last_loss_finite = np.isfinite(tr.loss[-1])
    assert (not last_loss_finite) or not np.isfinite(r.theta).all()
    assert np.all(np.diff(np.log(tr.loss[:-1][::4])) > 0)  # the loss grows epoch over epoch
    assert r.history["loss"].size == r.diverged_at // 4


def test_divergence_is_recorded_even_between_trace_rows():
    X, y = datasets.linear_1d()
    with pytest.warns(minireg.DivergenceWarning):
        r = minireg.train(X, y, lr=10, batch_size=32, epochs=200, trace=True, trace_every=7)
    assert r.trace.step[-1] == r.diverged_at
    assert np.all(r.trace.step[:-1] % 7 == 0)
    # the diverging row off the grid is copied from the work buffers; on the grid a step works in
    # its row: both hold what a trace of every step holds for those steps
    with pytest.warns(minireg.DivergenceWarning):
        every = minireg.train(X, y, lr=10, batch_size=32, epochs=200, trace=True)
    assert r.diverged_at % 7 != 0 and every.diverged_at == r.diverged_at
    for col in ("params", "grad", "update", "loss", "grad_norm", "update_norm", "param_norm"):
        np.testing.assert_array_equal(getattr(r.trace, col), getattr(every.trace, col)[r.trace.step])


def test_trace_every_and_norms_mode():
    X, y = nonlinear_data()
    full = minireg.train(X, y, **MLP_KW)
    sparse = minireg.train(X, y, **MLP_KW, trace_every=3)
    norms = minireg.train(X, y, **{**MLP_KW, "trace": "norms"})
    np.testing.assert_array_equal(sparse.trace.step, np.arange(0, full.n_steps, 3))
    np.testing.assert_array_equal(sparse.trace.params, full.trace.params[::3])
    with pytest.raises(KeyError, match="trace_every=1"):
        sparse.trace.step(1)
    assert norms.trace.params is None and norms.trace.state == {}
    for col in ("grad_norm", "update_norm", "param_norm"):  # the kernel sums them the same way in both modes
        np.testing.assert_array_equal(getattr(norms.trace, col), getattr(full.trace, col))
    np.testing.assert_array_equal(norms.theta, full.theta)
    untraced = minireg.train(X, y, **{**MLP_KW, "trace": False})
    assert untraced.trace is None
    np.testing.assert_array_equal(untraced.theta, full.theta)


def test_a_dropped_result_frees_its_trace_at_once():
    """No reference cycle keeps a trace (often hundreds of MB) alive until the cycle collector runs."""
    X, y = nonlinear_data()
    r = minireg.train(X, y, **MLP_KW)
    assert r.trace.step(3)["step"] == 3 and r.trace.step[3] == 3
    refs = [weakref.ref(o) for o in (r, r.trace, r.trace.params)]
    gc.disable()
    try:
        del r
        assert [ref() is None for ref in refs] == [True, True, True]
    finally:
        gc.enable()


def test_trace_budget_refuses_before_allocating():
    X, y = nonlinear_data()
    with pytest.raises(ValueError, match=r"trace would need .*trace_every=.*trace='norms'.*trace_budget"):
        minireg.train(X, y, **{**MLP_KW, "epochs": 10**7}, trace_budget=2**20)
    r = minireg.train(X, y, **{**MLP_KW, "epochs": 3}, trace_budget=2**20)
    assert len(r.trace) == 12


def test_float32_runs_in_float32_and_matches_float64():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -0.5, 2.0]) + 0.3 + 0.05 * rng.normal(size=200)
    r64 = minireg.train(X, y, optimizer="adam", lr=0.05, epochs=300, trace=True)
    r32 = minireg.train(X, y, optimizer="adam", lr=0.05, epochs=300, trace=True, dtype="float32")
    assert r32.theta.dtype == np.float32 and r32.trace.grad.dtype == np.float32
    assert r32.history["loss"].dtype == np.float32 and r32.predict(X).dtype == np.float32
    assert r32.history["loss"][-1] == pytest.approx(r64.history["loss"][-1], rel=1e-4)


def test_init_dict_is_copied_and_inputs_untouched():
    X, y = nonlinear_data()
    X = np.asfortranarray(X)
    X0, y0 = X.copy(), y.copy()
    init = minireg.train(X, y, model="linear", epochs=1).params
    init0 = {k: v.copy() for k, v in init.items()}
    r = minireg.train(X, y, model="linear", init=init, epochs=5, trace=True)
    np.testing.assert_array_equal(r.trace.params[0], np.concatenate([init0["W1"].ravel(), init0["b1"]]))
    for k in init:
        np.testing.assert_array_equal(init[k], init0[k])
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_init_schemes():
    X, y = nonlinear_data(d=30)
    torch_like = minireg.train(X, y, model="mlp", hidden=(50,), epochs=1, lr=1e-12, init="torch").params
    keras_like = minireg.train(X, y, model="mlp", hidden=(50,), epochs=1, lr=1e-12, init="keras").params
    assert np.abs(torch_like["W1"]).max() <= 1 / np.sqrt(30) and np.abs(torch_like["b2"]).max() <= 1 / np.sqrt(50)
    assert np.abs(torch_like["b1"]).max() > 0.5 / np.sqrt(30)
    assert np.abs(keras_like["W1"]).max() <= np.sqrt(6 / 80) and np.abs(keras_like["W1"]).max() > 0.9 * np.sqrt(6 / 80)
    assert np.abs(keras_like["b1"]).max() < 1e-9
    zeros = minireg.train(X, y, epochs=1, init="zeros", trace=True)
    assert not zeros.trace.params[0].any()


def test_dataframe_and_1d_inputs():
    pd = pytest.importorskip("pandas")
    X, y = datasets.linear_1d(n=40)
    a = minireg.train(X, y, epochs=3)
    b = minireg.train(X[:, 0], y.reshape(-1, 1), epochs=3)
    c = minireg.train(pd.DataFrame({"x": X[:, 0]}), pd.Series(y), epochs=3)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.theta, c.theta)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"optimizer": "adm"}, ValueError, "Did you mean 'adam'"),
    ({"loss": "l2"}, ValueError, "loss='l2' is not one of"),
    ({"lr": 0}, ValueError, "lr must be a finite number in \\(0.0, inf\\]"),
    ({"lr": float("nan")}, ValueError, "lr must be"),
    ({"epochs": 0}, ValueError, "epochs must be an integer >= 1"),
    ({"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
    ({"delta": -1}, ValueError, "delta must be"),
    ({"beta1": 0.9}, TypeError, "belongs to another optimizer"),
    ({"optimizer": "adam", "beta2": 1.0}, ValueError, "beta2 must be a finite number in \\[0.0, 1.0\\)"),
    ({"optimizer": "adam", "amsgrd": True}, TypeError, "Did you mean 'amsgrad'"),
    ({"nesterov": True}, ValueError, "nesterov=True needs momentum > 0"),
    ({"model": "mlp", "init": "zeros"}, ValueError, "init='zeros' is only allowed"),
    ({"model": "mlp", "hidden": (4, 0)}, ValueError, "hidden\\[1\\] must be an integer >= 1"),
    ({"init": {"W1": np.zeros((2, 1))}}, ValueError, "missing \\['b1'\\]"),
    ({"init": {"W1": np.zeros((3, 1)), "b1": np.zeros(1)}}, ValueError, "init\\['W1'\\] has shape \\(3, 1\\)"),
    ({"trace_every": 0}, ValueError, "trace_every must be an integer >= 1"),
    ({"trace": "all"}, ValueError, "trace='all' is not one of"),
    ({"dtype": "float16"}, ValueError, "dtype='float16' is not one of"),
])
def test_bad_arguments_get_one_clear_error(kwargs, exc, match):
    X, y = nonlinear_data(d=2)
    with pytest.raises(exc, match=match):
        minireg.train(X, y, **kwargs)


def test_bad_data_gets_one_clear_error():
    X, y = nonlinear_data(d=2)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"X has 1 NaN/inf value\(s\) in 1 row\(s\) \(first rows \[3\]\) "
                                         r"and column\(s\) \[1\]"):
        minireg.train(Xn, y)
    with pytest.raises(ValueError, match="X has 60 samples but y has 59"):
        minireg.train(X, y[:-1])
    with pytest.raises(ValueError, match="must be 2-D"):
        minireg.train(X[None], y)
    with pytest.raises(TypeError, match="non-numeric dtype"):
        minireg.train(X.astype(str), y)
    with pytest.raises(TypeError, match="boolean"):
        minireg.train(X > 0, y)
    with pytest.raises(ValueError, match="empty"):
        minireg.train(np.zeros((0, 2)), np.zeros(0))


def test_import_is_light_and_compiles_nothing():
    code = (
        "import sys, minireg\n"
        "from minireg.kernels import loop\n"
        "heavy = ('matplotlib', 'sklearn', 'pandas', 'dask', 'tqdm', 'numba.cuda', 'minireg.cuda', 'minireg.sklearn')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, f'imported: {loaded}'\n"
        "assert loop.train_epochs.signatures == [], 'compiled at import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# minireg modules imported inside functions on purpose, so that `import minireg` stays light (the test
# above): scikit-learn's estimator, and the CUDA backend, which loads numba.cuda
LAZY_MODULES = {"minireg.sklearn", "minireg.cuda", "minireg.cuda._config", "minireg.cuda.loop", "minireg.cuda.many"}


def _minireg_imports():
    """({module: the minireg modules it imports at import time}, [(module, line, imported module)] of
    the imports inside functions), read from the source. ``from a.b import c`` imports the module a.b.c
    when there is one, else a.b; and importing a.b.c runs a.b's __init__ first, so a subpackage counts as
    imported too unless the importer is inside it (minireg's own __init__, which every import of a
    submodule runs first and which imports the public modules, counts only when named)."""
    root = pathlib.Path(minireg.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)

    def imported(module, package, node):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = module.split(".")[:None if package else -1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        return {n for n in names if n == "minireg" or n.startswith("minireg.")}

    top, inner = {}, []
    for module, (path, package) in modules.items():
        top[module] = set()

        def visit(node, in_function, module=module, package=package):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in imported(module, package, node):
                    if in_function:
                        inner.append((module, node.lineno, name))
                    else:
                        parts = name.split(".")
                        top[module].update(p for p in (".".join(parts[:k]) for k in range(2, len(parts)))
                                           if not (module + ".").startswith(p + "."))
                        top[module].add(name)
            function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for child in ast.iter_child_nodes(node):
                visit(child, in_function or function)

        visit(ast.parse(path.read_text(encoding="utf-8")), False)
        top[module].discard(module)
    return top, inner


def test_no_import_cycles_and_no_imports_inside_functions():
    """Each pair of minireg modules that need each other has one direction: the graph of top-level
    imports has no cycle, and no minireg module is imported inside a function (which is how a cycle
    hides) except the deliberately lazy LAZY_MODULES. When a lower module needs something of a
    higher one, it moves down or is handed over (e.g. minireg.result.implements)."""
    top, inner = _minireg_imports()
    assert {"minireg", "minireg.result", "minireg.io", "minireg.diagnose", "minireg.train"} <= top.keys()
    assert "minireg.result" in top["minireg.io"] and "minireg.train" in top["minireg.diagnose.verify"]

    state, path = {}, []

    def cycle_from(m):
        state[m] = "open"
        path.append(m)
        for n in sorted(top.get(m, ())):
            if state.get(n) == "open":
                return path[path.index(n):] + [n]
            if n not in state and (found := cycle_from(n)):
                return found
        state[m] = "done"
        path.pop()
        return None

    for m in sorted(top):
        if m not in state:
            cycle = cycle_from(m)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)
    lazy = [f"{m}:{line} imports {name}" for m, line, name in inner if name not in LAZY_MODULES]
    assert not lazy, "minireg modules imported inside functions: " + "; ".join(lazy)


def test_trainresult_delegates_are_implemented():
    # TrainResult.save/diagnose/... call what minireg.io, .diagnose and .report registered on import
    from minireg import result
    assert set(result._delegates) == set(result.DELEGATED)
    assert result._delegates["save"] is minireg.io.save and result._delegates["diagnose"] is minireg.diagnose.diagnose


def test_every_kernel_is_cached_on_disk():
    import numba.core.caching
    from minireg import optim
    from minireg.kernels import activations, losses, loop, models
    dispatchers = [v for m in (activations, losses, loop, models, *optim.MODULES) for v in vars(m).values()
                   if hasattr(v, "py_func")]
    assert len(dispatchers) >= 12
    for d in dispatchers:
        assert not isinstance(d._cache, numba.core.caching.NullCache), d.py_func.__name__



def test_each_model_compiles_only_its_own_passes(tmp_path):
    # forward/backward and the large path's tiles pick the linear model's or the network's kernel
    # from act's type (activations.by_model): a linear run compiles no MLP pass or tile and an MLP
    # run no linear pass (in a fresh process and an empty cache: a kernel loaded from the cache
    # compiles none of its callees)
    code = """
import numpy as np, minireg
from minireg.kernels import models
X = np.random.default_rng(0).normal(size=(40, 3)); y = X @ np.ones(3)
def counts():
    return [len(k.signatures) for k in (models._linear_forward, models._linear_backward, models._network_forward,
                                        models._network_backward)]
minireg.train(X, y, epochs=2)
print(*counts())
minireg.train(X, y, model="mlp", hidden=(4,), optimizer="sgd", epochs=2)
print(*counts())
from minireg import _parallel
from minireg.kernels import tiled
_parallel.STEP_WORK = _parallel.LOSS_WORK = 1  # the large-batch path from one tile of rows
X2 = np.random.default_rng(1).normal(size=(600, 3)); y2 = X2 @ np.ones(3)
assert _parallel.plan(minireg.layout.Layout((3, 1)), 600, 0, 600, None, "float64")[0] is not None
minireg.train(X2, y2, epochs=2)
print(len(tiled._linear_tile.signatures), len(tiled._mlp_block.signatures))
"""
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    env.update(NUMBA_CACHE_DIR=str(tmp_path), MINIREG_NUMBA_CACHE="1",
               PYTHONPATH=os.pathsep.join([root, env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    after_linear, after_mlp, tiles = (list(map(int, line.split())) for line in out.stdout.splitlines()[-3:])
    assert after_linear[0] >= 1 and after_linear[1] >= 1 and after_linear[2:] == [0, 0]
    assert after_mlp[:2] == after_linear[:2] and after_mlp[2] >= 1 and after_mlp[3] >= 1
    assert tiles[0] >= 1 and tiles[1] == 0  # a linear large run compiles no MLP tile (tiled.tile_sums)
