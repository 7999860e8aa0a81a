"""``python -m minireg demo``: train a seed failure case and say what happened."""
import argparse
import sys
import warnings

import numpy as np


def demo(args):
    import minireg
    from minireg import datasets

    X, y = datasets.linear_1d(n=100, seed=0)
    print("Seed case: X ~ U(0,1), y = 2X + 1 + 0.1·noise, 100 rows; linear model, MSE, SGD, batch 32.\n")
    for lr in (10.0, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", minireg.DivergenceWarning)
            r = minireg.train(X, y, optimizer="sgd", lr=lr, batch_size=32, epochs=50, trace=True)
        tr = r.trace
        print(f"lr={lr:g}: {r}")
        if r.diverged:
            first, last = tr.loss[0], tr.loss[-2]
            print(f"  the batch loss grew from {first:.3g} to {last:.3g} in {r.diverged_at} steps, and step "
                  f"{r.diverged_at} produced non-finite values: the run stopped there (diverged=True).")
            w = tr.params[:6, 0]
            print("  W1 over the first steps: " + ", ".join(f"{v:.3g}" for v in w)
                  + "  (each step overshoots the minimum further than the last)")
            s = tr.step(3)
            print(f"  step 3 exactly: loss {s['loss']:.4g}, dL/dW1 {s['grad']['W1'][0, 0]:.4g}, "
                  f"update {s['update']['W1'][0, 0]:.4g} = -lr x grad")
        else:
            p = r.params
            print(f"  converged: W1 = {p['W1'].ravel()[0]:.4f}, b1 = {p['b1'][0]:.4f} (truth 2, 1); "
                  f"final loss {r.history['loss'][-1]:.4g} ≈ noise variance {0.1 ** 2:g}.")
        print()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minireg", description="Transparent regression training.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="train a seed failure case (lr too high) and its fix")
    args = parser.parse_args(argv)
    np.set_printoptions(precision=4)
    return {"demo": demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
