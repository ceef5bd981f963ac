"""bench_engine.py -- autograd_c against micrograd 0.1.0 (and PyTorch on scalar
tensors, when it can be imported).  Run by `make pybench`.

    python3 benchmarks/bench_engine.py [--quick]

Workloads, the same code for every engine (only Value and MLP differ):
  moons (user-written)  one training step of micrograd's moons demo on 100
           points, autograd_c.train.train_step (forward, zero_grad, backward,
           SGD), with micrograd's own nn.py code running on each engine's Value
           (what a user who changed one import runs)
  moons (autograd_c.nn)  the same step with autograd_c.nn's MLP, whose layers
           build their sums in C and whose updates are one C call
  chain    h = h * 1.0001 + 0.001, 20,000 times from a leaf, then backward
  squares  sum(x * x for x in 20,000 leaves), then backward
chain and squares report build + backward and backward alone.

Fairness: micrograd's closures make reference cycles that only the cyclic GC
frees, so every timed call starts after an untimed gc.collect() and ends with
its own gc.collect() (its result dropped first) inside its time; autograd_c's
deferred release of dead nodes is flushed there too.  No engine pays for
another's garbage.  gc.freeze() after the imports keeps those collections
from walking the interpreter's own objects (with PyTorch imported a full
collection would cost every engine ~100 ms more).  Engines are interleaved
within each repeat (A, B, A, B, ...) after one untimed warm-up call each; the
table shows medians.  The engines' results (losses, values, grads) are
checked against each other; a disagreement stops the run with an error.
"""
import argparse
import gc
import importlib.metadata
import os
import platform
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import inspect  # noqa: E402

import autograd_c  # noqa: E402
import autograd_c.nn  # noqa: E402
import micrograd.engine  # noqa: E402
import micrograd.nn  # noqa: E402
from autograd_c.datasets import make_moons  # noqa: E402
from autograd_c.train import make_model, train_step  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

CHAIN_STEPS = 20_000
SQUARES = 20_000
MOONS_POINTS = 100
TARGETS = {"moons (user-written)": 22, "moons (autograd_c.nn)": 30, "chain": 22,
           "chain backward": 100}  # micrograd / autograd_c
RTOL = 1e-9  # engines agree on results to this relative tolerance


# ---- workloads: (engine, step) -> (seconds of backward alone or None, results)

def chain(engine, step):
    Value = engine.Value
    x = Value(1.0)
    h = x
    for _ in range(CHAIN_STEPS):
        h = h * 1.0001 + 0.001
    return _backward(h, [x])


def squares(engine, step):
    xs = [engine.Value(i * 0.001) for i in range(SQUARES)]
    total = sum(x * x for x in xs)
    return _backward(total, xs[1::997])


def _backward(root, leaves):
    """Time root.backward(); results: root's value and some leaves' grads."""
    t = time.perf_counter()
    root.backward()
    seconds = time.perf_counter() - t
    return seconds, [float(root.data)] + [float(x.grad) for x in leaves]


def moons_step(engine, step):
    loss, acc = train_step(engine.Value, engine.model, engine.X, engine.y, step)
    return None, [float(loss), round(float(acc), 6)]  # PyTorch's acc: float32


def user_moons_step(engine, step):
    loss, acc = train_step(engine.Value, engine.user_model, engine.X, engine.y, step)
    return None, [float(loss), round(float(acc), 6)]


def micrograd_nn(Value):
    """micrograd's own nn.py, its classes made over Value: the MLP a user
    who changed one import runs."""
    source = inspect.getsource(micrograd.nn).replace("from micrograd.engine import Value", "")
    namespace = {"Value": Value, "__name__": "user_nn"}
    exec(compile(source, "micrograd/nn.py", "exec"), namespace)
    return namespace["MLP"]


# ---- engines -----------------------------------------------------------------

class Engine:
    """What a workload needs: a Value factory, an MLP class, a collector."""

    def __init__(self, name, Value, MLP, collect, version, user_MLP=None):
        self.name, self.Value, self.MLP = name, Value, MLP
        self.user_MLP = user_MLP or MLP  # micrograd's nn.py over this Value
        self.collect, self.version = collect, version
        self.model = self.user_model = self.X = self.y = None

    def new_model(self):
        self.model = make_model(self.MLP)
        self.user_model = make_model(self.user_MLP)
        self.X, self.y = make_moons(MOONS_POINTS)

    def timed(self, fn, *args):
        """(total seconds, backward seconds or None, results) of fn(*args)."""
        self.collect()                      # earlier garbage: untimed
        t0 = time.perf_counter()
        inner, results = fn(*args)          # fn's graph is dropped on return
        self.collect()                      # this call's garbage: timed
        return time.perf_counter() - t0, inner, results


def _autograd_c_collect():
    gc.collect()
    autograd_c.stats()  # flushes the handles of dead Values into the arena


def _torch_engine():
    def Value(v):
        return torch.tensor(float(v), dtype=torch.float64, requires_grad=True)

    class Neuron:  # micrograd's Neuron over scalar tensors
        def __init__(self, nin, nonlin=True):
            self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
            self.b, self.nonlin = Value(0), nonlin

        def __call__(self, x):
            act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
            return act.relu() if self.nonlin else act

    class MLP:  # micrograd's MLP; zero_grad as torch does it
        def __init__(self, nin, nouts):
            sz = [nin] + nouts
            self.layers = [[Neuron(sz[i], nonlin=i != len(nouts) - 1)
                            for _ in range(sz[i + 1])] for i in range(len(nouts))]

        def __call__(self, x):
            for layer in self.layers:
                x = [n(x) for n in layer]
            return x[0] if len(x) == 1 else x

        def parameters(self):
            return [p for layer in self.layers for n in layer for p in n.w + [n.b]]

        def zero_grad(self):
            for p in self.parameters():
                p.grad = None

    torch.set_num_threads(1)
    return Engine("PyTorch", Value, MLP, gc.collect, torch.__version__)


def engines():
    found = [
        Engine("autograd_c", autograd_c.Value, autograd_c.nn.MLP,
               _autograd_c_collect, autograd_c.__version__,
               user_MLP=micrograd_nn(autograd_c.Value)),
        Engine("micrograd", micrograd.engine.Value, micrograd.nn.MLP, gc.collect,
               importlib.metadata.version("micrograd")),
    ]
    if torch is not None:
        found.append(_torch_engine())
    return found


# ---- measuring and reporting --------------------------------------------------

def measure(engines, name, repeats, call):
    """Rows {label: {engine: median seconds}} of call(engine, step) -> (backward
    seconds or None, results); a "backward" row when call times it.  Checks
    that the engines' results agree."""
    for e in engines:  # warm-up, untimed (a training run starts from it too)
        e.timed(call, e, 0)
    totals, backs, results = ({e.name: [] for e in engines} for _ in range(3))
    for step in range(1, repeats + 1):
        for e in engines:  # interleaved
            total, back, res = e.timed(call, e, step)
            totals[e.name].append(total)
            backs[e.name].append(back)
            results[e.name].append(res)
    _check_agreement(name, results)
    rows = {name: {k: statistics.median(v) for k, v in totals.items()}}
    if backs["autograd_c"][0] is not None:
        rows[f"{name} backward"] = {k: statistics.median(v) for k, v in backs.items()}
    return rows


def _check_agreement(name, results):
    ref = results["autograd_c"]
    for engine, got in results.items():
        for a, b in zip(ref, got):
            for x, y in zip(a, b):
                if abs(x - y) > RTOL * max(1.0, abs(x)):
                    raise SystemExit(f"{name}: {engine} gives {y!r}, autograd_c {x!r}")


def machine_line():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}, load average {load}")


def print_table(rows, engines, repeats):
    names = [e.name for e in engines]
    head = f"{'workload (repeats)':<32}" + "".join(f"{n:>13}" for n in names)
    head += f"{'micrograd/autograd_c':>22}  {'target':<12}"
    if torch is not None:
        head += f"{'PyTorch/autograd_c':>19}"
    head = head.rstrip()
    print(head)
    print("-" * len(head))
    for label, med in rows.items():
        ratio = med["micrograd"] / med["autograd_c"]
        target = TARGETS.get(label)
        verdict = "" if target is None else \
            f">= {target}x " + ("ok" if ratio >= target else "MISS")
        line = f"{label + f' ({repeats[label.split()[0]]})':<32}"
        line += "".join(f"{med[n] * 1e3:>10.2f} ms" for n in names)
        line += f"{ratio:>21.1f}x  {verdict:<12}"
        if torch is not None:
            line += f"{med['PyTorch'] / med['autograd_c']:>18.1f}x"
        print(line.rstrip())
    print("(medians; 'backward' rows time backward() alone, the others the whole "
          "call with its gc.collect())")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (3 and 2)")
    quick = parser.parse_args().quick
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * (4 * CHAIN_STEPS + SQUARES)))
    repeats = {"moons": 2, "chain": 3, "squares": 3} if quick else \
              {"moons": 5, "chain": 7, "squares": 7}
    es = engines()
    gc.collect()
    gc.freeze()  # collections see only what the benchmark makes from here on
    print(f"Python {platform.python_version()} ({platform.python_implementation()}), "
          + ", ".join(f"{e.name} {e.version}" for e in es)
          + ("" if torch else ", PyTorch not importable (skipped)"))
    print(machine_line())
    print(f"moons: one train_step on {MOONS_POINTS} points, MLP(2, [16, 16, 1]); "
          f"chain: {CHAIN_STEPS} steps of h*1.0001+0.001; squares: sum of {SQUARES} x*x\n")
    for e in es:
        e.new_model()
    rows = {}
    rows.update(measure(es, "moons (user-written)", repeats["moons"], user_moons_step))
    rows.update(measure(es, "moons (autograd_c.nn)", repeats["moons"], moons_step))
    rows.update(measure(es, "chain", repeats["chain"], chain))
    rows.update(measure(es, "squares", repeats["squares"], squares))
    print_table(rows, es, repeats)
    print("results agree across engines (rel. tol. %g)" % RTOL)


if __name__ == "__main__":
    main()
