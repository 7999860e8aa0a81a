"""Launch geometry and compile options of the CUDA kernels, read once at import.

Environment switches:
- ``MINIREG_CUDA_TPB`` threads per block of the 1-D kernels (a power of two, 1..256; default 256:
  above it the float64 tiles outgrow a block's 48 KiB of static shared memory and forward_out's
  160 registers per thread outgrow the register file).
  The 2-D tiled kernels use TILE x TILE threads with TILE = 2**floor(log2(TPB)/2) (16 for 256, 2
  for 4 or 8), each computing REG x REG outputs. The tests use a tiny value so that a few rows
  already span several blocks.
- ``MINIREG_CUDA_CHECK_EVERY`` steps launched between two reads of the divergence flag (each read
  synchronizes the host with the device; default 256). Steps launched after the diverging one are
  no-ops on the device, so this only bounds the wasted launches.
- ``MINIREG_CUDA_ONE_LAUNCH`` which host driver runs a call of train_epochs_cuda: ``auto`` (default:
  the one-launch kernel of ``onelaunch.py`` for runs whose step is small, B·P <= ONE_LAUNCH_WORK, the
  per-layer kernels of ``loop.py`` otherwise), ``always`` (the one-launch kernel whatever the size)
  or ``never``. ``MINIREG_CUDA_ONE_LAUNCH_WORK`` sets that threshold (default 2**20). The module
  attributes ``ONE_LAUNCH``/``ONE_LAUNCH_WORK`` of ``minireg.cuda.onelaunch`` are read at every run,
  so a process can switch them (the tests and benchmarks do).
- ``MINIREG_NUMBA_CACHE=0`` turns off the on-disk cache, as for the CPU kernels. The cache is also
  off whenever MINIREG_CUDA_TPB is not the default: TPB, TILE, KD, BT and CW are globals compiled
  into the kernels, and numba's cache key holds a kernel's bytecode, closure cells and signature
  but not the values of the globals it reads, so a kernel cached under one TPB would be loaded
  under another.

Shapes of shared and local arrays must be compile-time constants in numba.cuda, hence module-level
constants rather than arguments. Their dtype comes from an array argument (``dtype=theta.dtype``),
so one source serves float32 and float64 runs.
"""
import os

from numba import cuda

from ..kernels._jit import on_disk

_DEFAULT_TPB = 256


def _tpb():
    raw = os.environ.get("MINIREG_CUDA_TPB", str(_DEFAULT_TPB))
    try:
        v = int(raw)
    except ValueError:
        v = -1
    if v < 1 or v > _DEFAULT_TPB or v & (v - 1):
        raise ValueError(f"MINIREG_CUDA_TPB={raw!r}: threads per block must be a power of two "
                         f"between 1 and {_DEFAULT_TPB} (e.g. 64 or 256).")
    return v


def _positive_int(name, default):
    raw = os.environ.get(name, str(default))
    try:
        v = int(raw)
    except ValueError:
        v = 0
    if v < 1:
        raise ValueError(f"{name}={raw!r} must be a positive integer.")
    return v


TPB = _tpb()
TILE = 1 << (TPB.bit_length() - 1) // 2          # TILE * TILE <= TPB
# depth of the shared-memory X tile of the one-output (row-dot) kernel: TPB x (KD + 1) elements, at
# most 34 KiB in float64 (48 KiB is the static shared-memory limit of a block)
KD = max(1, min(TILE, 4096 // TPB))
KD1 = KD + 1  # rows of that tile padded by one (a shape must be a global, not an expression)
# the tiled matrix kernels: each thread keeps a REG x REG micro-tile of outputs in registers
# (rows ty + m*TILE, columns tx + n*TILE), so a block covers BT x BT outputs (64 x 64 at the
# default) and every value read from shared memory feeds REG multiply-adds instead of one
REG = 4
BT = TILE * REG
BT1 = BT + 1  # a padded row of BT
# the one-output weight gradient: CW consecutive columns per block, TPB // CW row lanes
CW = min(32, TPB)
CHECK_EVERY = _positive_int("MINIREG_CUDA_CHECK_EVERY", 256)
ONE_LAUNCH_MODES = ("auto", "always", "never")


def _one_launch_mode():
    raw = os.environ.get("MINIREG_CUDA_ONE_LAUNCH", "auto")
    if raw not in ONE_LAUNCH_MODES:
        raise ValueError(f"MINIREG_CUDA_ONE_LAUNCH={raw!r} must be one of {', '.join(ONE_LAUNCH_MODES)}.")
    return raw


ONE_LAUNCH = _one_launch_mode()
# the one-launch path runs a step on one block (one SM): worth it while a step's work is too small to
# fill the GPU, where the per-layer path pays ~12 launches a step (tune on a GPU: bench_cuda.py)
ONE_LAUNCH_WORK = _positive_int("MINIREG_CUDA_ONE_LAUNCH_WORK", 1 << 20)
# the bytes of shared memory a block may take without opting in (cudaFuncSetAttribute, which numba's
# launch does not do): static and dynamic together, on every GPU numba supports
SHARED_BYTES = 48 * 1024
CACHE = os.environ.get("MINIREG_NUMBA_CACHE", "1") != "0" and TPB == _DEFAULT_TPB


def kernel(fn):
    """A CUDA kernel with the project's options (compiled lazily, per argument types).

    ``cache=True`` keeps the compiled kernels on disk like the CPU ones (default TPB only, see the
    module docstring; the simulator accepts the option and ignores it: it runs the Python source).
    No fastmath: divergence detection must see NaN/inf, and the results must follow the CPU
    backend. NVVM still contracts a*b+c into FMAs (its default), so on a real GPU float64 results
    differ from the CPU's in the last bits, as do sums that the GPU reduces in a tree (batch loss,
    norms, row segments of a large batch).
    """
    return on_disk(cuda.jit(cache=CACHE)(fn))


def device(fn):
    """A device function (inlined into the kernels that call it)."""
    return cuda.jit(device=True)(fn)
