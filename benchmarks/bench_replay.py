"""bench_replay.py -- captured-graph replay (autograd_c.Graph) against
micrograd's eager training step.  Run by `make bench`.

    python3 benchmarks/bench_replay.py [--quick]
    python3 benchmarks/bench_replay.py --dask [--quick]    # needs autograd_c[dask]

Workload: one step of micrograd's moons demo -- MLP(2, [16, 16, 1]), 100
points, SVM hinge loss (mean) + 1e-4 L2, backward, SGD with micrograd's
decaying learning rate -- done four ways, each on its own model started from
the same weights:

  micrograd   micrograd.nn.MLP + autograd_c.train.train_step (micrograd.Value):
              builds the ~66,000-node graph anew, backward, update
  eager       the same code with autograd_c.Value (for reference)
  (a) graph   the whole-batch loss graph (train.moons_loss) captured once;
              each step replays it: forward, zero_grad, backward, SGD update
              (Params: one C call each).  Python's numbers, the same bits as
              the eager step.
  (b) run     a one-point graph, hinge(x, y) / 100, run batched over the 100
              rows in plain doubles (Graph.run adds the parameter grads summed
              over rows; the rows are one array.array('d', ...) made at
              setup and read in place), plus the L2 term as a second captured
              graph (forward + backward), then the SGD update.  The same loss
              and gradients as micrograd up to floating-point summation order.

Also the op mix of issue 12, built from Values (100 inputs, 10,000 ops cycling
over softplus, a 4-term sum, a product and a 4-way softmax) and captured:
graph.forward() + graph.backward(), us per pass and ns per node (median).

--dask instead times rows per second of one pass (outputs and parameter
gradients) of the per-row moons loss over DASK_ROWS rows: Graph.run in this
process (1 and 2 threads) against autograd_c.dask.run on a
distributed.LocalCluster of 2 worker processes x 1 thread, rows already on
the workers, interleaved, medians (a figure for this machine, not a target:
on 2 cores the cluster has no more CPUs than the local run).

Fairness, as bench_engine.py: interleaved within each repeat (micrograd, eager,
(a), (b), ...) after an untimed warm-up; every timed call starts after an
untimed gc.collect() and ends with its own gc.collect() inside its time;
gc.freeze() after setup so those collections walk only what the timed call
made.  The fast variants are timed several times per repeat (one step per
timed call).  Medians; ratios = micrograd median / variant median.  Before
timing, the variants' first-step losses and gradients are checked against
micrograd's (and (a) bit for bit against the eager step); a disagreement
stops the run.
"""
import argparse
import array
import gc
import math
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autograd_c as ag  # noqa: E402
import micrograd.engine  # noqa: E402
import micrograd.nn  # noqa: E402
from autograd_c.datasets import make_moons  # noqa: E402
from autograd_c.train import learning_rate, make_model, moons_loss, train_step  # noqa: E402

POINTS = 100
STEPS = 100          # the learning-rate schedule's length (train.learning_rate)
ALPHA = 1e-4         # train.moons_loss's L2 weight
TARGET = 5000        # micrograd / (a), issue 12
RTOL = 1e-9


def collect():
    gc.collect()
    ag.stats()  # flushes the handles of dead Values into the arena


# ---- the variants: each .step(k) does one training step, returns the loss ----

class Eager:
    def __init__(self, name, Value, MLP, X, y):
        self.name, self.Value, self.X, self.y = name, Value, X, y
        self.model = make_model(MLP)

    def step(self, k):
        return train_step(self.Value, self.model, self.X, self.y, k, STEPS)[0]

    def grads(self):
        return [p.grad for p in self.model.parameters()]


class WholeBatchGraph:
    """(a): train.moons_loss's graph captured once, replayed every step."""
    name = "(a) graph"

    def __init__(self, X, y):
        self.model = make_model(ag.nn.MLP)
        total_loss, _ = moons_loss(ag.Value, self.model, X, y, ALPHA)
        self.graph = ag.Graph(total_loss)
        self.params = ag.Params(self.model.parameters())

    def step(self, k):
        loss = self.graph.forward()
        self.params.zero_grad()
        self.graph.backward()
        self.params.sgd(learning_rate(k, STEPS))
        return loss

    def grads(self):
        return [p.grad for p in self.params]


class BatchedRun:
    """(b): a one-point graph run over the rows, plus an L2 graph."""
    name = "(b) run"

    def __init__(self, X, y, threads=1):
        self.model = make_model(ag.nn.MLP)
        self.x = [ag.Value(0.0), ag.Value(0.0)]
        self.y = ag.Value(0)
        hinge = (1 + -self.y * self.model(self.x)).relu()
        self.row_graph = ag.Graph(hinge * (1.0 / len(X)))   # mean over rows
        self.params = ag.Params(self.model.parameters())
        reg = ALPHA * sum(p * p for p in self.params)        # train.moons_loss's
        self.reg_graph = ag.Graph(reg)
        # the data set as one flat float64 buffer, made once: read in place
        self.rows = array.array("d", [v for (a, b), c in zip(X, y) for v in (a, b, c)])
        self.inputs = [*self.x, self.y]
        self.threads = threads
        if threads > 1:
            self.name = f"(b) run, threads={threads}"

    def step(self, k):
        self.params.zero_grad()
        out = self.row_graph.run(self.inputs, self.rows, self.params,
                                 threads=self.threads)
        reg = self.reg_graph.forward()
        self.reg_graph.backward()
        self.params.sgd(learning_rate(k, STEPS))
        return math.fsum(out) + reg

    def grads(self):
        return [p.grad for p in self.params]


def opmix(Value, ops=10000):
    """The issue's op mix built from Values; returns the last node."""
    n = [Value(i / 100) for i in range(100)]
    for k in range(ops):
        if k % 4 == 0:
            n.append((n[-10].exp() + 1).log())
        elif k % 4 == 1:
            a, b, c, d = n[-30:-10:5]
            n.append(a + b + c + d)
        elif k % 4 == 2:
            n.append(n[-20] * n[-10])
        else:
            e = [v.exp() for v in n[-4:]]
            inv = (e[0] + e[1] + e[2] + e[3]) ** -1
            n.extend(ej * inv for ej in e)
    return n[-1]


def bench_opmix(passes):
    """Median us per graph.forward() + graph.backward() of the op mix, exact
    and inexact (Graph(root, exact=False)), interleaved."""
    graphs = {"op mix (issue 12)": ag.Graph(opmix(ag.Value)),  # two builds:
              "op mix, exact=False": ag.Graph(opmix(ag.Value), exact=False)}  # disjoint
    times = {name: [] for name in graphs}
    for _ in range(passes):
        for name, graph in graphs.items():
            t0 = time.perf_counter()
            graph.forward()
            graph.backward()
            times[name].append(time.perf_counter() - t0)
    for name, graph in graphs.items():
        med = statistics.median(times[name])
        print(f"{name}: {len(graph)} nodes, forward+backward "
              f"{med * 1e6:8.1f} us/pass {med * 1e9 / len(graph):6.2f} ns/node")


# ---- checks -----------------------------------------------------------------------

def close(a, b):
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-15)


def check_first_steps(variants):
    """Every variant's first step against micrograd's; (a) bit for bit
    against the eager step (losses, grads, updated weights)."""
    mg, eager = variants[0], variants[1]
    losses = [v.step(0) for v in variants]
    grads = [v.grads() for v in variants]
    for v, loss, gs in zip(variants[1:], losses[1:], grads[1:]):
        worst = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(gs, grads[0]))
        ok = close(loss, losses[0]) and all(close(a, b) for a, b in zip(gs, grads[0]))
        print(f"  check {v.name:<22} loss {loss:.15f} (micrograd {losses[0]:.15f}), "
              f"grads max rel diff {worst:.1e}: {'ok' if ok else 'MISMATCH'}")
        if not ok:
            raise SystemExit(f"bench_replay: {v.name} disagrees with micrograd")
    a = next(v for v in variants if isinstance(v, WholeBatchGraph))
    same = (losses[variants.index(a)] == losses[1] and a.grads() == eager.grads() and
            [p.data for p in a.params] == [p.data for p in eager.model.parameters()])
    print(f"  check (a) graph vs eager step, bit for bit (loss, grads, new weights): "
          f"{'ok' if same else 'MISMATCH'}")
    if not same:
        raise SystemExit("bench_replay: (a) differs from the eager step")


# ---- timing -----------------------------------------------------------------------

def timed(step, k):
    collect()                      # earlier garbage: untimed
    t0 = time.perf_counter()
    step(k)
    collect()                      # this call's garbage: timed
    return time.perf_counter() - t0


DASK_ROWS = 10**6
DASK_PARTITION = 125_000


def dask_main(repeats):
    """Rows per second: Graph.run here vs autograd_c.dask.run on a cluster."""
    import distributed
    import numpy as np
    import autograd_c.dask as agd
    rows = agd.moons_rows(DASK_ROWS, DASK_PARTITION)
    local_rows = rows.compute()
    model = make_model(ag.nn.MLP)
    x0, x1, y = ag.Value(0.0), ag.Value(0.0), ag.Value(0.0)
    graph = ag.Graph((1 + -y * model([x0, x1])).relu())
    params = ag.Params(model.parameters())
    inputs = [x0, x1, y]
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs; per-row moons loss "
          f"graph {len(graph)} nodes, {len(params)} parameters, {DASK_ROWS} rows "
          f"({DASK_ROWS // DASK_PARTITION} partitions)")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_cluster = rows.persist()
        distributed.wait(on_cluster)
        ways = {"local, 1 thread": lambda: graph.run(inputs, local_rows, grads=params),
                "local, 2 threads": lambda: graph.run(inputs, local_rows, grads=params, threads=2),
                "dask, 2 workers": lambda: agd.run(graph, inputs, on_cluster, grads=params)}
        times = {name: [] for name in ways}
        for _ in range(repeats + 1):             # the first round: warm-up, untimed
            for name, way in ways.items():
                params.zero_grad()
                t0 = time.perf_counter()
                way()
                times[name].append(time.perf_counter() - t0)
        del client
    print(f"\n{'way':<20}{'median':>12}{'rows/s':>14}{'vs local 1 thread':>20}")
    base = statistics.median(times["local, 1 thread"][1:])
    for name, t in times.items():
        med = statistics.median(t[1:])
        print(f"{name:<20}{med * 1e3:>9.1f} ms{DASK_ROWS / med:>14,.0f}{base / med:>19.2f}x")
    print(f"({repeats} rounds, interleaved; the dask time includes pickling the graph, "
          f"scheduling and the tree reduction; np {np.__version__})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 5")
    parser.add_argument("--dask", action="store_true",
                        help="rows/s of Graph.run here vs autograd_c.dask.run on a local cluster")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    if args.dask:
        return dask_main(repeats * 2)
    fast_per_repeat = 20

    X, y = make_moons(POINTS, noise=0.1)
    variants = [Eager("micrograd", micrograd.engine.Value, micrograd.nn.MLP, X, y),
                Eager("eager", ag.Value, ag.nn.MLP, X, y),
                WholeBatchGraph(X, y), BatchedRun(X, y), BatchedRun(X, y, threads=2)]
    print(f"Python {platform.python_version()}, autograd_c {ag.__version__}, "
          f"micrograd 0.1.0; {os.cpu_count()} CPUs, load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"moons step: MLP(2, [16, 16, 1]), {POINTS} points, hinge + L2, backward, SGD; "
          f"graph (a): {len(variants[2].graph)} nodes; graph (b): "
          f"{len(variants[3].row_graph)} nodes x {POINTS} rows + L2 graph "
          f"{len(variants[3].reg_graph)} nodes")
    check_first_steps(variants)

    for v in variants:            # warm-up, untimed
        v.step(1)
    collect()
    gc.freeze()                   # collections see only what the steps make
    times = {v.name: [] for v in variants}
    k = 2
    for _ in range(repeats):
        for v in variants:
            for _ in range(1 if isinstance(v, Eager) else fast_per_repeat):
                times[v.name].append(timed(v.step, k % STEPS))
        k += 1
    gc.unfreeze()

    base = statistics.median(times["micrograd"])
    print(f"\n{'variant':<24}{'median':>12}{'samples':>9}{'micrograd/variant':>20}")
    print("-" * 65)
    for v in variants:
        med = statistics.median(times[v.name])
        unit = f"{med * 1e3:9.3f} ms" if med >= 1e-3 else f"{med * 1e6:9.1f} us"
        print(f"{v.name:<24}{unit:>12}{len(times[v.name]):>9}{base / med:>19.0f}x")
    graph_step = statistics.median(times["(a) graph"])
    print(f"(timed: one step per call, including its gc.collect(); target for (a): "
          f">= {TARGET}x -> {'ok' if base / graph_step >= TARGET else 'MISS'} "
          f"({base / graph_step:.0f}x))")
    bench_opmix(5 * fast_per_repeat)
    print("(a) computes micrograd's step with Python's numbers, bit-identical to the "
          "eager step;\n(b) computes it in plain doubles: the same loss and grads up "
          "to summation order.")


if __name__ == "__main__":
    main()
