"""The optimizers, one module each, every fact about an optimizer in its module:

    sgd.py      torch.optim.SGD          momentum, dampening, Nesterov, weight decay
    rmsprop.py  torch.optim.RMSprop      centered, momentum, weight decay
    adam.py     torch.optim.Adam, AdamW  AMSGrad, coupled or decoupled weight decay
    adagrad.py  torch.optim.Adagrad      lr_decay, initial_accumulator_value, weight decay

A module holds its names and defaults (``NAMES``, ``DEFAULTS``, ``LIMITS``), its hyperparameters as a
typed named tuple (``Hyper``, made by ``hyper(name, values)``), its named state (``State``: the rows of
the (rows, P) state array; ``state_rows(h)`` those a configuration uses, ``initial_state`` their
start), the update of one parameter in the textbook's order (``update``; the CUDA backend compiles
this same function as a device function), its float64 step scalars (``step_scalars``) and the
formula that ``explain`` prints (``explain``). The training loop's ``optimizer_step``
(kernels/loop.py) runs ``update`` over the flat parameter vector (a module may bring its own
``step`` loop instead), choosing the module from h's type when numba compiles.

Adding an optimizer is one module and one entry in ``MODULES``.
"""
from . import adagrad, adam, rmsprop, sgd
from ._common import FLAVORS

MODULES = (sgd, rmsprop, adam, adagrad)
BY_NAME = {name: module for module in MODULES for name in module.NAMES}
NAMES = tuple(BY_NAME)
DEFAULTS = {name: dict(module.DEFAULTS[name]) for name, module in BY_NAME.items()}
ADAPTIVE = tuple(name for name, module in BY_NAME.items() if module.ADAPTIVE)
BY_HYPER = {module.Hyper: module for module in MODULES}


def module_of(h):
    """The optimizer module of a Hyper tuple."""
    return BY_HYPER[type(h)]


def initial_state(optimizer, h, state):
    """Fill the state array before the first step: zeros, unless the module starts it otherwise
    (Adagrad's initial_accumulator_value)."""
    start = getattr(BY_NAME[optimizer], "initial_state", None)
    if start is not None:
        start(h, state)


def hyper(optimizer, values, flavor="torch"):
    """The typed Hyper tuple of a checked configuration, following ``flavor``'s arithmetic."""
    return BY_NAME[optimizer].hyper(optimizer, values, FLAVORS[flavor])


def flavor_defaults(optimizer, flavor):
    """The framework's defaults for the optimizer where they differ from torch's (lr included), or None
    when that framework has no such optimizer."""
    if flavor == "torch":
        return {}
    return getattr(BY_NAME[optimizer], "FLAVOR_DEFAULTS", {}).get(flavor, {}).get(optimizer)


def state_rows(optimizer, values, flavor="torch"):
    """(name, row) of the state rows the configuration uses, row being the index in its State."""
    module = BY_NAME[optimizer]
    names = module.state_rows(module.hyper(optimizer, values, FLAVORS[flavor]))
    return [(name, module.State._fields.index(name)) for name in names]


def n_state(optimizer):
    """Rows of the optimizer's state array."""
    return len(BY_NAME[optimizer].State._fields)
