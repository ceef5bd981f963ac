"""Concurrency: 8 threads hammer one arena at once -- each builds its own
graphs on shared parameters, backpropagates (into the shared parameters'
grads too), replays captured Graphs and drops everything, for a fixed
number of iterations -- and the results must equal the same work done
serially, with no node lost or leaked.

Why the comparison is exact: each thread's own nodes are touched only by
that thread, so its numbers are bit-identical to the serial run whatever
the interleaving; the shared parameters hold ints, whose gradient sums are
exact in any order.  `fast_switching` (conftest) sets
sys.setswitchinterval(1e-6) so the interpreter switches threads as often as
it can, and support.run_threads starts the threads together.
"""
import random

import autograd_c
from autograd_c import Graph, Value
from support import run_threads

N_THREADS = 8
ITERATIONS = 100
N_SHARED = 4


def run_serially(work, n=N_THREADS):
    return [work(k) for k in range(n)]


def shared_parameters():
    return [Value(i + 1) for i in range(N_SHARED)]


def snapshot(values):
    return [(type(v.data), v.data, type(v.grad), v.grad) for v in values]


def build(rng, shared):
    """A small graph on fresh leaves and the shared (int) parameters: ints
    where the grads reach the shared parameters, floats elsewhere."""
    x = [Value(rng.randint(-3, 3)) for _ in range(N_SHARED)]
    f = Value(rng.uniform(-2.0, 2.0))
    act = sum((w * xi for w, xi in zip(shared, x)), Value(1))
    out = act.relu() * 2 + act ** 2 - x[0]
    side = (f * 3.5).tanh() + (f / 7).exp() + (f ** 2 + 1).log() + f.sigmoid()
    return x, f, out, side


def eager_work(shared):
    """One thread's eager iterations: build, backward, read, drop."""
    def work(k):
        rng = random.Random(k)
        seen = []
        for _ in range(ITERATIONS):
            x, f, out, side = build(rng, shared)
            out.backward()
            side.backward()
            seen.append(snapshot([out, side, f, *x]))
            del x, f, out, side  # dropped while other threads build
        return seen
    return work


def replay_work(shared):
    """One thread's Graph replays: capture once, then for each iteration set
    the leaves, forward, backward, and a batched run; drop the Graph."""
    def work(k):
        rng = random.Random(100 + k)
        x, f, out, side = build(rng, shared)
        total = out + side
        graph = Graph(total)
        seen = []
        for _ in range(ITERATIONS):
            for xi in x:
                xi.data = rng.randint(-3, 3)
            f.data = rng.uniform(-2.0, 2.0)
            graph.forward()
            graph.backward()
            rows = [[rng.uniform(-1, 1)] for _ in range(5)]
            ran = graph.run(inputs=[f], rows=rows, grads=[f])
            seen.append((snapshot([total, f, *x]), repr(ran)))
        del graph
        return seen
    return work


def check_same_as_serial(make_work, live_baseline):
    serial_shared = shared_parameters()
    expected = run_serially(make_work(serial_shared))
    shared = shared_parameters()
    got = run_threads(make_work(shared), N_THREADS)
    assert [len(r) for r in got] == [ITERATIONS] * N_THREADS
    assert got == expected
    assert snapshot(shared) == snapshot(serial_shared)
    # the shared grads hold every thread's contributions
    assert all(p.grad != 0 for p in shared)
    del got, expected, shared, serial_shared
    assert autograd_c.stats()["live_nodes"] == live_baseline


def test_threads_build_backward_and_drop_like_serial(fast_switching, live_baseline):
    check_same_as_serial(eager_work, live_baseline)


# Graph replay from 8 threads at once (captured Graphs on shared parameters).
def test_threads_replay_graphs_like_serial(fast_switching, live_baseline):
    check_same_as_serial(replay_work, live_baseline)


def test_threads_run_one_shared_graph(fast_switching, live_baseline):
    """Graph.run on one Graph from every thread (calls on one graph are
    serialised by its lock): each thread gets the single-threaded outputs,
    and w.grad gets every run's (identical) sum added."""
    x = Value(0.5)
    w = Value(-1.25)
    root = (x * w + 0.25).tanh() + (x * x).exp()
    graph = Graph(root)
    rows = [[i / 10] for i in range(-20, 21)]
    expected = graph.run(inputs=[x], rows=rows, grads=[w])
    one_sum = w.grad
    w.grad = 0

    def work(k):
        return [graph.run(inputs=[x], rows=rows, grads=[w]) for _ in range(ITERATIONS)]

    assert run_threads(work, N_THREADS) == [[expected] * ITERATIONS] * N_THREADS
    total = 0
    for _ in range(N_THREADS * ITERATIONS):
        total += one_sum
    assert (x.data, w.data, x.grad, w.grad) == (0.5, -1.25, 0, total)
    del graph, root, x, w
    assert autograd_c.stats()["live_nodes"] == live_baseline
