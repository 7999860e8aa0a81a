"""When a run takes the large-batch path (kernels/tiled.py), on how many threads, and its buffers.

A step of B rows on P parameters does about 3·B·P multiply-adds. Below ``STEP_WORK`` (B·P) the row
loop's single thread is faster than starting the thread pool and adding up per-tile partial
gradients, and small runs keep today's kernels bit for bit; above it a batch goes over tiles of
whole units of ``TILE`` rows (kernels/tiled.py tile_rows) on ``threads`` threads. The loss over a
whole data set (the per-epoch history, the validation loss) goes over tiles from ``LOSS_WORK``
(rows·P) on; that path gives the row loop's figure bit for bit, so it does not change any result.

``threads=None`` (train's default): every core numba may use when the run takes the large path,
else one. The results do not depend on the number of threads.
"""
import numba
import numpy as np

from .kernels import tiled

TILE = 256
# where the tiles start to beat the row loop, set conservatively from benchmarks/bench_scale.py
# --only threshold (RESULTS.md): the linear model's from a few hundred rows; an MLP's, whose tiles
# are matrix products (kernels/gemm.py), from B·P of about 10⁵, and with one tile even on one thread
# (20-64-64-1: 2x the row loop at 256 rows)
STEP_WORK = 1 << 18
LOSS_WORK = 1 << 17
MIN_TILES = 1  # and at least this many tiles (and so rows: MIN_TILES·TILE)


def max_threads():
    return numba.config.NUMBA_NUM_THREADS


def resolve_threads(threads, large):
    """The thread count of a run: ``threads`` capped at numba's pool, or with None all of it for a
    large run and 1 otherwise."""
    if threads is None:
        return max_threads() if large else 1
    return max(1, min(int(threads), max_threads()))


def plan(layout, n, n_val, bs, threads, dtype, tile=TILE, block=None):
    """(big, threads): the large-path buffers of kernels/tiled.py (None when neither a step nor a
    whole-set loss of this run is large enough) and the number of threads to run on. ``tile``: the
    unit of a tile's rows (a step's tiles are whole units: tiled.tile_rows); ``block`` (default
    ``tile``): the rows an MLP's worker holds in its buffers at a time (no change to any result)."""
    block = block or tile
    P = layout.size
    step_rows = max(-(-STEP_WORK // P), MIN_TILES * tile)
    loss_rows = max(-(-LOSS_WORK // P), MIN_TILES * tile)
    use_step = bs >= step_rows
    use_loss = max(n, n_val) >= loss_rows
    if not (use_step or use_loss):
        return None, resolve_threads(threads, False)
    nthreads = resolve_threads(threads, True)
    workers = nthreads  # tiled.py spreads the tiles over one worker per thread
    _, _, _, aoff_t, nacts_t = layout.kernel_arrays(block)
    # an MLP worker's block of rows (kernels/tiled.py _mlp_block): its inputs and each hidden layer's
    # outputs with a column of ones, then the predictions
    goff = np.concatenate([[0], np.cumsum([block * (fi + 1) for fi in layout.sizes[:-1]])]).astype(np.int64)
    nbuf = max(nacts_t, int(goff[-1]) + block)
    tiles = tiled.max_tiles(bs, tile) if use_step else 1
    big = (tile, aoff_t, np.zeros((tiles, P + 1), dtype), np.zeros((workers, nbuf), dtype),
           np.zeros((workers, nbuf), dtype), np.zeros(P, dtype),
           np.zeros(max(n, n_val) if use_loss else 1, dtype), np.zeros(2, dtype),
           step_rows if use_step else np.iinfo(np.int64).max, loss_rows if use_loss else np.iinfo(np.int64).max,
           goff if layout.n_layers > 1 else None,  # None: the linear model's tiles (compiled alone)
           block)
    return big, nthreads


def on_threads(kernel, threads, big, one_row):
    """``kernel(*args, big, one_row)`` run with numba's thread count set to ``threads`` in the calling thread
    (numba's setting is per thread: train() may run the kernel in a worker thread), restored after."""
    def run(*args):
        before = numba.get_num_threads()
        if before != threads:
            numba.set_num_threads(threads)
        try:
            return kernel(*args, big, one_row)
        finally:
            if before != threads:
                numba.set_num_threads(before)
    return run
