"""MiniRegressor: :func:`minireg.train` as a scikit-learn regressor.

    from minireg import MiniRegressor
    from sklearn.model_selection import GridSearchCV
    search = GridSearchCV(MiniRegressor(), {"lr": [0.003, 0.01, 0.03], "optimizer": ["adam", "sgd"]})
    search.fit(X, y).best_estimator_.result_.trace

This module is the only part of minireg that imports scikit-learn; ``import minireg`` does not load
it (``minireg.MiniRegressor`` imports it on first use).
"""
import inspect
import warnings
from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .train import DivergenceWarning, train

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # older scikit-learn: the same thing, as a private method

    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


class MiniRegressor(RegressorMixin, BaseEstimator):
    """A linear model or an MLP trained by :func:`minireg.train`, as a scikit-learn regressor.

    Every keyword of ``minireg.train`` (all but ``X`` and ``y``) is a parameter of the same name
    with the same meaning; see ``minireg.train`` and the README. Optimizer hyperparameters
    (``momentum``, ``beta1``, ``amsgrad``, ...; PyTorch's names) go in ``optimizer_params``, a dict
    handed to ``train`` as keywords, because a scikit-learn estimator needs a fixed parameter list.
    Parameters are stored exactly as given and checked by ``train`` when ``fit`` runs.

    Defaults that differ from ``train``'s, so that ``MiniRegressor()`` fits typical tabular data
    sensibly without tuning (``train`` keeps plain, textbook defaults because it is the
    instrument for studying exactly those choices):

    - ``optimizer="adam"`` (train: ``"sgd"``): Adam's step is about ``lr`` per parameter whatever the
      gradient's scale, so one learning rate works across problems; SGD's stable range depends on
      the data's curvature and a fixed default diverges on some data and crawls on other.
    - ``standardize=True`` (train: ``False``): z-scores the features (fitted on the training rows and
      applied by ``predict``), so features in the thousands train as well as features near 1
      (unscaled inputs are the classic reason a regression "does not converge").
    - ``standardize_y=True`` (train: ``False``): trains on the z-scored target and returns
      predictions in the target's original units; a target of order 1e4 then needs no more Adam
      steps than one of order 1.
    - ``epochs=200`` (train: ``100``): with full batches (``batch_size=None``, as train) every epoch
      is one step; 200 Adam steps at ``lr=0.01`` bring a linear model on standardized data to its
      least-squares fit (R² within 1e-3 of OLS on scikit-learn's check problems).

    - ``progress=False`` (train: ``None``, a bar for long runs in a terminal): an estimator is fitted
      many times over inside cross-validation and grid searches, where bars would only clutter.

    The estimator is deterministic for a fixed ``seed`` (default 0, as train); ``seed=None`` draws
    a new seed for every fit.

    Fitted attributes
    -----------------
    result_ : TrainResult
        The run itself: params, history, config, trace, diverged, ...
    trace_ : Trace or None
        ``result_.trace`` (None unless ``trace=True`` or ``trace="norms"``).
    loss_curve_ : list of float
        The training loss at the end of each completed epoch (``result_.history["loss"]``), as
        MLPRegressor's ``loss_curve_``.
    n_iter_ : int
        The number of epochs completed (``len(loss_curve_)``): fewer than ``epochs`` after early
        stopping or a divergence.
    diverged_ : bool
        Whether the fit diverged (``result_.diverged``). A diverged fit still returns the fitted
        estimator, with one DivergenceWarning; its parameters are then whatever the non-finite step
        left, so ``predict`` returns NaN for every row (with a DivergenceWarning) rather than numbers
        from a broken model: ``score`` then raises (r2_score refuses NaN), which GridSearchCV and
        cross_val_score record as a NaN score (their ``error_score``) and rank last.
    n_features_in_ : int
        The number of features seen by ``fit``.
    feature_names_in_ : ndarray of str
        The column names of ``X`` when it had string column names (a pandas DataFrame).
    """

    def __init__(self, *, model="linear", hidden=(10,), activation="relu", loss="mse", delta=1.0,
                 optimizer="adam", lr=None, epochs=200, batch_size=None, shuffle=True, seed=0,
                 dtype="float64", init="torch", trace=False, trace_every=1, trace_budget=2**30,
                 standardize=True, standardize_y=True, winsorize=None, winsorize_y=False,
                 validation=None, early_stopping=None, min_delta=0.0, restore_best=True,
                 clip_grad_norm=None, clip_grad_value=None, l1=0.0,
                 schedule=None, step_size=None, gamma=None, power_t=None, T_max=None, patience=None,
                 factor=None, step_lrs=None, device="cpu", progress=False, threads=None, flavor="torch", l2=0.0,
                 optimizer_params=None):
        self.model = model
        self.hidden = hidden
        self.activation = activation
        self.loss = loss
        self.delta = delta
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.dtype = dtype
        self.init = init
        self.trace = trace
        self.trace_every = trace_every
        self.trace_budget = trace_budget
        self.standardize = standardize
        self.standardize_y = standardize_y
        self.winsorize = winsorize
        self.winsorize_y = winsorize_y
        self.validation = validation
        self.early_stopping = early_stopping
        self.min_delta = min_delta
        self.restore_best = restore_best
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_value = clip_grad_value
        self.l1 = l1
        self.schedule = schedule
        self.step_size = step_size
        self.gamma = gamma
        self.power_t = power_t
        self.T_max = T_max
        self.patience = patience
        self.factor = factor
        self.step_lrs = step_lrs
        self.device = device
        self.progress = progress
        self.threads = threads
        self.flavor = flavor
        self.l2 = l2
        self.optimizer_params = optimizer_params

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # seed=None draws a fresh seed for every fit (as train does), so two fits on the same data
        # differ; the common checks that demand identical results from refits must not run then.
        # With an integer seed every fit is bitwise reproducible and the tag stays False.
        tags.non_deterministic = self.seed is None
        return tags

    def _train_kwargs(self):
        kwargs = {name: getattr(self, name) for name in _TRAIN_PARAMS}
        extra = self.optimizer_params
        if extra is None:
            extra = {}
        if not isinstance(extra, Mapping):
            raise TypeError(
                f"optimizer_params must be None or a dict of optimizer hyperparameters (e.g. "
                f"{{'momentum': 0.9}}), got {extra!r} ({type(extra).__name__})."
            )
        clash = sorted(k for k in extra if k in kwargs or k == "optimizer_params")
        if clash:
            raise ValueError(
                f"optimizer_params holds {clash}, which are parameters of MiniRegressor itself; "
                f"set them directly (MiniRegressor({clash[0]}=...)), not in optimizer_params."
            )
        kwargs.update(extra)
        return kwargs

    def fit(self, X, y):
        """Train on (X, y) with :func:`minireg.train`; returns self.

        X: array-like or DataFrame (n_samples, n_features); y: array-like (n_samples,). Both are
        checked with scikit-learn's conventions (no NaN/inf, no sparse or complex input; a column
        vector y is accepted with a DataConversionWarning) and passed to ``train`` as float64.
        """
        X, y = _validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        result = train(X, y, **self._train_kwargs())
        self.result_ = result
        self.trace_ = result.trace
        self.loss_curve_ = [float(v) for v in result.history["loss"]]
        self.n_iter_ = len(self.loss_curve_)
        self.diverged_ = bool(result.diverged)
        return self

    def predict(self, X):
        """Predictions (n_samples,) in the target's units; NaN everywhere if the fit diverged."""
        check_is_fitted(self)
        X = _validate_data(self, X, dtype=np.float64, reset=False)
        result = self.result_
        if result.diverged:
            warnings.warn(
                f"this MiniRegressor's fit diverged at step {result.diverged_at} (lr={self.lr!r}, "
                f"optimizer={self.optimizer!r}); its parameters are not finite, so every prediction is "
                "NaN. Refit with a smaller lr (see result_.trace / result_.diverged_at).",
                DivergenceWarning, stacklevel=2)
            return np.full(X.shape[0], np.nan, dtype=result.dtype)
        return result.predict(X)


# The keywords of train() that fit passes through (every __init__ parameter but optimizer_params).
_TRAIN_PARAMS = tuple(p for p in inspect.signature(MiniRegressor.__init__).parameters
                      if p not in ("self", "optimizer_params"))
