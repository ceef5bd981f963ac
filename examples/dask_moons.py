"""Data-parallel training on a Dask cluster: micrograd's moons MLP, the
per-row SVM loss over a million rows a step, each step's gradient summed
across the workers by autograd_c.dask.run (pip install 'autograd_c[dask]').

    python examples/dask_moons.py                        # a local 2-process cluster
    python examples/dask_moons.py --scheduler HOST:8786  # an existing cluster
    python examples/dask_moons.py --rows 100000 --steps 5
"""
import argparse
import time

import distributed

import autograd_c.dask as agd
from autograd_c import Value
from autograd_c.datasets import make_moons


def accuracy(model, n=1000):
    """Share of n fresh moons points (make_moons) the model classifies right."""
    X, y = make_moons(n, noise=0.1, seed=7)
    return sum((model(list(map(Value, x))).data > 0) == (t > 0) for x, t in zip(X, y)) / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10**6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--partition", type=int, default=125_000, help="rows per partition")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler")
    args = parser.parse_args()
    if args.scheduler:
        client = distributed.Client(args.scheduler)
    else:
        client = distributed.Client(distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None))
    with client:
        print(f"{client}; {args.rows} rows in partitions of {args.partition}")
        start = time.perf_counter()

        def report(k, loss):
            print(f"step {k:3d}  mean loss {loss:.6f}  ({time.perf_counter() - start:.1f} s)")

        model, _ = agd.train_moons(agd.moons_rows(args.rows, args.partition),
                                   steps=args.steps, on_step=report)
        print(f"accuracy on 1000 fresh points: {accuracy(model):.1%}")


if __name__ == "__main__":
    main()
