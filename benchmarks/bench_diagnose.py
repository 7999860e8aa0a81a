"""What verifying the diagnosis's fixes costs: for every seed case, the training time, the
diagnosis without re-runs (verify=False), with every warning's and error's fixes re-run
(verify=True), and how many runs that took. Compiled kernels are warmed up first.

Run: python benchmarks/bench_diagnose.py
"""
import platform
import time
import warnings

import minireg
from minireg import datasets
from minireg.diagnose import verify as V


def main():
    warnings.simplefilter("ignore")
    runs = []
    real_run = V.Verifier.run

    def counting(self, fix):
        if self._key(fix) not in self._runs:
            runs.append(fix)
        return real_run(self, fix)

    V.Verifier.run = counting
    for name in datasets.CASES:  # warm-up: compile or load every kernel the cases use
        datasets.run_case(name, verbose=False)
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"minireg {minireg.__version__}")
    print("| case | train s | diagnose(verify=False) s | diagnose(verify=True) s | re-runs |")
    print("|---|---|---|---|---|")
    total = 0.0
    for name, case in datasets.CASES.items():
        X, y, extra = case.data()
        t0 = time.perf_counter()
        r = minireg.train(X, y, **case.bad, **extra, trace=True)
        t1 = time.perf_counter()
        r.diagnose(verify=False)
        t2 = time.perf_counter()
        runs.clear()
        r.diagnose(verify=True)
        t3 = time.perf_counter()
        total += t3 - t2
        print(f"| {name} | {t1 - t0:.3f} | {t2 - t1:.3f} | {t3 - t2:.3f} | {len(runs)} |")
    print(f"\nall cases verified in {total:.2f} s")


if __name__ == "__main__":
    main()
