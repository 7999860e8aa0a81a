"""Fault in the trace buffers' pages on a helper thread while the kernel trains.

A full trace is written row by row into freshly allocated memory, and the first write to each page
costs a page fault: the OS finds a page (with numpy's huge-page advice on large arrays, possibly
compacting memory for it) and zeroes it. That is most of what tracing costs (benchmarks/RESULTS.md
has the measurements).

The training kernel runs on one core with the GIL released. While it does, a helper thread asks the
kernel to populate the pages of the rows that call will write (``madvise(MADV_POPULATE_WRITE)``,
Linux 5.14+), a chunk at a time, in row order, so the kernel finds them ready. Populating never
changes what a page holds, so it is harmless when the kernel gets to a page first. Elsewhere (other
systems, older kernels, a failing call) the helper does nothing and the kernel faults the pages in
itself, as before. ``MINIREG_PREFAULT=0`` in the environment turns the helper off.
"""
import ctypes
import mmap
import os
import sys
import threading

MADV_POPULATE_WRITE = 23
CHUNK = 1 << 20          # bytes per madvise call and array: small enough to stop soon when asked
MIN_BYTES = 4 << 20      # below this a thread costs more than it saves

_state = {"madvise": None, "supported": None}


def _madvise():
    if _state["supported"] is None:
        _state["supported"] = False
        if sys.platform.startswith("linux"):
            try:
                # the process's own symbols, libc's among them: ctypes.util.find_library would run
                # ldconfig in a subprocess first, on the first traced run of every process
                fn = ctypes.CDLL(None, use_errno=True).madvise
                fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                fn.restype = ctypes.c_int
                _state["madvise"], _state["supported"] = fn, True
            except (OSError, AttributeError, TypeError):
                pass
    return _state["madvise"] if _state["supported"] else None


def _row_ranges(arrays, r0, r1):
    """(start address, end address) of rows r0..r1 of each C-contiguous array, start aligned down
    to a page."""
    out = []
    for a in arrays:
        if a is None or a.ndim == 0 or a.shape[0] == 0 or a.nbytes == 0 or not a.flags.c_contiguous:
            continue
        lo, hi = min(r0, a.shape[0]), min(r1, a.shape[0])
        if hi <= lo:
            continue
        row = a.strides[0]
        start = a.ctypes.data + lo * row
        out.append((start - start % mmap.PAGESIZE, a.ctypes.data + hi * row))
    return out


class Prefault:
    """Populate rows r0..r1 of ``arrays`` on a daemon thread; ``stop()`` ends it and waits.
    Does nothing when there is too little to populate or the system cannot."""

    def __init__(self, arrays, r0, r1, min_bytes=MIN_BYTES):
        self._stop = threading.Event()
        self._thread = None
        self.populated = 0
        ranges = _row_ranges(arrays, r0, r1)
        if (sum(hi - lo for lo, hi in ranges) < min_bytes or os.environ.get("MINIREG_PREFAULT", "1") == "0"
                or _madvise() is None):
            return
        self._ranges = ranges
        thread = threading.Thread(target=self._run, name="minireg-prefault", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no more threads to be had: the kernel faults the pages in itself
            return
        self._thread = thread

    def _run(self):
        madvise = _madvise()
        offset = 0
        while any(lo + offset < hi for lo, hi in self._ranges):
            for lo, hi in self._ranges:  # all arrays advance together, as the kernel writes them
                if self._stop.is_set():
                    return
                start = lo + offset
                if start >= hi:
                    continue
                size = min(CHUNK, hi - start)
                if madvise(start, size, MADV_POPULATE_WRITE) != 0:
                    if ctypes.get_errno() == 22:  # EINVAL: a kernel without MADV_POPULATE_WRITE
                        _state["supported"] = False
                    return  # ENOMEM and the like: leave the rest to the kernel's own faults
                self.populated += size
            offset += CHUNK

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
