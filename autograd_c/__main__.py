"""python -m autograd_c: train micrograd's moons MLP with autograd_c."""
import argparse
import time

from . import Value
from .datasets import make_moons
from .nn import MLP
from .train import make_model, train_step


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograd_c", description=__doc__)
    parser.add_argument("--steps", type=int, default=100, help="SGD steps (default 100)")
    parser.add_argument("--samples", type=int, default=100, help="data points (default 100)")
    args = parser.parse_args(argv)

    X, y = make_moons(args.samples, noise=0.1)
    model = make_model(MLP)
    print(f"{model}\n{len(model.parameters())} parameters, {len(X)} points")
    start = time.perf_counter()
    for k in range(args.steps):
        loss, acc = train_step(Value, model, X, y, k, args.steps)
        if k % 10 == 0 or k == args.steps - 1:
            print(f"step {k:3d} loss {loss:.6f}, accuracy {acc * 100:.1f}%")
    elapsed = time.perf_counter() - start
    print(f"final accuracy {acc * 100:.1f}% in {elapsed:.2f} s "
          f"({elapsed / args.steps * 1e3:.1f} ms per step)")
    return 0 if acc >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
