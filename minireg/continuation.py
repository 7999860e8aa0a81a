"""Continuation: where a run stands, exactly enough to continue it (see minireg.resume).

Its own module, below minireg.io and minireg.resume: a saved run stores one and minireg.io rebuilds
it on load, while minireg.resume loads saved runs to continue them, so neither of those two can hold
it without importing the other."""


class Continuation:
    """Where a run stands, exactly enough to continue it."""

    def __init__(self, theta, state, t, epoch, offset, perm, rng_state, plateau, stopper, history, lr_history,
                 val_history):
        self.theta, self.state = theta, state  # the last step's parameters (before any restore_best)
        self.t = int(t)  # steps taken
        self.epoch, self.offset = int(epoch), int(offset)  # the next step's epoch and first row in it
        self.perm = perm  # that epoch's row order when it is part-done and shuffled, else None
        self.rng_state = rng_state  # the shuffling stream after drawing that epoch's order
        self.plateau = plateau  # ReduceLROnPlateau's (lr, best, bad_epochs), or None
        self.stopper = stopper  # early stopping's {best, best_epoch, wait} and best_theta, or None
        self.history, self.lr_history, self.val_history = history, lr_history, val_history

    # ---- saved with the run (minireg.io): arrays, and JSON-ready metadata
    def arrays(self):
        out = {"theta": self.theta, "state": self.state, "history": self.history, "lr_history": self.lr_history}
        if self.val_history is not None:
            out["val_history"] = self.val_history
        if self.perm is not None:
            out["perm"] = self.perm
        if self.stopper is not None and self.stopper.get("best_theta") is not None:
            out["best_theta"] = self.stopper["best_theta"]
        return out

    def meta(self):
        stopper = None if self.stopper is None else {k: v for k, v in self.stopper.items() if k != "best_theta"}
        return {"t": self.t, "epoch": self.epoch, "offset": self.offset, "rng_state": self.rng_state,
                "plateau": self.plateau, "stopper": stopper}

    @classmethod
    def from_saved(cls, meta, arrays):
        stopper = meta["stopper"]
        if stopper is not None:
            stopper = {**stopper, "best_theta": arrays.get("best_theta")}
        return cls(arrays["theta"], arrays["state"], meta["t"], meta["epoch"], meta["offset"], arrays.get("perm"),
                   meta["rng_state"], meta["plateau"], stopper, arrays["history"], arrays["lr_history"],
                   arrays.get("val_history"))
