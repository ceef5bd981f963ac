"""Threads: every C call takes the context's lock and cffi releases the GIL
around it, so threads may build, backpropagate, replay captured Graphs and
drop Values at once.  Results must equal the single-threaded (serial)
ones, and nodes must be neither lost nor leaked.

Why the comparisons are exact: each thread's own nodes are touched only by
that thread, so its numbers are bit-identical to the serial run whatever
the interleaving; shared parameters that several threads' backward passes
add into hold ints, whose sums are exact in any order (float ones are
compared up to rounding).  The `fast_switching` fixture (conftest) makes
the interpreter switch threads every microsecond, and support.run_threads
starts the threads together.  (no_grad's per-thread state:
test_autograd_controls.py; Graph.run's threads= option: test_graph_run.py.)
"""
import math
import random

from autograd_c import Graph, Value
from autograd_c.nn import MLP
from support import ALL_OPS, live_nodes, random_program, run_program, run_threads

N_THREADS = 4   # the tests of one kind of work each
N_HAMMER = 8    # the tests that do everything at once
ITERATIONS = 100
N_SHARED = 4


# --------------------------------------------------------------------------
# private graphs, a shared MLP, many small Values, one shared graph

def private_graph(seed):
    """A graph of its own from a seed (support.random_program with every
    op): mixed int/float data, node reuse.  Returns the data and grads of
    every node it keeps."""
    program = random_program(random.Random(seed), 6, 60, ops=ALL_OPS)
    run = run_program(Value, program, keep=lambda op, r, a, k: abs(r.data) < 1e3)
    run.root.backward()
    return [(repr(v.data), repr(v.grad)) for v in run.pool + run.sums]


def test_private_graphs_match_single_threaded(fast_switching, live_baseline):
    seeds = range(N_THREADS)
    expected = [[private_graph(s) for _ in range(2)] for s in seeds]
    assert all(e[0] == e[1] for e in expected)  # deterministic when alone
    got = run_threads(lambda k: [private_graph(k) for _ in range(25)], N_THREADS)
    for k in seeds:
        assert all(r == expected[k][0] for r in got[k]), f"thread {k} differs"
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
    shared, products = [x], []
    for i in range(200):
        products.append(shared[-1] * 1.01)
        shared.append(products[-1] + x)
    snapshot = [v.data for v in shared]

    def reader(k):
        out = []
        assert x._prev == set()
        for i, v in enumerate(shared):
            if i:  # v = shared[i-1] * 1.01 + x: exactly the Values it was built from
                p = products[i - 1]
                assert v._prev == {p, x} and len(p._prev) == 2 and shared[i - 1] in p._prev
                (factor,) = p._prev - {shared[i - 1]}
                assert factor.data == 1.01 and factor._prev == set()
            out.append((v * k).data)
        return out

    got = run_threads(reader, N_THREADS)
    for k, row in enumerate(got):
        assert row == [d * k for d in snapshot]
    assert [v.data for v in shared] == snapshot
    assert all(v.grad == 0 for v in shared)
    del shared, products, x
    assert live_nodes() == live_baseline


# --------------------------------------------------------------------------
# 8 threads: build, backward, replay and drop on shared parameters, like serial

def run_serially(work, n=N_HAMMER):
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
    return x, f, act, out, side


def eager_work(shared):
    """One thread's eager iterations: build, backward, read, drop."""
    def work(k):
        rng = random.Random(k)
        seen = []
        for _ in range(ITERATIONS):
            x, f, act, out, side = build(rng, shared)
            out.backward()
            side.backward()
            seen.append(snapshot([out, side, f, act, *x]))
            del x, f, act, out, side  # dropped while other threads build
        return seen
    return work


def replay_work(shared):
    """One thread's Graph replays: capture once, then for each iteration set
    the leaves, forward, backward, and a batched run; drop the Graph."""
    def work(k):
        rng = random.Random(100 + k)
        x, f, act, out, side = build(rng, shared)
        total = out + side
        graph = Graph(total)
        seen = []
        for _ in range(ITERATIONS):
            for xi in x:
                xi.data = rng.randint(-3, 3)
            f.data = rng.uniform(-2.0, 2.0)
            graph.forward()
            graph.backward()
            rows = [[rng.uniform(-1, 1)] for _ in range(70)]  # over one block of 64
            ran = graph.run(inputs=[f], rows=rows, grads=[f])
            seen.append((snapshot([total, f, *x]), repr(ran)))
        del graph
        return seen
    return work


def check_same_as_serial(make_work, live_baseline):
    serial_shared = shared_parameters()
    expected = run_serially(make_work(serial_shared))
    shared = shared_parameters()
    got = run_threads(make_work(shared), N_HAMMER)
    assert [len(r) for r in got] == [ITERATIONS] * N_HAMMER
    assert got == expected
    assert snapshot(shared) == snapshot(serial_shared)
    # the shared grads hold every thread's contributions, exactly (ints)
    assert all(p.grad != 0 and type(p.grad) is int for p in shared)
    del got, expected, shared, serial_shared
    assert live_nodes() == live_baseline


def test_threads_build_backward_and_drop_like_serial(fast_switching, live_baseline):
    """Each thread's outputs, leaf grads and the grad of an inner node on
    the shared parameters equal the serial run's; the shared parameters'
    int grads are the exact sum over the threads."""
    check_same_as_serial(eager_work, live_baseline)


def test_threads_replay_graphs_like_serial(fast_switching, live_baseline):
    """8 threads replay Graphs of their own at once (captured on the shared
    parameters): forward, backward and a batched run, as serially."""
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

    assert run_threads(work, N_HAMMER) == [[expected] * ITERATIONS] * N_HAMMER
    total = 0
    for _ in range(N_HAMMER * ITERATIONS):
        total += one_sum
    assert (x.data, w.data, x.grad, w.grad) == (0.5, -1.25, 0, total)
    del graph, root, x, w
    assert live_nodes() == live_baseline


def race_readers_and_replays(root, exact, close):
    """One thread replays a graph of root (a new one every 10 passes: all
    its nodes unread again) while others read its interior nodes -- each
    first read writes the node back and takes it out of its fused step,
    remaking the program -- and one switches the graph between fused and
    unfused: every value read is the node's, every grad (close(got, want))
    the node's after a forward (int 0) or after a backward, as a serial
    run has them."""
    from autograd_c._autograd_c import lib
    from test_graph_compiled import ordered_nodes

    inner = [v for v in ordered_nodes(root) if v._prev]
    graph = Graph(root, exact=exact)
    graph.forward()
    graph.backward()
    want = {id(v): (v.data, v.grad) for v in inner}   # read once: now visible
    current = [Graph(root * 1.0, exact=exact)]         # a graph of unread nodes
    options = 0 if exact else lib.AG_GRAPH_INEXACT
    stop = []

    def work(k):
        if k == 0:
            for i in range(10 * ITERATIONS):
                if i % 10 == 0:
                    current[0] = Graph(root * 1.0, exact=exact)
                current[0].forward()
                current[0].backward()
            stop.append(1)
            return "ran"
        if k == 1:
            flip = 0
            while not stop:
                flip ^= 1
                assert lib.ag_graph_set_options(
                    current[0]._g, options | (lib.AG_GRAPH_UNFUSED if flip else 0)) == 0
            return "flipped"
        r = random.Random(k)
        reads = 0
        while not stop:
            v = inner[r.randrange(len(inner))]
            data, grad = v.data, v.grad
            assert data == want[id(v)][0]
            assert close(grad, want[id(v)][1]) or (grad == 0 and type(grad) is int), \
                (grad, want[id(v)])
            reads += 1
        return reads

    results = run_threads(work, 4)
    assert results[:2] == ["ran", "flipped"] and sum(results[2:]) > 0
    current[0].forward()
    current[0].backward()
    assert all(v.data == want[id(v)][0] and close(v.grad, want[id(v)][1]) for v in inner)


def test_readers_inside_a_compiled_graph_while_it_runs(fast_switching, live_baseline):
    """A float MLP: its neurons dot chains whose inner grads are held
    unstored after each backward; exact, so every grad bit for bit."""
    rng = random.Random(11)
    h = [Value(rng.uniform(-1, 1)) for _ in range(3)]
    for n_out in (6, 5, 1):
        h = [sum((Value(rng.uniform(-1, 1)) * xi for xi in h), Value(0.5)).relu()
             for _ in range(n_out)]
    race_readers_and_replays(h[0] * 1.5, True, lambda got, want: got == want)
    del h
    assert live_nodes() == live_baseline


def test_readers_inside_softmaxes_while_they_run(fast_switching, live_baseline):
    """Softplus and softmax steps (exact=False): a softmax's inner grads are
    worked out from its outputs' when first read; fused and unfused differ
    by rounding there (compared to 1e-9)."""
    from test_graph_patterns import softmax

    rng = random.Random(12)
    pool = [Value(rng.uniform(-1, 1)) for _ in range(4)]
    for k in range(6):
        pool.append((pool[-3].exp() + 1).log())
        pool += softmax([pool[-j] * (1 + 0.5 * j) for j in range(1, 5)], {0, 1, 3})
    race_readers_and_replays(
        pool[-1] * pool[-2] + pool[-3], False,
        lambda got, want: math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15))
    del pool
    assert live_nodes() == live_baseline
