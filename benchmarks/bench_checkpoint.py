"""What checkpoints cost: the same run with and without ``checkpoint=`` at the default interval
(every epoch, throttled so that writing takes at most minireg.resume.CHECKPOINT_SHARE of the
time), alternating, best of ``--repeats``; plus one run writing every epoch unthrottled.

Run: python benchmarks/bench_checkpoint.py [--repeats 3]
"""
import argparse
import os
import platform
import tempfile
import time

import numpy as np

import minireg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 8))
    y = np.tanh(X @ rng.normal(size=8)) + 0.1 * rng.normal(size=20_000)
    runs = {
        "MLP 8-64-64-1, batch 32, 20 epochs, trace=False": dict(trace=False),
        "the same, trace='norms' (12,500 rows)": dict(trace="norms"),
        "the same, trace=True, trace_every=10 (1,251 rows of 192 kB)": dict(trace=True, trace_every=10),
    }
    base = dict(model="mlp", hidden=(64, 64), activation="tanh", optimizer="adam", lr=1e-3, batch_size=32,
                epochs=20, progress=False)
    minireg.train(X[:200], y[:200], **{**base, "epochs": 1})  # compile
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| run | no checkpoint s | checkpoint (default) s | ratio | writes | the final write s | "
          "ratio without it | every epoch s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ck.minireg")
        for name, extra in runs.items():
            kw = {**base, **extra}
            plain, ck, every = [], [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                minireg.train(X, y, **kw)
                plain.append(time.perf_counter() - t)
                t = time.perf_counter()
                minireg.train(X, y, **kw, checkpoint=path)
                ck.append(time.perf_counter() - t)
                t = time.perf_counter()
                minireg.train(X, y, **kw, checkpoint=path, checkpoint_every=1)
                every.append(time.perf_counter() - t)
            from minireg import resume
            counted = []
            real = resume.Checkpointer.write

            def counting(self, result, done, size=1, _real=real, _counted=counted):
                tick = time.perf_counter()
                _real(self, result, done, size)
                _counted.append(time.perf_counter() - tick)
            resume.Checkpointer.write = counting
            minireg.train(X, y, **kw, checkpoint=path)
            resume.Checkpointer.write = real
            writes = len(counted)
            last_write = counted[-1]
            p, c, e = min(plain), min(ck), min(every)
            print(f"| {name} | {p:.3f} | {c:.3f} | {c / p:.3f} | {writes} | {last_write:.3f} | "
                  f"{(c - last_write) / p:.3f} | {e:.3f} | {e / p:.3f} |", flush=True)


if __name__ == "__main__":
    main()
