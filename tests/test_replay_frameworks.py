"""minireg.frameworks.keras / .torch (issue #18): replaying Keras fit and a plain torch loop.

The reference runs were recorded from the real packages by tests/fixtures/make_replay_fixtures.py (its docstring
documents the files); this file imports neither keras nor torch. The fixture cases are replayed from their
recorded settings (spec_from_config, the code path spec_from_model ends in) and, for the reading code, from small
duck-typed stand-ins carrying exactly the attributes spec_from_model reads.
"""
import json
import pathlib

import numpy as np
import pytest

from minireg.frameworks import keras as kr
from minireg.frameworks import torch as tr

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
CASES = json.loads((FIXTURES / "replay_cases.json").read_text(encoding="utf-8"))["cases"]
KERAS = [c for c in CASES if c["framework"] == "keras"]
TORCH = [c for c in CASES if c["framework"] == "torch"]


@pytest.fixture(scope="module")
def keras_npz():
    with np.load(FIXTURES / "replay_keras.npz") as f:
        return dict(f)


@pytest.fixture(scope="module")
def torch_npz():
    with np.load(FIXTURES / "replay_torch.npz") as f:
        return dict(f)


def keras_init(case, z):
    return [z[f"{case['id']}/init/{j}"] for j in range(2 * len(case["layers"]))]


def torch_init(case, z):
    return {k: z[f"{case['id']}/init/{k}"] for k in case["state_dict_keys"]}


def assert_keras_replay(case, z, result):
    """Weights after every epoch within 1e-4 of their scale (float32), history["loss"] and the per-batch logs
    within 1e-4 relative."""
    i, rep = case["id"], result.replayed
    assert result.config["dtype"] == "float32" and result.config["flavor"] == "keras"
    for j in range(2 * len(case["layers"])):
        want = z[f"{i}/epoch/{j}"]
        got = rep["epoch_weights"][j]
        assert got.shape == want.shape
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale, err_msg=f"{i} weights {j}")
        np.testing.assert_allclose(rep["weights"][j], want[-1], rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(rep["loss"], z[f"{i}/loss"], rtol=1e-4, err_msg=f"{i} history loss")
    np.testing.assert_allclose(rep["batch_loss"], z[f"{i}/batch_loss"], rtol=1e-4, err_msg=f"{i} batch logs")


def assert_torch_replay(case, z, result):
    """Parameters after every epoch, every batch loss, the epoch losses: within 1e-12 (float64)."""
    i, rep = case["id"], result.replayed
    assert result.config["dtype"] == "float64" and result.config["flavor"] == "torch"
    for k in case["state_dict_keys"]:
        want = z[f"{i}/epoch/{k}"]
        assert rep["epoch_state_dict"][k].shape == want.shape
        np.testing.assert_allclose(rep["epoch_state_dict"][k], want, rtol=0, atol=1e-12, err_msg=f"{i} {k}")
        np.testing.assert_allclose(rep["state_dict"][k], want[-1], rtol=0, atol=1e-12)
    for name in ("batch_loss", "loss", "full_loss"):
        np.testing.assert_allclose(rep[name], z[f"{i}/{name}"], rtol=1e-12, atol=1e-12, err_msg=f"{i} {name}")


@pytest.mark.parametrize("case", KERAS, ids=[c["id"] for c in KERAS])
def test_keras_fixture_replayed(case, keras_npz):
    z = keras_npz
    spec = kr.spec_from_config(case, keras_init(case, z))
    fit = case["fit"]
    result = kr.replay_spec(spec, z[f"{case['id']}/X"], z[f"{case['id']}/y"], epochs=fit["epochs"],
                            batch_size=fit["batch_size"], trace=True)
    assert_keras_replay(case, z, result)


@pytest.mark.parametrize("case", TORCH, ids=[c["id"] for c in TORCH])
def test_torch_fixture_replayed(case, torch_npz):
    z = torch_npz
    spec = tr.spec_from_config(case, torch_init(case, z))
    result = tr.replay_spec(spec, z[f"{case['id']}/X"], z[f"{case['id']}/y"], epochs=case["epochs"],
                            batch_size=case["batch_size"], trace=True)
    assert_torch_replay(case, z, result)


def test_fixtures_cover_the_mappings():
    """The recorded cases exercise every optimizer, loss and activation mapping they claim to."""
    assert {c["optimizer"]["class"] for c in KERAS} == set(kr.OPTIMIZERS)
    assert {c["loss"]["class"] for c in KERAS} == {"MeanSquaredError", "MeanAbsoluteError", "Huber"}
    assert {layer["activation"] for c in KERAS for layer in c["layers"]} == set(kr.ACTIVATIONS)
    assert {c["optimizer"]["class"] for c in TORCH} == set(tr.OPTIMIZERS) - {"Adagrad"}
    assert {m[0] for c in TORCH for m in c["modules"]} == {"Linear", "ReLU", "Tanh", "Sigmoid"}


# ------------------------------------------------------------------------------------------------------------
# duck-typed stand-ins: only the attributes spec_from_model reads

def _named(cls_name, /, **attrs):
    """An instance of a fresh class called ``cls_name`` with ``attrs``."""
    obj = type(cls_name, (), {})()
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def _function(name):
    def f(x):
        return x
    f.__name__ = name
    return f


def fake_keras_model(case, weights, *, iterations=0, layers=None, compiled=True, loss=None, exclude=False):
    """A compiled keras.Sequential as spec_from_model sees it, built from a fixture case."""
    dense = []
    for k, layer in enumerate(layers or case["layers"]):
        w = weights[2 * k:2 * k + 2]
        dense.append(_named("Dense", name=f"dense_{k}", units=layer["units"],
                            activation=_function(layer["activation"]), use_bias=True, kernel_regularizer=None,
                            bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                            bias_constraint=None, trainable=True, lora_enabled=False, quantization_mode=None,
                            dtype="float32", compute_dtype="float32", get_weights=lambda w=w: [a.copy() for a in w]))
    opt = _named(case["optimizer"]["class"], iterations=np.int32(iterations),
                 _exclude_from_weight_decay=set(), _exclude_from_weight_decay_pattern="bias" if exclude else None,
                 get_config=lambda: dict(case["optimizer"]["config"]))
    if loss is None:
        loss = _named(case["loss"]["class"], _fn_kwargs=dict(case["loss"]["kwargs"]),
                      reduction=case["loss"]["config"]["reduction"])
    compile_config = _named("CompileConfig", config={"loss_weights": None})
    return _named("Sequential", layers=[_named("InputLayer", name="input_layer")] + dense, trainable=True, losses=[],
                  optimizer=opt if compiled else None, loss=loss, _compile_config=compile_config)


class FakeTensor:
    """A parameter: numpy(), detach(), cpu(), requires_grad."""

    def __init__(self, a):
        self.a, self.requires_grad = np.array(a), True

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


def fake_torch(case, state_dict, *, optimizer_class=None, group=None, state=None):
    """(net, optimizer) as spec_from_model sees them: a Sequential of Linear/activation modules, a torch.optim
    optimizer with one param group over the net's parameters."""
    modules, named = [], []
    for idx, (kind, kw) in enumerate(case["modules"]):
        if kind == "Linear":
            w, b = FakeTensor(state_dict[f"{idx}.weight"]), FakeTensor(state_dict[f"{idx}.bias"])
            modules.append(_named("Linear", weight=w, bias=b, **kw))
            named += [(f"{idx}.weight", w), (f"{idx}.bias", b)]
        else:
            modules.append(_named(kind))
    net = _named("Sequential", children=lambda: iter(modules), named_parameters=lambda: iter(named))
    defaults = {k: (tuple(v) if isinstance(v, list) else v) for k, v in case["optimizer"]["defaults"].items()}
    groups = [dict(defaults, params=[p for _, p in named], **(group or {}))]
    opt = _named(optimizer_class or case["optimizer"]["class"], param_groups=groups, state=state or {},
                 step=_function("step"), _optimizer_step_pre_hooks={}, _optimizer_step_post_hooks={})
    return net, opt


def assert_same_spec(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k == "init":
            assert a[k].keys() == b[k].keys()
            for n in a[k]:
                np.testing.assert_array_equal(a[k][n], b[k][n])
                assert a[k][n].dtype == b[k][n].dtype
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("case", KERAS, ids=[c["id"] for c in KERAS])
def test_keras_spec_from_model_reads_what_the_config_says(case, keras_npz):
    weights = keras_init(case, keras_npz)
    model = fake_keras_model(case, weights)
    spec = kr.spec_from_model(model)
    assert_same_spec(spec, kr.spec_from_config(case, weights))
    assert spec["init"]["W1"] is not weights[0]  # copied: the model's arrays are not the run's


@pytest.mark.parametrize("case", TORCH, ids=[c["id"] for c in TORCH])
def test_torch_spec_from_model_reads_what_the_config_says(case, torch_npz):
    state_dict = torch_init(case, torch_npz)
    net, opt = fake_torch(case, state_dict)
    spec = tr.spec_from_model(net, opt)
    assert_same_spec(spec, tr.spec_from_config(case, state_dict))
    np.testing.assert_array_equal(spec["init"]["W1"], state_dict["0.weight"].T)  # torch's (out, in) transposed


def test_replay_model_from_a_fake_keras_model(keras_npz):
    """replay_model = spec_from_model + replay_spec, the Huber delta read off the loss object."""
    case = next(c for c in KERAS if c["loss"]["kwargs"].get("delta") == 0.5)
    z = keras_npz
    model = fake_keras_model(case, keras_init(case, z))
    result = kr.replay_model(model, z[f"{case['id']}/X"], z[f"{case['id']}/y"], epochs=case["fit"]["epochs"],
                             batch_size=case["fit"]["batch_size"], trace=True)
    assert result.config["loss"] == "huber" and result.config["delta"] == 0.5
    assert_keras_replay(case, z, result)


def test_replay_module_from_fake_torch_objects(torch_npz):
    """replay_module = spec_from_model + replay_spec; y as a column is accepted."""
    case = next(c for c in TORCH if c["optimizer"]["class"] == "AdamW")
    z = torch_npz
    net, opt = fake_torch(case, torch_init(case, z))
    y = z[f"{case['id']}/y"][:, None]
    result = tr.replay_module(net, z[f"{case['id']}/X"], y, optimizer=opt, epochs=case["epochs"],
                              batch_size=case["batch_size"], trace=True)
    assert_torch_replay(case, z, result)


def test_keras_defaults_overrides_and_keras_names(keras_npz):
    """Keras' default batch of 32, trace="norms" by default (the losses come, not the epoch weights), Keras
    argument names as overrides, and trace=False leaving the losses unknown rather than wrong."""
    case = KERAS[2]
    z = keras_npz
    X, y = z[f"{case['id']}/X"], z[f"{case['id']}/y"]
    spec = kr.spec_from_config(case, keras_init(case, z))
    r = kr.replay_spec(spec, X, y, epochs=2)
    assert r.config["batch_size"] == 32 and r.config["shuffle"] is False and r.trace.mode == "norms"
    assert len(r.replayed["loss"]) == 2 and "epoch_weights" not in r.replayed
    r = kr.replay_spec(spec, X, y, epochs=1, batch_size=None, learning_rate=0.001, trace=False)
    assert r.config["lr"] == 0.001 and r.config["batch_size"] == 32 and r.replayed["loss"] is None
    assert [w.shape for w in r.replayed["weights"]] == [w.shape for w in keras_init(case, z)]


def test_torch_overrides(torch_npz):
    case = next(c for c in TORCH if c["optimizer"]["class"] == "Adam")
    z = torch_npz
    spec = tr.spec_from_config(case, torch_init(case, z))
    r = tr.replay_spec(spec, z[f"{case['id']}/X"], z[f"{case['id']}/y"], epochs=1, betas=(0.5, 0.9))
    assert (r.config["beta1"], r.config["beta2"]) == (0.5, 0.9) and r.config["effective_batch_size"] == \
        case["n_samples"]
    assert len(r.replayed["batch_loss"]) == 1 and "epoch_state_dict" not in r.replayed


def test_adam_with_decoupled_weight_decay_is_adamw(torch_npz):
    case = next(c for c in TORCH if c["optimizer"]["class"] == "Adam")
    net, opt = fake_torch(case, torch_init(case, torch_npz), group={"decoupled_weight_decay": True})
    assert tr.spec_from_model(net, opt)["optimizer"] == "adamw"


def test_torch_losses_and_linear_model(torch_npz):
    case = next(c for c in TORCH if len(c["modules"]) == 1)
    net, opt = fake_torch(case, torch_init(case, torch_npz))
    assert tr.spec_from_model(net, opt)["model"] == "linear"
    huber = tr.spec_from_model(net, opt, _named("HuberLoss", delta=0.3, reduction="mean"))
    assert (huber["loss"], huber["delta"]) == ("huber", 0.3)
    assert tr.spec_from_model(net, opt, _named("L1Loss", reduction="mean"))["loss"] == "mae"
    assert tr.spec_from_model(net, opt, _function("mse_loss"))["loss"] == "mse"


# ------------------------------------------------------------------------------------------------------------
# refusals: one ValueError naming every reason, before anything runs

def refused(fn, *args, **kwargs):
    with pytest.raises(ValueError, match="minireg cannot replay") as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_keras_refusals(keras_npz):
    case = next(c for c in KERAS if len(c["layers"]) == 3 and c["optimizer"]["class"] == "AdamW")
    weights = keras_init(case, keras_npz)
    mixed = [dict(case["layers"][0], activation="tanh"), dict(case["layers"][1], activation="relu"),
             dict(case["layers"][2], activation="relu")]
    msg = refused(kr.spec_from_model, fake_keras_model(case, weights, layers=mixed, iterations=3, exclude=True,
                                                       loss=_named("MeanSquaredLogarithmicError")))
    for reason in ("output layer has activation 'relu'", "different activations", "taken 3 steps",
                   "excluded from weight decay", "MeanSquaredLogarithmicError"):
        assert reason in msg
    assert "not compiled" in refused(kr.spec_from_model, fake_keras_model(case, weights, compiled=False))
    functional = _named("Functional", layers=[])
    assert "Functional" in refused(kr.spec_from_model, functional)
    model = fake_keras_model(case, weights)
    model.layers.insert(2, _named("Dropout", name="dropout"))
    assert "Dropout" in refused(kr.spec_from_model, model)

    def config(**opt):
        return {**case, "optimizer": {"class": opt.pop("cls", "SGD"), "config": {"learning_rate": 0.1, **opt}}}
    assert "schedule" in refused(kr.spec_from_config, config(learning_rate={"class_name": "ExponentialDecay"}),
                                 weights)
    msg = refused(kr.spec_from_config, config(weight_decay=0.1, clipnorm=1.0, use_ema=True), weights)
    assert "weight_decay=0.1" in msg and "clipnorm" in msg and "use_ema" in msg
    assert "Nadam" in refused(kr.spec_from_config, config(cls="Nadam"), weights)
    msg = refused(kr.spec_from_config, {**case, "loss": {"class": "Huber", "kwargs": {"reduction": "sum"}}}, weights)
    assert "'sum'" in msg
    assert "units" in refused(kr.spec_from_config, {**case, "layers": case["layers"][:-1]}, weights[:-2])


def test_torch_refusals(torch_npz):
    case = next(c for c in TORCH if len(c["modules"]) == 5)
    state_dict = torch_init(case, torch_npz)
    net, opt = fake_torch(case, state_dict, group={"maximize": True, "initial_lr": 0.1},
                          state={0: {"step": 2.0}})
    opt.param_groups.append(dict(opt.param_groups[0]))
    next(p for _, p in net.named_parameters()).requires_grad = False
    msg = refused(tr.spec_from_model, net, opt, _named("SmoothL1Loss", reduction="mean"))
    for reason in ("2 param groups", "maximize=True", "scheduler", "taken 2 steps", "frozen", "SmoothL1Loss"):
        assert reason in msg
    net, opt = fake_torch(case, state_dict)
    assert "reduction is 'sum'" in refused(tr.spec_from_model, net, opt, _named("MSELoss", reduction="sum"))
    assert "no optimizer" in refused(tr.replay_module, net, None, None, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        tr.replay_module(net, None, None, optimizer=opt)
    assert "MyNet" in refused(tr.spec_from_model, _named("MyNet"), opt)
    other = fake_torch(case, state_dict)[1]  # an optimizer over other tensors
    assert "exactly the model's parameters" in refused(tr.spec_from_model, net, other)

    def config(modules, **kw):
        return {**case, "modules": modules, **kw}
    lin = [["Linear", {"in_features": 4, "out_features": 6}], ["Linear", {"in_features": 6, "out_features": 4}],
           ["Linear", {"in_features": 4, "out_features": 1}]]
    msg = refused(tr.spec_from_config, config([lin[0], ["ReLU", {}], lin[1], ["Tanh", {}], lin[2], ["Sigmoid", {}],
                                               ["Dropout", {}]]), state_dict)
    assert "different activations" in msg and "output Linear is followed by Sigmoid" in msg and "Dropout" in msg
    wide = [lin[0], ["ReLU", {}], lin[1], ["ReLU", {}], ["Linear", {"in_features": 4, "out_features": 2}]]
    assert "2 outputs" in refused(tr.spec_from_config, config(wide), state_dict)
    assert "several activations" in refused(tr.spec_from_config, config([lin[0], ["ReLU", {}], ["ReLU", {}], lin[1],
                                                                          ["ReLU", {}], lin[2]]), state_dict)
    assert "NAdam" in refused(tr.spec_from_config, config(case["modules"], optimizer={"class": "NAdam",
                                                                                       "defaults": {}}), state_dict)
