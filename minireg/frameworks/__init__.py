"""Replay another framework's training run in minireg, step for step: ``minireg.replay(obj, X, y, ...)``.

    sklearn.py   scikit-learn's MLPRegressor (solver "sgd"/"adam") and SGDRegressor, unfitted
    keras.py     a compiled Keras 3 Sequential of Dense layers, from its current weights
    torch.py     a torch.nn.Sequential of Linear and ReLU/Tanh/Sigmoid layers with its torch.optim optimizer

Each module reads the framework object into plain settings (its ``spec_from_*``; only this step
touches the framework's objects, and it changes nothing in them) and replays those settings with
``minireg.train`` in that framework's flavor (``replay_*``; the tests call these with settings
recorded from the real packages, so they need neither Keras nor torch). The result is a TrainResult
like any run's (trace, diagnosis, explain), with ``result.replayed``: what the framework would report
(e.g. scikit-learn's ``n_iter_`` and ``loss_curve_``).
"""
from . import keras as _keras, sklearn as _sklearn, torch as _torch


def replay(obj, X, y, **overrides):
    """The training ``obj`` would do on (X, y), as a minireg TrainResult.

    - scikit-learn ``MLPRegressor`` (unfitted; solver "sgd" or "adam"; an integer random_state) or
      ``SGDRegressor`` (dense X, shuffle=False): the same initial draws, shuffles, batches, learning-rate
      schedule and stopping rule as ``obj.fit(X, y)``;
    - a Keras 3 ``Sequential`` of ``Dense`` layers, compiled: ``replay(model, X, y, epochs=E, batch_size=B)``
      is ``model.fit(X, y, epochs=E, batch_size=B, shuffle=False)`` from the model's current weights;
    - a torch ``nn.Sequential``: ``replay(model, X, y, optimizer=opt, epochs=E, batch_size=B)`` is the plain
      loop (zero_grad, MSELoss, backward, step) over batches in row order, from the current weights.

    ``overrides`` are passed on to ``minireg.train`` (e.g. ``trace=True``); what would change the
    replayed run itself is refused, with one error naming each argument.
    """
    kind = type(obj).__module__ + "." + type(obj).__name__
    _check_overrides(kind, overrides)
    if kind.startswith("sklearn."):
        return _sklearn.replay_estimator(obj, X, y, **overrides)
    # (under Keras's torch backend a Sequential is also a torch.nn.Module: Keras first)
    if kind.startswith("keras."):
        return _keras.replay_model(obj, X, y, **overrides)
    if kind.startswith("torch."):
        return _torch.replay_module(obj, X, y, **overrides)
    raise TypeError(f"replay() takes a scikit-learn MLPRegressor or SGDRegressor, a Keras Sequential model or a "
                    f"torch.nn.Sequential; got {kind}.")


# what an override may not change: the run is the framework's, as its object and fit() define it
_SAME_RUN = {
    "shuffle": "the framework's own shuffles cannot be drawn again: replay() replays shuffle=False "
               "(pass order= with the rows' order of each epoch when you know them)",
    "seed": "the run starts from the model's weights and takes its batches in order; no seed enters it",
    "init": "the run starts from the framework's weights",
    "flavor": "the flavor is the framework's",
    "model": "the model is the framework's", "hidden": "the model is the framework's",
    "activation": "the model is the framework's",
}
_FIT_ONLY = ("validation_split", "validation_data", "sample_weight", "class_weight", "callbacks", "verbose",
             "initial_epoch", "steps_per_epoch")
_SET_ON_ESTIMATOR = {"epochs": "max_iter", "batch_size": "batch_size", "optimizer": "solver",
                     "lr": "learning_rate_init (MLPRegressor) or eta0 (SGDRegressor)", "loss": "loss",
                     "shuffle": "shuffle"}


def _check_overrides(kind, overrides):
    problems = []
    for name in overrides:
        if kind.startswith("sklearn.") and name in _SET_ON_ESTIMATOR:
            problems.append(f"{name}=: set the estimator's {_SET_ON_ESTIMATOR[name]} instead, as fit() reads it")
        elif name in _SAME_RUN:
            problems.append(f"{name}=: {_SAME_RUN[name]}")
        elif name in _FIT_ONLY:
            problems.append(f"{name}=: fit()'s {name} is not replayed (give validation data to minireg.train "
                            "yourself, or leave the argument out)")
    if problems:
        raise ValueError("replay() cannot take these arguments: " + "; ".join(problems) + ".")
