"""python -m autograd_c: train micrograd's moons MLP with autograd_c."""
import argparse
import sys
import time

from . import Value
from ._optional import require
from .datasets import make_moons
from .graph import Graph, Params
from .nn import MLP
from .train import (compiled_moons_loss, learning_rate, make_model, moons_loss, sgd_step,
                    train_step)
from .viz import plot_decision_boundary


def _progress_bar(total):
    """A tqdm bar when stdout is a terminal and tqdm is installed, else None
    (then the demo prints plain lines)."""
    if not sys.stdout.isatty():
        return None
    try:
        tqdm = require("tqdm").tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=sys.stdout, unit="step")


def _replay_training(X, y, steps):
    """The same training, the loss graph built once and replayed each step
    (Graph: forward, backward; Params: zero_grad, the SGD update), with the
    same numbers as the eager steps.  Returns (last loss, accuracy, seconds)."""
    model = make_model(MLP)
    start = time.perf_counter()
    total_loss, _ = moons_loss(Value, model, X, y)
    graph, params = Graph(total_loss), Params(model.parameters())
    for k in range(steps):
        loss = graph.forward()
        params.zero_grad()
        graph.backward()
        params.sgd(learning_rate(k, steps))
    elapsed = time.perf_counter() - start
    return loss, moons_loss(Value, model, X, y)[1], elapsed


def _compiled_training(X, y, steps):
    """The eager training loop with its loss function decorated by
    autograd_c.compile (train.compiled_moons_loss): traced once, then
    replayed in C each step.  Returns (last loss, accuracy, seconds)."""
    model = make_model(MLP)
    start = time.perf_counter()
    loss_of = compiled_moons_loss(model, y)
    for k in range(steps):
        loss = loss_of(X)
        model.zero_grad()
        loss.backward()
        sgd_step(model, k, steps)
    elapsed = time.perf_counter() - start
    return loss.data, moons_loss(Value, model, X, y)[1], elapsed


def _report(name, how, result, eager_loss, eager_elapsed, steps):
    """Print how a faster way of training (--replay, --compile) compared
    with the eager run; True when its last loss has the same bits."""
    loss, acc, elapsed = result
    same = "the same bits as" if loss == eager_loss else "DIFFERENT from"
    print(f"{name}: final loss {loss:.6f} ({same} the eager run), accuracy "
          f"{acc * 100:.1f}% in {elapsed:.3f} s with {how} "
          f"({elapsed / steps * 1e3:.2f} ms per step): {eager_elapsed / elapsed:.0f}x "
          f"the eager run's speed")
    return loss == eager_loss


def _positive_int(text):
    """argparse type of --steps and --samples: 0 steps would leave no loss to
    report (and divide by zero), 0 samples no data; argparse turns the error
    into 'argument --steps: must be a positive integer, ...' and exit 2."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograd_c", description=__doc__)
    parser.add_argument("--steps", type=_positive_int, default=100, help="SGD steps (default 100)")
    parser.add_argument("--samples", type=_positive_int, default=100,
                        help="data points (default 100)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="save the decision boundary with the points (needs matplotlib)")
    parser.add_argument("--replay", action="store_true",
                        help="then train again with the loss graph captured once and "
                             "replayed in C (autograd_c.Graph), and compare the speed")
    parser.add_argument("--compile", action="store_true",
                        help="then train again with the loss function decorated by "
                             "@autograd_c.compile, and compare the speed")
    args = parser.parse_args(argv)
    if args.plot:
        try:
            require("matplotlib.figure", "--plot")
        except ImportError as e:
            parser.error(str(e))

    X, y = make_moons(args.samples, noise=0.1)
    model = make_model(MLP)
    print(f"{model}\n{len(model.parameters())} parameters, {len(X)} points")
    start = time.perf_counter()
    bar = _progress_bar(args.steps)
    for k in range(args.steps):
        loss, acc = train_step(Value, model, X, y, k, args.steps)
        if bar is not None:
            bar.set_postfix_str(f"loss {loss:.6f}, accuracy {acc * 100:.1f}%", refresh=False)
            bar.update()
        elif k % 10 == 0 or k == args.steps - 1:
            print(f"step {k:3d} loss {loss:.6f}, accuracy {acc * 100:.1f}%")
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    print(f"final accuracy {acc * 100:.1f}% in {elapsed:.2f} s "
          f"({elapsed / args.steps * 1e3:.1f} ms per step)")
    if args.replay and not _report("replay", "the one build and capture",
                                   _replay_training(X, y, args.steps), loss, elapsed, args.steps):
        return 1
    if args.compile and not _report("compile", "the one trace",
                                    _compiled_training(X, y, args.steps), loss, elapsed,
                                    args.steps):
        return 1
    if args.plot:
        plot_decision_boundary(model, X, y, args.plot)
        print(f"decision boundary saved to {args.plot}")
    return 0 if acc >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
