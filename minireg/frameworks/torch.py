"""Replay a PyTorch training loop with minireg (issue #18): the same training, step for step, as a TrainResult.

Two steps, so that only the first touches torch objects (and the tests need no torch):

    spec = spec_from_model(net, optimizer, loss=torch.nn.MSELoss())     # reads them; changes nothing
    result = replay_spec(spec, X, y, epochs=5, batch_size=16)
    result = replay_module(net, X, y, optimizer=optimizer, epochs=5, batch_size=16)     # the two together

What is replayed: the plain loop over batches in row order (the last one partial) ::

    for epoch in range(epochs):
        for start in range(0, n, batch_size):
            optimizer.zero_grad(); loss_fn(net(X[b]).squeeze(1), y[b]).backward(); optimizer.step()

of a ``torch.nn.Sequential`` (or a single ``Linear``) of ``Linear`` layers with bias, every hidden layer followed
by the same activation (``ReLU``, ``Tanh``, ``Sigmoid``; ``Identity`` or none: linear) and a ``Linear(_, 1)``
output without activation; float64 (or float32) parameters; ``torch.optim.SGD``, ``RMSprop``, ``Adam``
(``decoupled_weight_decay=True``: AdamW), ``AdamW`` or ``Adagrad`` with one param group holding exactly the
module's parameters, fresh (no step taken) and without a scheduler; loss ``MSELoss`` (the default),
``HuberLoss(delta)`` or ``L1Loss`` with reduction "mean". It runs ``minireg.train(..., flavor="torch",
init=<the module's weights>, shuffle=False)``: torch's update rules and arithmetic (float64: within 1e-12).

``result.replayed`` holds what such a loop reports: ``batch_loss`` (every step's ``loss.item()``, before its
step), ``loss`` (per epoch ``sum_b N_b·loss_b / n``, as loops usually print it), ``full_loss`` (the loss over all
rows with the end-of-epoch weights, = ``result.history["loss"]``), ``state_dict`` (the parameters after the run,
by their state_dict names, in torch's layout: Linear weight (out, in)) and, with ``trace=True``,
``epoch_state_dict`` (per name an (epochs, *shape) array: the parameters after each epoch). The losses need
every step's batch loss, so the run records ``trace="norms"`` unless told otherwise.

Anything else (other modules, per-layer activations, an activated output, several param groups, maximize=True,
a scheduler, frozen parameters, an optimizer that has stepped, other losses, ...) is refused with one ValueError
naming every reason, before anything runs.
"""
import numpy as np

from ..train import train

FRAMEWORK = "torch"
ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Identity": None}
OPTIMIZERS = {"SGD": "sgd", "RMSprop": "rmsprop", "Adam": "adam", "AdamW": "adamw", "Adagrad": "adagrad"}
# each optimizer's param-group options that carry a hyperparameter, and their minireg names ("betas": two)
HPARAMS = {
    "sgd": {"momentum": "momentum", "dampening": "dampening", "nesterov": "nesterov", "weight_decay": "weight_decay"},
    "rmsprop": {"alpha": "alpha", "eps": "eps", "centered": "centered", "momentum": "momentum",
                "weight_decay": "weight_decay"},
    "adam": {"betas": ("beta1", "beta2"), "eps": "eps", "weight_decay": "weight_decay", "amsgrad": "amsgrad"},
    "adagrad": {"lr_decay": "lr_decay", "eps": "eps", "weight_decay": "weight_decay",
                "initial_accumulator_value": "initial_accumulator_value"},
}
HPARAMS["adamw"] = HPARAMS["adam"]
# options that choose an implementation, not the arithmetic's result
IGNORED = {"lr", "params", "foreach", "fused", "capturable", "differentiable", "decoupled_weight_decay"}
LOSSES = {"MSELoss": "mse", "mse_loss": "mse", "HuberLoss": "huber", "L1Loss": "mae", "l1_loss": "mae"}


def _refuse(problems, what="this torch training"):
    if problems:
        raise ValueError(f"minireg cannot replay {what}: " + "; ".join(problems) + ".")


def _numpy(a):
    """A tensor (detached, on the CPU) or array-like as a NumPy array."""
    if hasattr(a, "detach"):
        a = a.detach()
        a = a.cpu() if hasattr(a, "cpu") else a
        return np.array(a.numpy(), copy=True)
    return np.array(a, copy=True)


def spec_from_config(config, state_dict, problems=None):
    """The plain settings (a dict) of a torch training described as in tests/fixtures/replay_cases.json:
    ``config`` has ``modules`` ([["Linear", {"in_features", "out_features"}], ["ReLU", {}], ...] in order),
    ``optimizer`` ({"class", "defaults": the param group's options}) and optionally ``loss`` ({"class": "MSELoss"
    | "HuberLoss" | "L1Loss", "kwargs": {"delta", "reduction"}}; MSELoss by default); ``state_dict`` maps the
    Linear layers' parameter names, in order (weight then bias per layer), to arrays in torch's layout (weight
    (out, in)). Refuses what cannot be replayed."""
    problems = list(problems or ())  # a caller's reasons, refused together with these
    modules = [(m[0], dict(m[1]) if len(m) > 1 else {}) for m in config["modules"]]
    linears, after = [], []  # the Linear layers; the activations after each
    for k, (kind, kw) in enumerate(modules):
        if kind == "Linear":
            linears.append(kw)
            after.append([])
        elif kind in ACTIVATIONS and not linears:
            problems.append(f"module {k} ({kind}) comes before the first Linear")
        elif kind in ACTIVATIONS:
            if ACTIVATIONS[kind] is not None:
                after[-1].append(kind)
        else:
            problems.append(f"module {k} is a {kind}; replayable: Linear, {', '.join(ACTIVATIONS)}")
    for k, a in enumerate(after):
        if len(a) > 1:
            problems.append(f"Linear {k} is followed by several activations {a}")
    if not linears:
        problems.append("there is no Linear layer")
    elif after[-1]:
        problems.append(f"the output Linear is followed by {after[-1][0]}; minireg's output layer is linear")
    acts = [ACTIVATIONS[a[0]] if a else None for a in after[:-1]]
    if len(set(acts)) > 1:
        problems.append(f"the hidden layers have different activations {acts}; minireg uses one for all")
    if linears and linears[-1].get("out_features") != 1:
        problems.append(f"the output Linear has {linears[-1].get('out_features')} outputs; minireg replays one")
    for k in range(1, len(linears)):
        if linears[k].get("in_features") != linears[k - 1].get("out_features"):
            problems.append(f"Linear {k} takes {linears[k].get('in_features')} inputs but Linear {k - 1} gives "
                            f"{linears[k - 1].get('out_features')}")

    names = list(state_dict)
    arrays = [np.asarray(state_dict[n]) for n in names]
    if len(arrays) != 2 * len(linears):
        problems.append(f"expected {2 * len(linears)} parameters (weight and bias per Linear), got {len(arrays)}: "
                        f"{names}")
    else:
        for k, lin in enumerate(linears):
            shape_w, shape_b = (lin.get("out_features"), lin.get("in_features")), (lin.get("out_features"),)
            if arrays[2 * k].shape != shape_w or arrays[2 * k + 1].shape != shape_b:
                problems.append(f"{names[2 * k]}, {names[2 * k + 1]} have shapes {arrays[2 * k].shape}, "
                                f"{arrays[2 * k + 1].shape}; expected {shape_w}, {shape_b}")
    dtypes = sorted({a.dtype.name for a in arrays})
    if len(dtypes) > 1 or (dtypes and dtypes[0] not in ("float32", "float64")):
        problems.append(f"the parameters are {dtypes}; replayable: all float64 or all float32")

    opt_class, group = config["optimizer"]["class"], dict(config["optimizer"]["defaults"])
    name = OPTIMIZERS.get(opt_class)
    hparams = {}
    if name is None:
        problems.append(f"optimizer {opt_class} is not replayable; replayable: {sorted(OPTIMIZERS)}")
    else:
        if name == "adam" and group.get("decoupled_weight_decay"):
            name = "adamw"  # Adam(decoupled_weight_decay=True) is AdamW
        for key, target in HPARAMS[name].items():
            if key not in group:
                continue
            if isinstance(target, tuple):
                hparams.update(zip(target, (float(b) for b in group[key]), strict=True))
            else:
                hparams[target] = group[key]
        if group.get("maximize"):
            problems.append("maximize=True is not replayable (minireg minimizes)")
        unknown = [k for k in group if k not in HPARAMS[name] and k not in IGNORED and k != "maximize"
                   and group[k] not in (None, False)]
        if "initial_lr" in unknown:
            problems.append("a learning-rate scheduler is attached (the param group has initial_lr); schedulers "
                            "are not replayed")
            unknown.remove("initial_lr")
        if unknown:
            problems.append(f"{opt_class}'s param group has options minireg does not know: {', '.join(unknown)}")
    lr = group.get("lr")
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        problems.append(f"the learning rate is {lr!r}")

    loss_cfg = config.get("loss") or {"class": "MSELoss", "kwargs": {}}
    loss = LOSSES.get(loss_cfg["class"])
    kwargs = dict(loss_cfg.get("kwargs") or {})
    if loss is None:
        problems.append(f"loss {loss_cfg['class']} is not replayable; replayable: MSELoss, HuberLoss, L1Loss")
    reduction = kwargs.pop("reduction", "mean")
    if reduction != "mean":
        problems.append(f"the loss reduction is {reduction!r}; replayable: 'mean'")
    delta = float(kwargs.pop("delta", 1.0)) if loss == "huber" else 1.0
    if kwargs:
        problems.append(f"loss {loss_cfg['class']} has arguments minireg does not know: {sorted(kwargs)}")
    _refuse(problems)

    sizes = [linears[0]["in_features"]] + [lin["out_features"] for lin in linears]
    init = {}
    for k in range(len(linears)):
        init[f"W{k + 1}"], init[f"b{k + 1}"] = arrays[2 * k].T.copy(), arrays[2 * k + 1].copy()
    return {"framework": FRAMEWORK, "model": "mlp" if len(linears) > 1 else "linear", "sizes": tuple(sizes),
            "hidden": tuple(sizes[1:-1]), "activation": (acts[0] or "identity") if acts else None,
            "loss": loss, "delta": delta, "optimizer": name, "lr": lr,
            "hparams": {k: (bool(v) if isinstance(v, bool) else float(v)) for k, v in hparams.items()},
            "controls": {}, "init": init, "dtype": dtypes[0], "flavor": "torch", "weight_names": names}


def _modules_of(model):
    """The modules of a Sequential (nested Sequentials flattened) or [model] for a single Linear."""
    kind = type(model).__name__
    if kind == "Sequential":
        return [m for child in model.children() for m in _modules_of(child)]
    return [model]


def _loss_config(loss):
    if loss is None:
        return {"class": "MSELoss", "kwargs": {}}
    kind = getattr(loss, "__name__", None) or type(loss).__name__
    kwargs = {}
    if getattr(loss, "reduction", None) is not None:
        kwargs["reduction"] = loss.reduction
    if kind == "HuberLoss":
        kwargs["delta"] = float(loss.delta)
    return {"class": kind, "kwargs": kwargs}


def spec_from_model(model, optimizer, loss=None):
    """The plain settings (see spec_from_config) of training ``model`` (a ``torch.nn.Sequential`` or a single
    ``Linear``) with ``optimizer`` (a fresh ``torch.optim`` optimizer over its parameters) and ``loss`` (a loss
    module, or ``torch.nn.functional.mse_loss``/``l1_loss``; None: ``MSELoss()``). Reads the modules' class names,
    ``in_features``/``out_features``/``weight``/``bias``, ``named_parameters()`` (names, ``requires_grad``,
    dtype), the optimizer's class, ``param_groups``, ``state`` and whether a scheduler wrapped its ``step``.
    Changes nothing. Refuses what cannot be replayed, with every reason in one ValueError."""
    problems = []
    if type(model).__name__ not in ("Sequential", "Linear"):
        _refuse([f"the model is a {type(model).__name__}; replayable: a torch.nn.Sequential of Linear and "
                 "activation modules, or a Linear"])
    if optimizer is None:
        _refuse(["no optimizer given: pass optimizer=torch.optim.<...>(model.parameters(), ...)"])
    modules = []
    for m in _modules_of(model):
        kind = type(m).__name__
        if kind == "Linear":
            if m.bias is None:
                problems.append(f"{m!r} has no bias (bias=False)")
            modules.append(["Linear", {"in_features": int(m.in_features), "out_features": int(m.out_features)}])
        else:
            modules.append([kind, {}])
    named = list(model.named_parameters())
    for n, p in named:
        if not p.requires_grad:
            problems.append(f"parameter {n} is frozen (requires_grad=False)")
    groups = list(optimizer.param_groups)
    if len(groups) != 1:
        problems.append(f"the optimizer has {len(groups)} param groups; replayable: one")
    elif {id(p) for p in groups[0]["params"]} != {id(p) for _, p in named} or \
            len(groups[0]["params"]) != len(named):
        problems.append("the optimizer's param group does not hold exactly the model's parameters")
    # Adagrad fills its state when built (step 0); a step taken leaves step >= 1 in every optimizer's state
    steps = max((float(st.get("step", 1)) for st in optimizer.state.values()), default=0)
    if steps:
        problems.append(f"the optimizer has taken {steps:g} steps already (its state is not replayed): replay a "
                        "fresh optimizer")
    if getattr(optimizer.step, "_wrapped_by_lr_sched", False) or any("initial_lr" in g for g in groups):
        problems.append("a learning-rate scheduler is attached to the optimizer; schedulers are not replayed")
    if getattr(optimizer, "_optimizer_step_pre_hooks", None) or getattr(optimizer, "_optimizer_step_post_hooks",
                                                                        None):
        problems.append("the optimizer has step hooks")
    state_dict = {n: _numpy(p) for n, p in named}
    config = {"modules": modules, "loss": _loss_config(loss),
              "optimizer": {"class": type(optimizer).__name__,
                            "defaults": {k: v for k, v in groups[0].items() if k not in ("params", "initial_lr")}}}
    return spec_from_config(config, state_dict, problems)


def _train_kwargs(spec, epochs, batch_size, overrides):
    overrides = dict(overrides)
    if "betas" in overrides:  # torch's name for Adam's two betas
        overrides["beta1"], overrides["beta2"] = (float(b) for b in overrides.pop("betas"))
    kwargs = dict(model=spec["model"], hidden=spec["hidden"] or (10,), activation=spec["activation"] or "relu",
                  loss=spec["loss"], delta=spec["delta"], optimizer=spec["optimizer"], lr=spec["lr"],
                  flavor=spec["flavor"], init=spec["init"], dtype=spec["dtype"], epochs=epochs,
                  batch_size=batch_size, shuffle=False, trace="norms", **spec["controls"])
    if overrides.get("optimizer", spec["optimizer"]) == spec["optimizer"]:
        kwargs.update(spec["hparams"])
    kwargs.update(overrides)
    return kwargs


def replay_spec(spec, X, y, epochs, batch_size=None, **overrides):
    """Run the loop ``spec`` describes (module docstring) for ``epochs`` epochs of batches of ``batch_size``
    rows in row order (None: the whole data, one step per epoch) with minireg.train; return its TrainResult with
    ``result.replayed`` (module docstring). ``overrides`` are train()'s arguments, applied last (e.g.
    ``trace=True``, ``lr=1e-3``; ``betas=(b1, b2)`` accepted)."""
    X, y = _numpy(X), _numpy(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    result = train(X, y, **_train_kwargs(spec, epochs, batch_size, overrides))
    result.replayed = replayed(spec, result)
    return result


def replayed(spec, result):
    """What the loop reports for the run ``result`` replayed (module docstring)."""
    cfg, trace = result.config, result.trace
    n, bs, S = cfg["n_samples"], cfg["effective_batch_size"], cfg["steps_per_epoch"]
    sizes = [bs] * (S - 1) + [n - (S - 1) * bs]
    E = len(result.history["loss"])
    names = spec["weight_names"]

    def torch_layout(arrays):
        out = {}
        for k in range(len(spec["sizes"]) - 1):
            w, b = np.asarray(arrays[f"W{k + 1}"]), np.asarray(arrays[f"b{k + 1}"])
            out[names[2 * k]], out[names[2 * k + 1]] = np.swapaxes(w, -1, -2).copy(), b.copy()
        return out

    out = {"framework": FRAMEWORK, "loss": None, "batch_loss": None,
           "full_loss": np.asarray(result.history["loss"], np.float64).tolist(),
           "state_dict": torch_layout(result.layout.unflatten(result.continuation.theta))}
    whole = trace is not None and trace.every == 1 and len(trace) >= E * S and not cfg.get("resumed")
    if whole:
        losses = np.asarray(trace.loss[:E * S], np.float64)
        out["batch_loss"] = losses.tolist()
        epoch_loss = []
        for e in range(E):
            acc = 0.0
            for s, size in enumerate(sizes):
                acc += float(losses[e * S + s]) * size
            epoch_loss.append(acc / n)
        out["loss"] = epoch_loss
        if trace.params is not None:
            rows = [trace.params[trace.row_of(e * S)] for e in range(1, E)] + [result.continuation.theta]
            out["epoch_state_dict"] = torch_layout(result.layout.unflatten(np.array(rows[:E])))
    return out


def replay_module(model, X, y, optimizer=None, epochs=None, batch_size=None, loss=None, **overrides):
    """The plain torch loop (module docstring) over ``model`` with ``optimizer`` and ``loss`` (None: MSELoss)
    replayed by minireg, without touching them: spec_from_model then replay_spec. ``epochs`` is required;
    ``batch_size=None`` is one batch of all rows."""
    spec = spec_from_model(model, optimizer, loss)
    if epochs is None:
        raise ValueError("replay_module needs epochs=: how many passes over the data the loop makes.")
    return replay_spec(spec, X, y, epochs=epochs, batch_size=batch_size, **overrides)
