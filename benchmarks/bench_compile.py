"""bench_compile.py -- @autograd_c.compile on micrograd's training loop,
against the same loop eager and the hand-written Graph replay.  Run by
`make bench`.

    python3 benchmarks/bench_compile.py [--quick]

Workload: one step of micrograd's moons demo -- MLP(2, [16, 16, 1]), 100
points, SVM hinge loss (mean) + 1e-4 L2, zero_grad, backward, SGD at
micrograd's decaying learning rate -- three ways, each on its own model
started from the same weights:

  eager      train.train_step: the ~66,000-node graph built anew each step
  compile    the loss decorated (train.compiled_moons_loss): each step a
             call (the points into the trace's leaves, Graph.forward), then
             loss.backward() (Graph.backward through the output's rule)
  replay     the loss graph captured by hand (Graph), forward/backward, and
             Params for zero_grad and the update: what compile automates

Interleaved within each repeat (eager, compile, replay, ...) after an
untimed warm-up that makes the trace; a gc.collect() before each timed step,
outside its time.  Medians over the repeats; ratios = eager median / variant
median.  Before timing, the three first losses must be the same bits; the
trace's own cost (once per signature) is reported separately, the median of
several fresh traces.
"""
import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autograd_c as ag  # noqa: E402
from autograd_c.datasets import make_moons  # noqa: E402
from autograd_c.train import (compiled_moons_loss, learning_rate, make_model,  # noqa: E402
                              moons_loss, sgd_step, train_step)


def eager_step(X, y):
    model = make_model(ag.nn.MLP)
    return lambda k: train_step(ag.Value, model, X, y, k)[0]


def compiled_step(X, y):
    model = make_model(ag.nn.MLP)
    loss_of = compiled_moons_loss(model, y)

    def step(k):
        loss = loss_of(X)
        model.zero_grad()
        loss.backward()
        sgd_step(model, k)
        return loss.data
    return step


def replay_step(X, y):
    model = make_model(ag.nn.MLP)
    graph = ag.Graph(moons_loss(ag.Value, model, X, y)[0])
    params = ag.Params(model.parameters())

    def step(k):
        loss = graph.forward()
        params.zero_grad()
        graph.backward()
        params.sgd(learning_rate(k))
        return loss
    return step


def timed(fn, *args):
    gc.collect()
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeats = 15 if args.quick else 60
    X, y = make_moons(100, noise=0.1)
    variants = {"eager": eager_step(X, y), "compile": compiled_step(X, y),
                "replay": replay_step(X, y)}
    first = {name: step(0) for name, step in variants.items()}  # warm-up, the trace
    if len({ag_bits(v) for v in first.values()}) != 1:
        sys.exit(f"first losses differ: {first}")
    traces = [timed(lambda: compiled_moons_loss(make_model(ag.nn.MLP), y)(X))
              for _ in range(5 if args.quick else 9)]
    times = {name: [] for name in variants}
    for r in range(repeats):
        for name, step in variants.items():
            times[name].append(timed(step, 1 + r % 99))
    eager = statistics.median(times["eager"])
    print(f"moons MLP(2, [16, 16, 1]), 100 points: one training step, median of "
          f"{repeats} interleaved repeats")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:8s} {med * 1e3:8.3f} ms   {eager / med:6.1f}x eager")
    print(f"  trace (first call of a compiled loss, once per signature): "
          f"{statistics.median(traces) * 1e3:.1f} ms median of {len(traces)}")


def ag_bits(x):
    return float(x).hex()


if __name__ == "__main__":
    main()
