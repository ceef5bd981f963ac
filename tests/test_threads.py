"""Threads: every C call takes the context's lock and cffi releases the GIL
around it, so threads may build and backpropagate at once.  Results must
equal the single-threaded ones, and nodes must be neither lost nor leaked.

The `fast_switching` fixture (conftest) makes the interpreter switch
threads every microsecond, and a barrier starts the threads together."""
import math
import random

from autograd_c import Value
from autograd_c.nn import MLP
from support import live_nodes, run_threads

N_THREADS = 4




def private_graph(seed):
    """A graph of its own from a seed: mixed int/float data, every op, node
    reuse.  Returns the data and grads of every node it keeps."""
    rng = random.Random(seed)
    leaves = [Value(rng.choice([rng.randint(-3, 3), rng.uniform(-2, 2)])) for _ in range(6)]
    nodes = list(leaves)
    for _ in range(60):
        a, b = rng.choice(nodes), rng.choice(nodes)
        op = rng.randrange(8)
        if op == 0:
            r = a + b
        elif op == 1:
            r = a * b
        elif op == 2:
            r = a - 2.5 * b
        elif op == 3:
            r = (a * a + 1) ** -1 * b
        elif op == 4:
            r = a.relu() + b.tanh()
        elif op == 5:
            r = (a * 0.1).exp() - b.sigmoid()
        elif op == 6:
            r = 3 - a
        else:
            r = (a * a + 0.5).log() + b ** 2
        if abs(r.data) < 1e3:
            nodes.append(r)
    root = sum(nodes[6:], nodes[0])
    root.backward()
    return [(repr(v.data), repr(v.grad)) for v in nodes + [root]]


def test_private_graphs_match_single_threaded(fast_switching, live_baseline):
    seeds = range(N_THREADS)
    expected = [[private_graph(s) for _ in range(2)] for s in seeds]
    assert all(e[0] == e[1] for e in expected)  # deterministic when alone
    got = run_threads(lambda k: [private_graph(k) for _ in range(25)], N_THREADS)
    for k in seeds:
        assert all(r == expected[k][0] for r in got[k]), f"thread {k} differs"
    assert live_nodes() == live_baseline


def test_shared_int_parameters(fast_switching, live_baseline):
    """Shared parameter Values (read for their data by every thread; their
    grads receive every thread's backward).  All ints, so the sum over the
    threads is exact in any order."""
    params = [Value(p) for p in (2, -3, 5, 1)]
    rounds = 30

    def one(k, i):
        x = Value(k + i)
        w0, w1, w2, w3 = params
        h = (w0 * x + w1).relu() + (w2 * x - w3) * x
        out = h * h + w0 * w1
        out.backward()
        return out.data, x.grad, h.grad

    expected = [[one(k, i) for i in range(rounds)] for k in range(N_THREADS)]
    single_grads = [p.grad for p in params]
    for p in params:
        p.grad = 0
    del p
    got = run_threads(lambda k: [one(k, i) for i in range(rounds)], N_THREADS)
    assert got == expected
    assert [p.grad for p in params] == single_grads
    assert all(type(p.grad) is int for p in params)
    del params
    assert live_nodes() == live_baseline


def test_shared_mlp_parameters(fast_switching, live_baseline):
    """One MLP shared by all threads; each thread runs its own inputs
    through it (the C Layer fast path) and backpropagates.  Outputs and
    input grads equal the single-threaded ones exactly; the parameters'
    grads, summed from all threads in whatever order they ran, are close."""
    random.seed(42)
    model = MLP(3, [8, 8, 1])
    data = [[[random.uniform(-1, 1) for _ in range(3)] for _ in range(20)]
            for _ in range(N_THREADS)]

    def one(k):
        res = []
        for row in data[k]:
            xs = [Value(v) for v in row]
            out = model(xs)
            loss = (1 - out).relu() + out * out
            loss.backward()
            res.append((out.data, loss.data, [x.grad for x in xs]))
        return res

    model.zero_grad()
    expected = [one(k) for k in range(N_THREADS)]
    single_grads = [p.grad for p in model.parameters()]
    model.zero_grad()
    got = run_threads(one, N_THREADS)
    assert got == expected
    for g, s in zip((p.grad for p in model.parameters()), single_grads):
        assert type(g) is type(s) and math.isclose(g, s, rel_tol=1e-9, abs_tol=1e-12)
    del model
    assert live_nodes() == live_baseline


def test_threads_create_and_drop_many_values(fast_switching, live_baseline):
    """Values created and dropped on several threads at once (the dead ones
    handed back to C in batches from whichever thread fills the batch):
    nothing lost, nothing leaked, results right."""
    def churn(k):
        total = 0
        keep = []
        for i in range(4000):
            a = Value(i)
            b = a * (k + 1) + a       # int: exact
            if i % 7 == 0:
                b.backward()
                assert a.grad == k + 2
            if i % 100 == 0:
                keep.append(b)        # some live across other threads' frees
            total += b.data
        assert [v.data for v in keep] == [i * (k + 2) for i in range(0, 4000, 100)]
        return total

    got = run_threads(churn, N_THREADS)
    assert got == [sum(i * (k + 2) for i in range(4000)) for k in range(N_THREADS)]
    assert live_nodes() == live_baseline


def test_threads_share_one_graph_for_reading(fast_switching, live_baseline):
    """One graph built up front; threads read data, walk _prev and build new
    nodes on top of it at once.  The shared graph is not changed."""
    x = Value(1.5)
    shared = [x]
    for i in range(200):
        shared.append(shared[-1] * 1.01 + x)
    snapshot = [v.data for v in shared]

    def reader(k):
        out = []
        for v in shared:
            assert x in v._prev or v is x or len(v._prev) == 2
            out.append((v * k).data)
        return out

    got = run_threads(reader, N_THREADS)
    for k, row in enumerate(got):
        assert row == [d * k for d in snapshot]
    assert [v.data for v in shared] == snapshot
    assert all(v.grad == 0 for v in shared)
    del shared, x
    assert live_nodes() == live_baseline
