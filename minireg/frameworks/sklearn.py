"""Replay scikit-learn's MLPRegressor and SGDRegressor: the same run as ``estimator.fit(X, y)``, traced.

MLPRegressor (solver "sgd" or "adam", an integer ``random_state``), as
sklearn/neural_network/_multilayer_perceptron.py (``_fit_stochastic``) does it:
  - one numpy RandomState(random_state) gives, in this order, the initial weights (``coefs_[k]``,
    then ``intercepts_[k]``, per layer: U(±√(6/(fan_in+fan_out))), 2 instead of 6 for logistic),
    the early-stopping split (``train_test_split``) and, each epoch, the shuffle of the row indices
    (``sklearn.utils.shuffle``, compounding); minireg calls scikit-learn's own functions for the last two;
  - batches of ``batch_size`` rows (min(200, n) for "auto"); the loss ½·mean(r²) + alpha/(2B)·Σ‖W‖²
    (minireg's ``loss="squared_error"`` and ``l2=alpha``); Adam with the bias correction in the step
    size, SGD with the lr-scaled velocity (``flavor="sklearn"``);
  - after each epoch: ``loss_curve_`` gets the batch losses' mean weighted by batch size; the
    learning rate of "invscaling" becomes lr_init/(t_+1)^power_t (t_ = samples seen); the stopping
    rule counts epochs whose loss (or, with early_stopping, validation R²) did not improve by ``tol``;
    more than ``n_iter_no_change`` of them stop the run, or divide "adaptive"'s lr by 5 (stop once
    lr ≤ 1e-6); ``max_iter`` epochs at most. With early_stopping the best epoch's weights are kept.

SGDRegressor (dense X, ``shuffle=False``, penalty "l2" or None, loss "squared_error" or "huber"), as
sklearn/linear_model/_sgd_fast.pyx.tp (``_plain_sgd``) does it: one row per step from w = 0, b = 0;
the step's eta from the 1-based step count t (t_ = 1 at the start): eta0 ("constant", "adaptive"),
eta0/t^power_t ("invscaling"), 1/(alpha·(t0 + t − 1)) ("optimal", t0 from the same heuristic); the
L2 term shrinks w by eta·alpha before the step (l1_ratio is 0 for penalty "l2"), the update train's
``l2=alpha`` makes (the same math, rounded differently); after each epoch the mean objective (loss + penalty at each
row's w) or, with early_stopping, the validation R² drives the same stopping rule with ``>=``.

Each epoch is one ``minireg.train`` call continuing the previous one (``resume=``), with the rows'
order given (``order=``) and the epoch's learning rate; the returned TrainResult holds the whole run
(trace, history) and ``result.replayed``, the attributes ``fit`` would set (``n_iter_``, ``t_``,
``loss_curve_``, ``best_loss_``, ``validation_scores_``, ``best_validation_score_``).
"""
import math
import warnings

import numpy as np

from .. import _validate as V
from ..layout import Layout, init_params
from ..train import RunInputs, train

_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": "identity"}


def replay_estimator(estimator, X, y, **overrides):
    """``minireg.replay`` for a scikit-learn estimator (read with ``get_params``, not changed)."""
    name = type(estimator).__name__
    if hasattr(estimator, "coef_") or hasattr(estimator, "coefs_"):
        raise ValueError(f"this {name} is already fitted; replay() replays fit() from scratch: pass an unfitted "
                         f"estimator (sklearn.base.clone(estimator)).")
    if name == "MLPRegressor":
        return replay_mlp(estimator.get_params(), X, y, **overrides)
    if name == "SGDRegressor":
        return replay_sgd(estimator.get_params(), X, y, **overrides)
    raise TypeError(f"replay() replays scikit-learn's MLPRegressor and SGDRegressor; got {name}.")


def _refuse(what, why):
    raise ValueError(f"{what} is not replayed: {why}")


def _epoch_loss(result, n, batch_size):
    """The last epoch's batch losses (trace rows), averaged weighted by batch size, as scikit-learn's
    ``loss_`` (MLP) sums them."""
    sizes = np.array([min(batch_size, n - s) for s in range(0, n, batch_size)], np.float64)
    losses = np.asarray(result.trace.loss[-sizes.size:], np.float64)
    return float(np.sum(losses * sizes) / n)


def _r2(y, pred):
    from sklearn.metrics import r2_score  # lazy on purpose: scikit-learn only when replaying its runs
    return float(r2_score(y, pred))


def _spent(spent, result):
    """(seconds, compile_seconds, setup_seconds) of the replay so far, one train() call an epoch: the
    calls' seconds and compiling added up, the setup of the first call."""
    if spent is None:
        return result.seconds, result.compile_seconds, result.setup_seconds
    return spent[0] + result.seconds, spent[1] + result.compile_seconds, spent[2]


def _continue(result, X, y, lr, order, first, **kw):
    """One more epoch of the replayed run (the first one starts it)."""
    if result is None:
        return train(X, y, epochs=1, lr=lr, order=order, **first, **kw)
    return train(X, y, resume=result, epochs=1, lr=lr, order=order, **kw)


def replay_mlp(params, X, y, **overrides):
    """MLPRegressor(**params).fit(X, y), replayed; ``params`` as ``get_params()`` gives them."""
    p = params
    if p["solver"] not in ("sgd", "adam"):
        _refuse(f"solver={p['solver']!r}", "only the stochastic solvers 'sgd' and 'adam' take steps minireg can "
                "replay (lbfgs is a quasi-Newton method over the whole data).")
    if not isinstance(p["random_state"], (int, np.integer)) or isinstance(p["random_state"], bool):
        _refuse(f"random_state={p['random_state']!r}", "give the MLPRegressor an integer random_state, so that its "
                "initial weights and shuffles can be drawn again.")
    if p.get("loss", "squared_error") != "squared_error":
        _refuse(f"loss={p['loss']!r}", "MLPRegressor's squared_error is the loss replayed.")
    if p.get("warm_start"):
        _refuse("warm_start=True", "replay() replays one fit() from scratch.")
    X64 = V.data_X(X, np.float64)
    y64 = V.data_y(y, X64.shape[0], np.float64)
    hidden = p["hidden_layer_sizes"]
    hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(int(h) for h in hidden)
    activation = _ACTIVATIONS[p["activation"]]
    rs = np.random.RandomState(p["random_state"])
    layout = Layout((X64.shape[1], *hidden, 1))
    init = layout.unflatten(init_params(layout, "sklearn", rs, np.float64, activation))
    X_val = y_val = None
    if p["early_stopping"]:
        from sklearn.model_selection import train_test_split  # lazy on purpose, as above
        X64, X_val, y64, y_val = train_test_split(X64, y64, random_state=rs, test_size=p["validation_fraction"])
        if X_val.shape[0] < 2:
            raise ValueError("the validation set is too small (early_stopping): raise validation_fraction.")
    n = X64.shape[0]
    batch_size = min(200, n) if p["batch_size"] == "auto" else int(np.clip(p["batch_size"], 1, n))
    hparams = ({"beta1": p["beta_1"], "beta2": p["beta_2"], "eps": p["epsilon"]} if p["solver"] == "adam" else
               {"momentum": p["momentum"], "nesterov": p["nesterovs_momentum"]})
    first = dict(flavor="sklearn", model="mlp", hidden=hidden, activation=activation, optimizer=p["solver"],
                 loss="squared_error", l2=p["alpha"], batch_size=batch_size, init=init, progress=False, **hparams)
    first.update({"trace": "norms", **overrides})  # the epoch losses are read from the trace
    lr = float(p["learning_rate_init"])
    schedule = p["learning_rate"] if p["solver"] == "sgd" else "constant"
    idx = np.arange(n)
    result, best_theta, spent = None, None, None
    best_loss, best_score, no_improvement, t_ = math.inf, -math.inf, 0, 0
    loss_curve, scores = [], []
    for _ in range(p["max_iter"]):
        if p["shuffle"]:
            from sklearn.utils import shuffle  # lazy on purpose, as above
            idx = shuffle(idx, random_state=rs)
        result = _continue(result, X64, y64, lr, idx[None], first)
        spent = _spent(spent, result)
        if result.diverged:
            break
        loss_curve.append(_epoch_loss(result, n, batch_size))
        t_ += n
        if p["early_stopping"]:
            scores.append(_r2(y_val, result.predict(X_val)))
            no_improvement = no_improvement + 1 if scores[-1] < best_score + p["tol"] else 0
            if scores[-1] > best_score:
                best_score, best_theta = scores[-1], result.theta.copy()
        else:
            no_improvement = no_improvement + 1 if loss_curve[-1] > best_loss - p["tol"] else 0
            best_loss = min(best_loss, loss_curve[-1])
        if schedule == "invscaling":
            lr = float(p["learning_rate_init"]) / (t_ + 1) ** p["power_t"]
        if no_improvement > p["n_iter_no_change"]:
            if schedule == "adaptive" and lr > 1e-6:
                lr /= 5.0
                no_improvement = 0
            else:
                break
    if best_theta is not None:
        result.set_theta(best_theta)  # fit() keeps the best validation epoch's weights
    result.seconds, result.compile_seconds, result.setup_seconds = spent
    # what the diagnosis re-runs to verify a fix: the whole run as one minireg call (minireg's own
    # shuffles, the initial learning rate throughout), the fix applied to it
    whole = {**first, "epochs": max(len(loss_curve), 1), "lr": float(p["learning_rate_init"]),
             "shuffle": bool(p["shuffle"]), "seed": int(p["random_state"]),
             **({"validation": (X_val, y_val)} if p["early_stopping"] else {})}
    result.inputs = RunInputs(X64, y64, whole)
    result.replayed = {
        "framework": "sklearn.MLPRegressor", "n_iter_": len(loss_curve), "t_": t_, "loss_curve_": loss_curve,
        "best_loss_": None if p["early_stopping"] else best_loss, "learning_rate": lr,
        **({"validation_scores_": scores, "best_validation_score_": best_score} if p["early_stopping"] else {})}
    return result


def _sgd_loss(p):
    if p["loss"] == "squared_error":
        return {"loss": "squared_error"}
    if p["loss"] == "huber":
        return {"loss": "huber", "delta": p["epsilon"]}
    _refuse(f"loss={p['loss']!r}", "SGDRegressor's 'squared_error' and 'huber' are replayed.")


def replay_sgd(params, X, y, **overrides):
    """SGDRegressor(**params).fit(X, y), replayed; ``params`` as ``get_params()`` gives them."""
    p = params
    penalty = p["penalty"] or "none"
    if penalty not in ("l2", "none"):
        _refuse(f"penalty={p['penalty']!r}", "the L1 part is scikit-learn's cumulative truncated gradient, which "
                "minireg's steps do not have; penalty 'l2' and None are replayed.")
    if p["shuffle"]:
        _refuse("shuffle=True", "SGDRegressor draws its orders from its own xorshift generator; pass shuffle=False.")
    for name, bad in (("average", p["average"]), ("warm_start", p["warm_start"]), ("fit_intercept=False",
                                                                                    not p["fit_intercept"])):
        if bad:
            _refuse(f"{name}" if "=" in name else f"{name}={p[name]!r}",
                    "replay() replays plain SGD steps of a model with an intercept.")
    if p["learning_rate"] not in ("constant", "invscaling", "optimal", "adaptive"):
        _refuse(f"learning_rate={p['learning_rate']!r}", "constant, invscaling, optimal and adaptive are replayed.")
    X64 = V.data_X(X, np.float64)
    y64 = V.data_y(y, X64.shape[0], np.float64)
    alpha = float(p["alpha"])
    l2 = alpha if penalty == "l2" else 0.0
    X_val = y_val = None
    if p["early_stopping"]:
        from sklearn.model_selection import ShuffleSplit  # lazy on purpose, as above
        cv = ShuffleSplit(test_size=p["validation_fraction"], random_state=p["random_state"])
        train_rows, val_rows = next(cv.split(np.zeros((y64.shape[0], 1)), y64))
        keep = np.zeros(y64.shape[0], bool)
        keep[train_rows] = True
        X64, X_val, y64, y_val = X64[keep], X64[~keep], y64[keep], y64[~keep]
    n = X64.shape[0]
    eta0, power_t, schedule = float(p["eta0"]), float(p["power_t"]), p["learning_rate"]
    t0 = 0.0
    if schedule == "optimal":  # _plain_sgd: eta of the first row = typw / max(1, dloss(1, −typw))
        typw = math.sqrt(1.0 / math.sqrt(alpha))
        if p["loss"] == "squared_error":
            dloss = -typw - 1.0
        else:
            dloss = -typw - 1.0 if abs(-typw - 1.0) <= p["epsilon"] else -p["epsilon"]
        t0 = 1.0 / (typw / max(1.0, dloss) * alpha)
    first = dict(model="linear", optimizer="sgd", momentum=0.0, nesterov=False, flavor="sklearn", l2=l2, batch_size=1,
                 init="zeros", progress=False, **_sgd_loss(p))
    first.update({"trace": "norms", **overrides})  # the epoch objectives are read from the trace
    result, eta, t, spent = None, eta0, 1.0, None
    best, no_improvement = math.inf if not p["early_stopping"] else -math.inf, 0
    tol = -math.inf if p["tol"] is None else float(p["tol"])
    objectives, scores = [], []
    for _ in range(p["max_iter"]):
        steps = t + np.arange(n)
        if schedule == "optimal":
            etas = 1.0 / (alpha * (t0 + steps - 1.0))
        elif schedule == "invscaling":
            etas = eta0 / np.power(steps, power_t)
        else:
            etas = np.full(n, eta)
        if result is None:
            result = train(X64, y64, epochs=1, lr=eta0, step_lrs=etas, shuffle=False, **first)
        else:
            result = train(X64, y64, resume=result, epochs=1, step_lrs=etas)
        spent = _spent(spent, result)
        t += n
        if result.diverged:
            break
        # the mean objective over the epoch's rows: each row's loss and penalty at the w before its step
        objectives.append(float(np.mean(np.asarray(result.trace.loss[-n:], np.float64))))
        if p["early_stopping"]:
            scores.append(_r2(y_val, result.predict(X_val)))
            no_improvement = no_improvement + 1 if scores[-1] < best + tol else 0
            best = max(best, scores[-1])
        else:
            no_improvement = no_improvement + 1 if objectives[-1] > best - tol else 0
            best = min(best, objectives[-1])
        if no_improvement >= p["n_iter_no_change"]:
            if schedule == "adaptive" and eta > 1e-6:
                eta /= 5.0
                no_improvement = 0
            else:
                break
    n_iter = len(objectives)
    result.seconds, result.compile_seconds, result.setup_seconds = spent
    if result.diverged or (result.trace is not None and len(result.trace)
                           and float(np.nanmax(result.trace.grad_norm)) > 1e12):
        warnings.warn("this SGDRegressor run reaches gradients beyond 1e12, where scikit-learn clips the loss's "
                      "derivative to ±1e12 (MAX_DLOSS) and minireg does not: from there the replay is not "
                      "scikit-learn's run. Scale the features (StandardScaler) or lower eta0.", RuntimeWarning,
                      stacklevel=3)
    # what the diagnosis re-runs to verify a fix: the whole run as one minireg call, with eta0 (and
    # power_t for invscaling) as minireg's schedule
    whole = {**first, "epochs": max(n_iter, 1), "lr": eta0, "shuffle": False,
             **({"schedule": "invscaling", "power_t": power_t} if schedule == "invscaling" else {}),
             **({"validation": (X_val, y_val)} if p["early_stopping"] else {})}
    result.inputs = RunInputs(X64, y64, whole)
    result.replayed = {"framework": "sklearn.SGDRegressor", "n_iter_": n_iter,
                       "t_": 1.0 + n_iter * (n + (0 if X_val is None else X_val.shape[0])),
                       "objective": objectives, **({"validation_scores": scores} if p["early_stopping"] else {})}
    return result
