"""Replay a Keras model's ``fit`` with minireg (issue #18): the same training, step for step, as a TrainResult.

Two steps, so that only the first touches Keras objects (and the tests need no Keras):

    spec = spec_from_model(model)                 # reads the compiled model; changes nothing
    result = replay_spec(spec, X, y, epochs=5, batch_size=16)
    result = replay_model(model, X, y, epochs=5, batch_size=16)     # the two together

What is replayed: ``model.fit(X, y, epochs, batch_size, shuffle=False)`` of a ``keras.Sequential`` of ``Dense``
layers (with bias), every hidden layer with the same activation ("relu", "tanh", "sigmoid" or "linear") and a
``Dense(1)`` output without activation; compiled with ``SGD``, ``RMSprop``, ``Adam`` or ``AdamW`` (a constant
learning rate; ``global_clipnorm`` or ``clipvalue`` allowed) and ``MeanSquaredError``/``"mse"``,
``MeanAbsoluteError``/``"mae"`` or ``Huber(delta)``; float32 (or float64) weights. It runs
``minireg.train(..., flavor="keras", init=<the model's weights>, shuffle=False)``: Keras' update rules, its
float32 arithmetic. Keras shuffles by default (``fit(shuffle=True)``) with its own random stream, which cannot be
replayed: the replay is of ``shuffle=False``; pass ``order=`` (each epoch's row order) to replay a given order.

``result.replayed`` holds what Keras reports: ``loss`` (``history.history["loss"]``: per epoch the running mean
of the batch losses weighted by batch size, accumulated in float32, each batch loss taken before its step; not
the loss of the end-of-epoch weights, which is ``result.history["loss"]``), ``batch_loss`` ((epochs, steps):
``logs["loss"]`` after each batch, the same running mean so far), ``weights`` (``model.get_weights()`` after the
run: kernel (in, out), bias (out,) per layer) and, with ``trace=True``, ``epoch_weights`` (one (epochs, *shape)
array per entry of ``get_weights()``: the weights after each epoch). The losses need every step's batch loss, so
the run records ``trace="norms"`` unless told otherwise (``trace=False`` or ``trace_every > 1``: no ``loss``).

Anything else (other layers or activations, an activated output, regularizers, constraints, a learning-rate
schedule, EMA, gradient accumulation, per-variable ``clipnorm``, weight decay excluded from some variables, an
optimizer that has stepped already, other losses or reductions, ...) is refused with one ValueError naming every
reason, before anything runs.
"""
import numpy as np

from ..train import train

FRAMEWORK = "keras"
ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "linear": "identity"}
OPTIMIZERS = {"SGD": "sgd", "RMSprop": "rmsprop", "Adam": "adam", "AdamW": "adamw"}
# each Keras optimizer's get_config() keys that carry a hyperparameter, and their minireg names
HPARAMS = {
    "sgd": {"momentum": "momentum", "nesterov": "nesterov"},
    "rmsprop": {"rho": "alpha", "epsilon": "eps", "centered": "centered", "momentum": "momentum"},
    "adam": {"beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps", "amsgrad": "amsgrad"},
    "adamw": {"beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps", "amsgrad": "amsgrad"},
}
# get_config() keys that must be off (None/False/0) to replay, with what they are
MUST_BE_OFF = {"clipnorm": "per-variable gradient norm clipping (clipnorm)", "use_ema": "EMA of the weights (use_ema)",
               "loss_scale_factor": "loss scaling (loss_scale_factor)",
               "gradient_accumulation_steps": "gradient accumulation (gradient_accumulation_steps)"}
IGNORED = {"name", "learning_rate", "weight_decay", "global_clipnorm", "clipvalue", "ema_momentum",
           "ema_overwrite_frequency"}
LOSSES = {"MeanSquaredError": "mse", "mean_squared_error": "mse", "mse": "mse", "MSE": "mse",
          "MeanAbsoluteError": "mae", "mean_absolute_error": "mae", "mae": "mae", "MAE": "mae",
          "Huber": "huber", "huber": "huber"}
REDUCTIONS = ("sum_over_batch_size", "mean")
DEFAULT_BATCH_SIZE = 32  # Keras fit's default


def _refuse(problems, what="this Keras model"):
    if problems:
        raise ValueError(f"minireg cannot replay {what}: " + "; ".join(problems) + ".")


def spec_from_config(config, weights, problems=None):
    """The plain settings (a dict) of a Keras training described as in tests/fixtures/replay_cases.json:
    ``config`` has ``layers`` ([{"units", "activation"}, ...] after the input), ``optimizer`` ({"class",
    "config": optimizer.get_config()}) and ``loss`` ({"class": a Loss class name or loss function/string name,
    "kwargs": {"delta": ...} for Huber, optional "config" with the reduction}); ``weights`` is
    ``model.get_weights()`` (kernel (in, out), bias (out,) per layer). Refuses what cannot be replayed."""
    problems = list(problems or ())  # a caller's reasons, refused together with these
    layers = list(config["layers"])
    weights = [np.asarray(w) for w in weights]
    if not layers:
        problems.append("the model has no Dense layer")
    acts = [layer.get("activation") or "linear" for layer in layers]
    for k, act in enumerate(acts):
        if act not in ACTIVATIONS:
            problems.append(f"layer {k} has activation {act!r}; replayable: {sorted(ACTIVATIONS)}")
    if layers and acts[-1] != "linear":
        problems.append(f"the output layer has activation {acts[-1]!r}; minireg's output layer is linear")
    if layers and layers[-1]["units"] != 1:
        problems.append(f"the output layer has {layers[-1]['units']} units; minireg replays a single output")
    hidden_acts = sorted(set(acts[:-1]))
    if len(hidden_acts) > 1:
        problems.append(f"the hidden layers have different activations {acts[:-1]}; minireg uses one for all")
    if len(weights) != 2 * len(layers):
        problems.append(f"expected {2 * len(layers)} weight arrays (kernel and bias per layer), got {len(weights)}")
    else:
        for k, layer in enumerate(layers):
            kernel, bias = weights[2 * k], weights[2 * k + 1]
            fan_in = weights[2 * k - 2].shape[1] if k else (kernel.shape[0] if kernel.ndim == 2 else None)
            if kernel.shape != (fan_in, layer["units"]) or bias.shape != (layer["units"],):
                problems.append(f"layer {k}'s weights have shapes {kernel.shape}, {bias.shape}; expected "
                                f"({fan_in}, {layer['units']}), ({layer['units']},)")
    dtypes = sorted({w.dtype.name for w in weights})
    if len(dtypes) > 1 or (dtypes and dtypes[0] not in ("float32", "float64")):
        problems.append(f"the weights are {dtypes}; replayable: all float32 or all float64")

    opt_class, opt = config["optimizer"]["class"], dict(config["optimizer"]["config"])
    name = OPTIMIZERS.get(opt_class)
    hparams, controls = {}, {}
    if name is None:
        problems.append(f"optimizer {opt_class} is not replayable; replayable: {sorted(OPTIMIZERS)}")
    else:
        for key, target in HPARAMS[name].items():
            if key in opt:
                hparams[target] = opt[key]
        unknown = [k for k in opt if k not in HPARAMS[name] and k not in MUST_BE_OFF and k not in IGNORED]
        unknown = [k for k in unknown if opt[k] not in (None, False)]
        if unknown:
            problems.append(f"{opt_class} has settings minireg does not know: {', '.join(unknown)}")
    for key, what in MUST_BE_OFF.items():
        if opt.get(key) not in (None, False, 0) + ((1,) if key == "gradient_accumulation_steps" else ()):
            problems.append(f"{what}={opt[key]!r} is not replayable")
    lr = opt.get("learning_rate")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        problems.append(f"the learning rate is {lr!r}, not a constant: a learning-rate schedule is not replayed")
    wd = opt.get("weight_decay") or 0.0
    if wd:
        if name in ("sgd", "rmsprop"):
            problems.append(f"{opt_class}(weight_decay={wd}) is not replayable (minireg decays decoupled only in "
                            "Adam/AdamW's Keras flavor)")
        elif name is not None:
            hparams["weight_decay"] = wd
    elif name == "adamw":
        hparams["weight_decay"] = 0.0
    if opt.get("global_clipnorm"):
        controls["clip_grad_norm"] = opt["global_clipnorm"]
    if opt.get("clipvalue"):
        controls["clip_grad_value"] = opt["clipvalue"]

    loss_class = config["loss"]["class"]
    loss = LOSSES.get(loss_class)
    delta = 1.0
    if loss is None:
        problems.append(f"loss {loss_class!r} is not replayable; replayable: MeanSquaredError, MeanAbsoluteError, "
                        "Huber")
    kwargs = dict(config["loss"].get("kwargs") or {})
    reduction = kwargs.pop("reduction", (config["loss"].get("config") or {}).get("reduction", REDUCTIONS[0]))
    if reduction not in REDUCTIONS:
        problems.append(f"the loss reduction is {reduction!r}; replayable: {REDUCTIONS}")
    if loss == "huber":
        delta = kwargs.pop("delta", 1.0)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("name", "dtype")}
    if kwargs:
        problems.append(f"loss {loss_class} has arguments minireg does not know: {sorted(kwargs)}")
    _refuse(problems)

    sizes = [weights[0].shape[0]] + [layer["units"] for layer in layers]
    init = {}
    for k in range(len(layers)):
        init[f"W{k + 1}"], init[f"b{k + 1}"] = weights[2 * k].copy(), weights[2 * k + 1].copy()
    return {"framework": FRAMEWORK, "model": "mlp" if len(layers) > 1 else "linear", "sizes": tuple(sizes),
            "hidden": tuple(sizes[1:-1]), "activation": ACTIVATIONS[hidden_acts[0]] if hidden_acts else None,
            "loss": loss, "delta": float(delta), "optimizer": name, "lr": float(lr),
            "hparams": {k: (bool(v) if isinstance(v, bool) else float(v)) for k, v in hparams.items()},
            "controls": {k: float(v) for k, v in controls.items()}, "init": init, "dtype": dtypes[0],
            "flavor": "keras", "weight_names": [f"{k}" for k in range(len(weights))]}


def _name_of(obj):
    """A loss's or activation's name: a string as is, a function's __name__, else its class name."""
    if isinstance(obj, str):
        return obj
    return getattr(obj, "__name__", None) or type(obj).__name__


def spec_from_model(model):
    """The plain settings (see spec_from_config) of a compiled ``keras.Sequential`` of Dense layers; reads
    ``model.layers`` (units, activation, use_bias, regularizers, constraints, trainable, get_weights()),
    ``model.losses``, ``model.optimizer`` (class, get_config(), iterations, excluded-from-weight-decay) and
    ``model.loss``. Changes nothing. Refuses what cannot be replayed, with every reason in one ValueError."""
    problems = []
    if type(model).__name__ != "Sequential":
        _refuse([f"it is a {type(model).__name__}; replayable: a keras.Sequential of Dense layers"])
    layers, configs, weights = [], [], []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind != "Dense":
            problems.append(f"layer {layer.name!r} is a {kind}; replayable: Dense layers only")
            continue
        layers.append(layer)
        configs.append({"units": int(layer.units), "activation": _name_of(layer.activation)})
        if not layer.use_bias:
            problems.append(f"layer {layer.name!r} has no bias (use_bias=False)")
        for attr in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                     "bias_constraint"):
            if getattr(layer, attr, None) is not None:
                problems.append(f"layer {layer.name!r} has a {attr}")
        if not layer.trainable:
            problems.append(f"layer {layer.name!r} is not trainable")
        if getattr(layer, "lora_enabled", False):
            problems.append(f"layer {layer.name!r} has LoRA enabled")
        if getattr(layer, "quantization_mode", None):
            problems.append(f"layer {layer.name!r} is quantized")
        compute = getattr(layer, "compute_dtype", None)
        if compute is not None and compute != getattr(layer, "dtype", compute):
            problems.append(f"layer {layer.name!r} computes in {compute} but stores {layer.dtype} (mixed precision)")
        weights += list(layer.get_weights())
    if not model.trainable:
        problems.append("the model is not trainable")
    if len(getattr(model, "losses", ())):
        problems.append("the model adds losses of its own (add_loss or regularization)")
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        problems.append("it is not compiled (no optimizer): call model.compile(optimizer=..., loss=...) first")
        _refuse(problems)

    opt_config = dict(optimizer.get_config())
    steps = int(np.asarray(optimizer.iterations))
    if steps:
        problems.append(f"its optimizer has taken {steps} steps already (its state is not replayed): replay a "
                        "freshly compiled model")
    if opt_config.get("weight_decay") and (len(getattr(optimizer, "_exclude_from_weight_decay", ()) or ())
                                           or getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
                                           is not None):
        problems.append("some variables are excluded from weight decay (exclude_from_weight_decay); minireg "
                        "decays every weight")
    compile_config = getattr(getattr(model, "_compile_config", None), "config", None) or {}
    if compile_config.get("loss_weights") is not None:
        problems.append(f"loss_weights={compile_config['loss_weights']!r} is not replayed")
    loss_obj = getattr(model, "loss", None)
    if loss_obj is None or isinstance(loss_obj, (list, tuple, dict)):
        problems.append(f"the loss is {loss_obj!r}; replayable: one MeanSquaredError, MeanAbsoluteError or Huber")
        loss_obj = "MeanSquaredError"  # a stand-in, so that the other settings are checked too

    loss = {"class": _name_of(loss_obj), "kwargs": dict(getattr(loss_obj, "_fn_kwargs", None) or {})}
    if getattr(loss_obj, "reduction", None) is not None:
        loss["kwargs"]["reduction"] = loss_obj.reduction
    config = {"layers": configs, "optimizer": {"class": type(optimizer).__name__, "config": opt_config},
              "loss": loss}
    return spec_from_config(config, weights, problems)


def _running_means(batch_losses, sizes, dtype):
    """Keras' Mean metric over an epoch's batches: total += loss_b·N_b and count += N_b in ``dtype``; the
    mean total/count after each batch."""
    dt = np.dtype(dtype).type
    total, count, out = dt(0), dt(0), []
    for loss, size in zip(batch_losses, sizes, strict=True):
        total = dt(total + dt(loss) * dt(size))
        count = dt(count + dt(size))
        out.append(dt(total / count))
    return np.array(out, dtype=np.float64)


def _weights_list(spec, arrays):
    """minireg's named arrays as Keras' get_weights() list."""
    return [np.array(arrays[n]) for k in range(len(spec["sizes"]) - 1) for n in (f"W{k + 1}", f"b{k + 1}")]


def replay_spec(spec, X, y, epochs=1, batch_size=DEFAULT_BATCH_SIZE, **overrides):
    """Run the training ``spec`` describes (``model.fit(X, y, epochs, batch_size, shuffle=False)``) with
    minireg.train and return its TrainResult, with ``result.replayed`` holding what Keras reports (module
    docstring). ``overrides`` are train()'s arguments (Keras names such as learning_rate accepted), applied
    last: e.g. ``trace=True``, ``learning_rate=1e-3``."""
    kwargs = _train_kwargs(spec, epochs, DEFAULT_BATCH_SIZE if batch_size is None else batch_size, overrides)
    result = train(X, y, **kwargs)
    result.replayed = replayed(spec, result)
    return result


def _train_kwargs(spec, epochs, batch_size, overrides):
    kwargs = dict(model=spec["model"], hidden=spec["hidden"] or (10,), activation=spec["activation"] or "relu",
                  loss=spec["loss"], delta=spec["delta"], optimizer=spec["optimizer"], lr=spec["lr"],
                  flavor=spec["flavor"], init=spec["init"], dtype=spec["dtype"], epochs=epochs,
                  batch_size=batch_size, shuffle=False, trace="norms", **spec["controls"])
    if overrides.get("optimizer", spec["optimizer"]) == spec["optimizer"]:
        kwargs.update(spec["hparams"])
    kwargs.update(overrides)
    return kwargs


def _steps_by_epoch(result):
    """(epochs done, steps per epoch, batch sizes of an epoch, the trace's batch losses by epoch or None)."""
    cfg, trace = result.config, result.trace
    n, bs, S = cfg["n_samples"], cfg["effective_batch_size"], cfg["steps_per_epoch"]
    sizes = [bs] * (S - 1) + [n - (S - 1) * bs]
    E = len(result.history["loss"])
    if trace is None or trace.every != 1 or len(trace) < E * S or cfg.get("resumed"):
        return E, S, sizes, None
    return E, S, sizes, np.asarray(trace.loss[:E * S], np.float64).reshape(E, S)


def _epoch_params(result, E, S):
    """minireg's named arrays after each epoch (trace=True: the params before each epoch's first step, and
    the last parameters), or None."""
    trace = result.trace
    if trace is None or trace.params is None or trace.every != 1 or result.config.get("resumed"):
        return None
    rows = [trace.params[trace.row_of(e * S)] for e in range(1, E)] if E else []
    rows.append(result.continuation.theta)
    return result.layout.unflatten(np.array(rows[:E]))


def replayed(spec, result):
    """What Keras reports for the run ``result`` replayed (module docstring)."""
    E, S, sizes, losses = _steps_by_epoch(result)
    out = {"framework": FRAMEWORK, "loss": None, "batch_loss": None,
           "weights": _weights_list(spec, result.layout.unflatten(result.continuation.theta))}
    if losses is not None:
        running = np.array([_running_means(losses[e], sizes, spec["dtype"]) for e in range(E)]).reshape(E, S)
        out["batch_loss"], out["loss"] = running, running[:, -1].tolist()
    params = _epoch_params(result, E, S)
    if params is not None:
        out["epoch_weights"] = _weights_list(spec, params)
    return out


def replay_model(model, X, y, epochs=1, batch_size=DEFAULT_BATCH_SIZE, **overrides):
    """``model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=False)`` replayed by minireg, without
    touching the model: spec_from_model then replay_spec. Keras' defaults: epochs=1, batch_size=32."""
    return replay_spec(spec_from_model(model), X, y, epochs=epochs, batch_size=batch_size, **overrides)
