"""eager_floor.py -- how fast can any Value be that keeps issue 11's rules?

    python3 benchmarks/eager_floor.py [--repeats N]

An eager op of autograd_c must, whatever the engine does in C:
  * make one Python object (the result Value);
  * keep its operands on it (micrograd's _prev gives back the objects you
    hold: issue 11);
  * have a finalizer, so that C learns when the node dies (lifetime
    management is not to be dropped);
  * make at least one call into C through cffi (its generated code is not to
    be patched) -- here the cheapest there is, one argument, which returns at
    once (ag_float_data of no node): a floor, since the real op passes two or
    three arguments (the handle, an operand or a constant, the op).

FloorValue does exactly that and nothing else: no node is made, no number is
computed (the results are garbage).  Running bench_engine.py's chain and its
user-written moons step (micrograd's own nn.py over FloorValue) interleaved
with micrograd running the same code gives the ceiling of the speed-up any
engine under these rules can reach on this machine, next to autograd_c's.
Medians of N interleaved repeats (each timed call ends with its own
gc.collect(), as in bench_engine.py).  The last column is what issue 11's
22x target leaves for everything beyond the floor -- making the node, its
value, the arguments of the real call, backward, releasing -- against what
autograd_c spends on it now.
"""
import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autograd_c  # noqa: E402
import micrograd.engine  # noqa: E402
from autograd_c._autograd_c import lib  # noqa: E402
from autograd_c.datasets import make_moons  # noqa: E402
from autograd_c.train import make_model, train_step  # noqa: E402
from bench_engine import CHAIN_STEPS, MOONS_POINTS, micrograd_nn  # noqa: E402

_call = lib.ag_float_data  # one argument: CPython's cheapest call shape
_dead = []


class FloorValue:
    """The least an eager Value can be (see the module's docstring)."""
    __slots__ = ("_i", "_a", "_b", "__weakref__", "__dict__")

    def __init__(self, data):
        self._i = _call(-1)

    def __del__(self, _append=_dead.append):
        _append(self._i)
        if len(_dead) >= 4096:
            _dead.clear()

    def _op(self, other):
        v = object.__new__(FloorValue)
        v._i = _call(-1)
        v._a = self
        if type(other) is FloorValue:
            v._b = other
        return v

    __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __rsub__ = __pow__ = _op

    def __neg__(self):
        return self._op(-1)

    def relu(self):
        return self._op(None)

    def backward(self):
        _call(-1)

    @property
    def data(self):
        _call(-1)
        return 0.5

    @data.setter
    def data(self, value):
        _call(-1)

    grad = data


def chain(Value):
    h = Value(1.0)
    for _ in range(CHAIN_STEPS):
        h = h * 1.0001 + 0.001
    h.backward()


class Moons:
    """One user-written moons training step with micrograd's nn.py over Value."""

    def __init__(self, Value):
        self.Value = Value
        self.model = make_model(micrograd_nn(Value))
        self.X, self.y = make_moons(MOONS_POINTS)

    def __call__(self, Value):
        train_step(Value, self.model, self.X, self.y, 0)


def timed(fn, arg):
    gc.collect()
    autograd_c.stats()
    t0 = time.perf_counter()
    fn(arg)
    gc.collect()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    engines = {"micrograd": micrograd.engine.Value, "floor": FloorValue,
               "autograd_c": autograd_c.Value}
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 40 * CHAIN_STEPS))  # micrograd's
    gc.freeze()                                                           # backward
    print(f"{'workload':12s} " + " ".join(f"{name:>12s}" for name in engines)
          + "   ceiling (micrograd/floor)   autograd_c   left for the engine at 22x")
    for name, make in (("chain", lambda V: chain), ("moons step", Moons)):
        steps = {e: make(V) for e, V in engines.items()}
        for e, V in engines.items():
            steps[e](V)  # warm-up
        times = {e: [] for e in engines}
        for _ in range(args.repeats):
            for e, V in engines.items():
                times[e].append(timed(steps[e], V))
        med = {e: statistics.median(t) for e, t in times.items()}
        print(f"{name:12s} " + " ".join(f"{med[e] * 1e3:9.2f} ms" for e in engines)
              + f"   {med['micrograd'] / med['floor']:8.1f}x"
              + f"                  {med['micrograd'] / med['autograd_c']:6.1f}x"
              + f"   {(med['micrograd'] / 22 - med['floor']) * 1e3:8.2f} ms"
              + f" (autograd_c uses {(med['autograd_c'] - med['floor']) * 1e3:.2f})")


if __name__ == "__main__":
    main()
