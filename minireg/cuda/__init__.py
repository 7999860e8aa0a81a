"""CUDA backend: ``minireg.train(..., device="cuda")``.

The same models, losses, optimizers and training controls as the CPU kernels, run by numba.cuda
kernels (the ``numba-cuda`` package when installed, else numba's built-in ``numba.cuda``; the code
uses only ``from numba import cuda``), returning the same TrainResult and Trace, so that a CPU and
a GPU run compare step by step (float64: within 1e-10).

Importing ``minireg`` never imports numba.cuda; importing this package does, and the kernels
themselves are imported (not compiled: they compile on first launch, per dtype, and are cached on
disk) only when a run starts. Without a GPU, the kernels run in numba's CUDA simulator when
``NUMBA_ENABLE_CUDASIM=1`` is set before numba is first imported (slow: for tests only).

Layout: ``activations``/``losses`` (device functions compiled from the CPU kernels' own source),
``models`` (forward/backward kernels), ``optimizers`` (one elementwise kernel per optimizer),
``reduce`` (block reductions, the per-step scalar and trace kernels), ``loop`` (host driver),
``_config`` (threads per block and other launch settings from the environment).
"""

__all__ = ["require_gpu", "Context", "train_epochs_cuda", "simulated"]


def simulated():
    """True when numba runs CUDA kernels in its simulator (NUMBA_ENABLE_CUDASIM=1 at numba's import)."""
    from numba.core import config
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def require_gpu():
    """Raise a ValueError that says what to do when neither a CUDA GPU nor the simulator is there
    (numba's simulator reports itself as available)."""
    from numba import cuda
    try:
        ok = simulated() or cuda.is_available()
    except Exception:  # a broken driver install: report it like a missing one
        ok = False
    if ok:
        if not simulated():
            _require_working_target()
        from . import _config  # noqa: F401  (a bad MINIREG_CUDA_* setting is reported now, before any work)
        return
    reason = ""
    try:
        err = cuda.cuda_error()
        if err:
            reason = f" (numba: {err})"
    except Exception:
        pass
    raise ValueError(
        "device='cuda' needs an NVIDIA GPU with a working CUDA driver, and none was found"
        f"{reason}. To use a GPU, install the CUDA extra in an environment that has the driver: "
        "pip install -e \".[cuda]\" (numba-cuda). To run the CUDA kernels without a GPU (slowly, "
        "for testing), set NUMBA_ENABLE_CUDASIM=1 in the environment before importing minireg or "
        "numba. Or train on the CPU with device='cpu'.")


class Context:
    """Device-resident state of one training run; see ``minireg.cuda.loop.Context``."""

    def __new__(cls):
        from .loop import Context as _Context  # lazy on purpose: the kernels load when a run starts
        return _Context()


def train_epochs_cuda(ctx, *args):
    """``minireg.kernels.loop.train_epochs(*args)`` on the GPU (same arguments, semantics and host-side
    effects), keeping the data and buffers on the device in ``ctx`` across calls."""
    from .loop import train_epochs_cuda as _run  # lazy on purpose, as in Context
    return _run(ctx, *args)


def _require_working_target():
    """numba's CUDA target imports its lowering registries on the first compile; a numba-cuda
    release that predates the installed NumPy fails there, deep inside numba (numba-cuda 0.30.4
    with NumPy 2.5: ``np.row_stack`` is gone). Import them now, so the user gets what to do
    before anything is compiled or copied to the device."""
    try:
        import numba.cuda.cudaimpl  # noqa: F401
    except (AttributeError, ImportError) as e:
        import numpy
        try:
            from importlib.metadata import version
            target = f"numba-cuda {version('numba-cuda')}"
        except Exception:
            target = "numba's built-in numba.cuda"
        raise ValueError(
            f"device='cuda': {target} does not work with the installed NumPy {numpy.__version__} "
            f"({type(e).__name__}: {e}). Install a NumPy release that your CUDA target supports "
            "(for numba-cuda 0.30: pip install \"numpy<2.5\") or a newer numba-cuda, or train on the "
            "CPU with device='cpu'.") from e
