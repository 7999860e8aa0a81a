#!/bin/bash
# What a session with a GPU has to check and time for the CUDA backend (issue #19), as one script
# that fits about 10 minutes, writing everything under one folder:
#
#     bash benchmarks/gpu_session.sh "$OUT"          # on the GPU machine, from the repo root
#
# 1. the CPU-vs-CUDA cases on the hardware, at the default 256 threads per block and at 4 (both
#    host drivers: one launch per call and kernels per step), 1e-10 in float64;
# 2. benchmarks/bench_cuda.py --quick: per step, one-launch vs multi-launch vs CPU vs torch CUDA, the
#    size sweeps with the crossover, and the 1,000-run sweep on the GPU against every CPU core.
# numba-cuda 0.30 does not compile with NumPy 2.5: the script stops and says so (carry a NumPy
# 2.4 install, e.g. `pip install --target shared/np24 "numpy<2.5"` beforehand, and put it on
# PYTHONPATH).
set -u
out=${1:-gpu_session_out}
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import numpy, numba, sys; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__)"
  python -c "import numba_cuda; print('numba-cuda', numba_cuda.__version__)" 2>/dev/null
  python -c "import torch; print('torch', torch.__version__)" 2>/dev/null
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"
if python -c "import numpy, sys; sys.exit(tuple(map(int, numpy.__version__.split('.')[:2])) >= (2, 5))"; then :; else
  echo "NumPy >= 2.5 here: numba-cuda 0.30 cannot compile (np.row_stack). Put NumPy < 2.5 first on PYTHONPATH." | tee -a "$out/machine.txt"
  exit 2
fi
timeout 240 python -m pytest -q tests/cuda_sim_cases.py > "$out/tests_tpb256.txt" 2>&1
echo "tests, 256 threads per block: exit $?"; tail -2 "$out/tests_tpb256.txt"
MINIREG_CUDA_TPB=4 timeout 150 python -m pytest -q tests/cuda_sim_cases.py > "$out/tests_tpb4.txt" 2>&1
echo "tests, 4 threads per block: exit $?"; tail -2 "$out/tests_tpb4.txt"
timeout 300 python benchmarks/bench_cuda.py --quick > "$out/bench_cuda.txt" 2>&1
echo "bench_cuda: exit $?"; tail -60 "$out/bench_cuda.txt"
