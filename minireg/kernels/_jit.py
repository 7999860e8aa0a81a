"""The one place that owns numba's compile options for every CPU kernel.

Environment switches (read once, at import):
- ``MINIREG_NUMBA_CACHE=0`` turns off the on-disk cache (default on: ``cache=True``).
- ``MINIREG_FASTMATH=1`` turns on the safe fastmath subset {nsz, arcp, contract, afn, reassoc}.
  Never ``nnan``/``ninf``: divergence detection must see NaN and inf. It reorders sums, so it is off
  by default and never used on the PyTorch-parity path.

``error_model="numpy"``: a division by zero gives inf/NaN (which the loop then reports as divergence)
instead of raising ZeroDivisionError inside compiled code.

``_nrt=False``: numba's reference counting of arrays is off. The kernels never allocate; they work
on arrays and views of arrays that the Python caller owns for the whole call. With it on, every
view and every array passed to another kernel cost an atomic increment and decrement through a
function pointer, a large share of a small step (a batch-1 linear forward pass took twice as long).
"""
import contextlib
import hashlib
import os

try:
    import fcntl
except ImportError:  # Windows: saves are not serialized there
    fcntl = None

from numba import njit

CACHE = os.environ.get("MINIREG_NUMBA_CACHE", "1") != "0"
FASTMATH = (
    {"nsz", "arcp", "contract", "afn", "reassoc"}
    if os.environ.get("MINIREG_FASTMATH", "0") == "1"
    else False
)

_OPTIONS = dict(cache=CACHE, fastmath=FASTMATH, nogil=True, error_model="numpy", _nrt=False)


def kernel(fn):
    """Compile ``fn`` with the project's options (lazily, on first call)."""
    return on_disk(njit(**_OPTIONS)(fn))


def parallel_kernel(fn):
    """Like ``kernel``, compiled with ``parallel=True``: its ``prange`` loops run on numba's thread
    pool (``numba.set_num_threads`` of the calling thread sets how many). Used by the large-batch
    path only (kernels/tiled.py), whose results do not depend on the number of threads."""
    return on_disk(njit(**_OPTIONS, parallel=True)(fn))


# reassociation and contraction (FMA) only: never nnan/ninf, so that divergence stays visible
_REASSOC = {"reassoc", "contract"}


def reassociating_kernel(fn):
    """Like ``kernel``, with the compiler free to reassociate sums and contract multiply-adds, so
    that dot products vectorize. Its results may differ in the last bits from the kernels' fixed
    order, and between CPUs of different vector widths, but not from run to run on one machine.
    Used only where the README says so (the linear model's large-batch step, kernels/tiled.py)."""
    return on_disk(njit(**{**_OPTIONS, "fastmath": _REASSOC})(fn))


def element(fn):
    """A small function called once per element or row inside the loops (an activation, a loss
    term, one parameter's optimizer update): like ``kernel``, and inlined by numba into every
    caller (``inline="always"``). A call between two separately compiled numba functions stays a
    real call that LLVM does not inline, with every array argument passed as a struct: a call per
    parameter would cost more than the update itself."""
    return on_disk(
        njit(**_OPTIONS, inline="always")(fn))


# ---- the on-disk cache across source changes
_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCE_DIRS = ("kernels", "optim", "cuda")
_STAMP = "minireg-sources.sha256"
_checked = set()
_digest = []


def _sources():
    for sub in _SOURCE_DIRS:
        d = os.path.join(_PKG, sub)
        for name in sorted(os.listdir(d)):
            if name.endswith(".py"):
                yield os.path.join(d, name)


def _sources_digest():
    if not _digest:
        h = hashlib.sha256()
        # numba's cache key does not hold the compile options either: MINIREG_FASTMATH counts
        h.update(repr(sorted(FASTMATH) if FASTMATH else FASTMATH).encode())
        for path in _sources():
            h.update(os.path.basename(path).encode())
            with open(path, "rb") as f:
                h.update(f.read())
        _digest.append(h.hexdigest())
    return _digest[0]


def on_disk(dispatcher):
    """The on-disk cache of a minireg dispatcher, made safe to share: saves serialized between
    processes (``serialize_saves``), stale entries dropped (``drop_stale_cache``). Returns it."""
    return drop_stale_cache(serialize_saves(dispatcher))


_LOCK = "minireg-cache.lock"


def serialize_saves(dispatcher):
    """Make ``dispatcher``'s cache saves take an exclusive lock on a file in its cache folder;
    returns the dispatcher.

    numba's save reads the folder's index of a function, takes the first free data-file number,
    writes the index, then the data, with no lock. Two processes that compile two signatures of
    one function at once (two pytest workers, a sweep's worker processes on a fresh install) can
    both take the same number: the index then sends one signature to the other's machine code,
    which a later process loads and calls with the wrong types. Under the lock each save reads
    the index as the previous save left it. Loads need no lock: numba writes each file by an
    atomic rename, and treats an index entry whose data is not there yet as a miss."""
    cache = getattr(dispatcher, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    save = getattr(cache, "save_overload", None)
    if fcntl is None or path is None or save is None:
        return dispatcher

    def save_overload(sig, data):
        with _locked(os.path.join(path, _LOCK)):
            save(sig, data)
    cache.save_overload = save_overload
    return dispatcher


@contextlib.contextmanager
def _locked(lock_path):
    try:
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        f = open(lock_path, "a")
    except OSError:  # a folder that cannot be written: numba falls back on its own, unlocked
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def drop_stale_cache(dispatcher):
    """Delete this package's cached kernels in ``dispatcher``'s cache folder when any kernel source
    changed since they were written; returns the dispatcher.

    numba keys a cached function by its own source file only, but the machine code of a kernel
    holds the functions it calls from other files (inlined or linked in): after an edit of
    optim/adam.py, or a ``git pull`` into an editable install, train_epochs (loop.py, unchanged)
    would load its old code, old optimizer included. A digest of every kernel source (kernels/,
    optim/ and cuda/) and of the fastmath setting (which numba's key leaves out too), kept next to
    the cache, detects that; the stale entries are then removed and numba compiles them afresh.
    Runs once per cache folder per process; a folder that cannot be written is left alone (numba then uses its own
    fallback location)."""
    path = getattr(getattr(dispatcher, "_cache", None), "_cache_path", None)
    if not CACHE or path is None or path in _checked:
        return dispatcher
    _checked.add(path)
    digest = _sources_digest()
    stamp = os.path.join(path, _STAMP)
    try:
        with open(stamp) as f:
            if f.read().strip() == digest:
                return dispatcher
    except OSError:
        pass
    stems = tuple(os.path.splitext(os.path.basename(p))[0] + "." for p in _sources())
    try:
        os.makedirs(path, exist_ok=True)
        with _locked(os.path.join(path, _LOCK)):  # not while another process saves there
            _drop(path, stems, digest, stamp)
    except OSError:
        pass
    return dispatcher


def _drop(path, stems, digest, stamp):
    try:
        with open(stamp) as f:
            if f.read().strip() == digest:  # another process has just done it (and may have saved since)
                return
    except OSError:
        pass
    for name in os.listdir(path):
        if name.endswith((".nbi", ".nbc")) and name.startswith(stems):
            try:
                os.remove(os.path.join(path, name))
            except FileNotFoundError:  # another process got there first
                pass
    with open(stamp, "w") as f:
        f.write(digest)
