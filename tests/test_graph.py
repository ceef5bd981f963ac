"""Captured graphs (autograd_c.Graph): replay against fresh eager builds (bit
for bit, types included), against micrograd (up to summation order), batched
runs against per-row loops, threads, buffers, errors, lifetime."""
import array
import gc
import math
import random
import struct
import threading

import pytest
from micrograd.engine import Value as MgValue

import autograd_c as ag
from autograd_c import Graph, Params, Value

try:
    import numpy as np
except ImportError:  # the suite runs without numpy; the numpy cases are then skipped
    np = None

needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed")


def live_nodes():
    gc.collect()
    return ag.stats()["live_nodes"]


def bits(x):
    """A number's type and exact bits: -0.0 != 0.0, nan == nan."""
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    return (type(x).__name__, x)


# ---- random graphs given as recipes ------------------------------------------
# A recipe is a list of steps (op, a, b, k): node n_leaves + i = op(node a,
# node b, constant k), operands a, b < n_leaves + i.  build() runs it with any
# Value class, so the same graph can be built by autograd_c and micrograd.

ALL_OPS = ["add", "mul", "sub", "div", "neg", "radd", "rmul", "rsub", "powk",
           "powv", "rpow", "relu", "tanh", "exp", "log", "sigmoid"]
MICROGRAD_OPS = ["add", "mul", "sub", "neg", "radd", "rmul", "rsub", "powk", "relu"]
CONSTANTS = [2, 3, -1, 0, 1, 0.5, -1.5, 2.0]


def make_recipe(rng, n_leaves, n_steps, ops):
    steps = []
    for i in range(n_steps):
        op = rng.choice(ops)
        k = rng.choice([2, 3, -1, 1, 0.5, 1.5]) if op == "powk" else rng.choice(CONSTANTS)
        if op == "powk" and ops is MICROGRAD_OPS:
            k = rng.choice([2, 3, 1])  # real results for any base, as micrograd needs
        if op == "rpow":
            k = rng.choice([2, 0.5, 1.5])
        # prefer recent nodes so that the graph is deep and shared
        lo = max(0, n_leaves + i - 6)
        a = rng.randrange(lo, n_leaves + i) if rng.random() < 0.7 else rng.randrange(n_leaves + i)
        b = rng.randrange(n_leaves + i)
        steps.append((op, a, b, k))
    return steps


def build(V, recipe, leaves, only=None):
    """All nodes: the given leaves, then one per step (None for the steps
    whose node is not in `only`, when given)."""
    nodes = list(leaves)
    for op, a, b, k in recipe:
        if only is not None and len(nodes) not in only:
            nodes.append(None)
            continue
        x, y = nodes[a], nodes[b]
        if op == "add": r = x + y
        elif op == "mul": r = x * y
        elif op == "sub": r = x - y
        elif op == "div": r = x / y
        elif op == "neg": r = -x
        elif op == "radd": r = k + x
        elif op == "rmul": r = k * x
        elif op == "rsub": r = k - x
        elif op == "powk": r = x ** k
        elif op == "powv": r = x ** y
        elif op == "rpow": r = k ** x
        else: r = getattr(x, op)()
        nodes.append(r)
    return nodes


def reachable(recipe, n_leaves):
    """Indices of the nodes the last node reaches."""
    seen, todo = set(), [n_leaves + len(recipe) - 1]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        if i >= n_leaves:
            op, a, b, _ = recipe[i - n_leaves]
            todo.append(a)
            if op in ("add", "mul", "sub", "div", "powv"):
                todo.append(b)
    return sorted(seen)


def leaf_values(rng, n):
    return [rng.choice([rng.randint(-3, 3), rng.uniform(-2, 2), rng.choice([0, 1, 2])])
            for _ in range(n)]


PYTHON_ERRORS = (ValueError, ZeroDivisionError, OverflowError)


def eager(recipe, values, only):
    """A fresh autograd_c build of the nodes in `only` and its backward, or
    the exception."""
    try:
        nodes = build(Value, recipe, [Value(v) for v in values], only)
    except PYTHON_ERRORS as e:
        return None, e
    nodes[-1].backward()
    return nodes, None


def captured_graph(rng, ops, n_leaves=4, n_steps=12):
    """(recipe, leaves, nodes, Graph) of a random graph that builds."""
    while True:
        recipe = make_recipe(rng, n_leaves, n_steps, ops)
        leaves = [Value(v) for v in leaf_values(rng, n_leaves)]
        try:
            nodes = build(Value, recipe, leaves)
        except PYTHON_ERRORS:
            continue
        return recipe, leaves, nodes, Graph(nodes[-1])


def snapshot(nodes, idx):
    return [(bits(nodes[i].data), bits(nodes[i].grad)) for i in idx]


@pytest.mark.parametrize("seed", range(40))
def test_replay_is_bit_identical_to_fresh_eager_builds(seed):
    rng = random.Random(seed)
    recipe, leaves, nodes, g = captured_graph(rng, ALL_OPS)
    idx = reachable(recipe, len(leaves))
    checked = 0
    for _ in range(6):
        values = leaf_values(rng, len(leaves))
        fresh, error = eager(recipe, values, set(idx))
        before = snapshot(nodes, idx)
        for leaf, v in zip(leaves, values):
            leaf.data = v
        if error is not None:
            with pytest.raises(PYTHON_ERRORS):
                g.forward()
            after = snapshot(nodes, idx)
            changed = [i for i, b, a in zip(idx, before, after) if b != a and i >= len(leaves)]
            assert changed == [], "a failed forward changed op nodes"
            continue
        assert bits(g.forward()) == bits(fresh[-1].data)
        for leaf in leaves:
            leaf.grad = 0
        g.backward()
        for i in idx:
            assert bits(nodes[i].data) == bits(fresh[i].data), (i, recipe)
            assert bits(nodes[i].grad) == bits(fresh[i].grad), (i, recipe)
        checked += 1
    if seed < 10:
        assert checked, "no error-free rebuild: the test checked nothing"


def test_forward_makes_op_grads_fresh_and_backward_accumulates_like_eager():
    a, b = Value(2.0), Value(-3)
    c = a * b
    d = (c + a).relu() + c * c
    g = Graph(d)
    g.backward()
    g.backward()  # a second backward accumulates, as d.backward() twice would
    a2, b2 = Value(2.0), Value(-3)
    c2 = a2 * b2
    d2 = (c2 + a2).relu() + c2 * c2
    d2.backward()
    d2.backward()
    for x, y in [(a, a2), (b, b2), (c, c2), (d, d2)]:
        assert bits(x.grad) == bits(y.grad)
    g.forward()
    assert bits(c.grad) == bits(0) and bits(d.grad) == bits(0)  # fresh nodes' int 0
    assert bits(a.grad) == bits(a2.grad)                          # leaves keep theirs


def test_forward_types_follow_python():
    x = Value(3)
    y = (x * 2 + 1).relu() ** 2
    g = Graph(y)
    assert g.forward() == 49 and type(y.data) is int
    x.data = -3
    assert g.forward() == 0 and type(y.data) is int  # relu of a negative: int 0
    x.data = 1.5
    assert g.forward() == 16.0 and type(y.data) is float


@pytest.mark.parametrize("seed", range(25))
def test_replay_matches_micrograd_on_random_graphs(seed):
    rng = random.Random(1000 + seed)
    recipe, leaves, nodes, g = captured_graph(rng, MICROGRAD_OPS, n_leaves=3, n_steps=15)
    idx = reachable(recipe, len(leaves))
    for _ in range(4):
        values = leaf_values(rng, len(leaves))
        try:
            mg = build(MgValue, recipe, [MgValue(v) for v in values], set(idx))
        except PYTHON_ERRORS:
            continue
        mg[-1].backward()
        for leaf, v in zip(leaves, values):
            leaf.data = v
            leaf.grad = 0
        g.forward()
        g.backward()
        for i in idx:
            for ours, theirs in [(nodes[i].data, mg[i].data), (nodes[i].grad, mg[i].grad)]:
                assert type(ours) is type(theirs)
                if math.isnan(theirs):
                    assert math.isnan(ours)
                else:
                    assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12), (i, recipe)


def test_opaque_nodes_are_sources():
    a, b = Value(1.0), Value(2.0)
    o = Value(5.0, (a, b), "custom")  # user-built: data given, gradient stops
    r = o * a + b
    g = Graph(r)
    a.data = 3.0
    assert g.forward() == 5.0 * 3.0 + 2.0
    assert o.data == 5.0
    a.grad = b.grad = 0
    g.backward()
    assert (a.grad, b.grad, o.grad) == (5.0, 1, 3.0)


def test_forward_error_raises_like_eager_and_changes_nothing():
    x = Value(2.0)
    h = x * 3
    y = (h + 1).log() + h.exp()
    g = Graph(y)
    y.backward()
    state = [(bits(v.data), bits(v.grad)) for v in (x, h, y)]
    x.data = -1.0
    with pytest.raises(ValueError) as replayed:
        g.forward()
    with pytest.raises(ValueError) as built:
        (Value(-1.0) * 3 + 1).log()
    assert str(built.value) in str(replayed.value)
    assert [(bits(v.data), bits(v.grad)) for v in (h, y)] == state[1:]
    x.data = 1000.0
    with pytest.raises(OverflowError):
        g.forward()
    z = Value(0.0)
    w = (z + 1) ** -1
    g2 = Graph(w)
    z.data = -1
    with pytest.raises(ZeroDivisionError):
        g2.forward()
    x.data = 0.5
    assert g.forward() == math.log(2.5) + math.exp(1.5)


# ---- batched runs --------------------------------------------------------------

def hinge_graph(sizes=(16, 16, 1), seed=0):
    """x (2 input leaves), y, model, loss = (1 + -y * model(x)).relu()."""
    random.seed(seed)
    x = [Value(0.0), Value(0.0)]
    y = Value(0.0)
    model = ag.nn.MLP(2, list(sizes))
    loss = (1 + -y * model(x)).relu()
    return x, y, model, loss


def random_rows(n, seed=1):
    rng = random.Random(seed)
    return [[rng.uniform(-1.5, 2.5), rng.uniform(-1, 1.5), rng.choice([-1.0, 1.0])]
            for _ in range(n)]


def per_row_loop(g, inputs, rows, params):
    """Outputs and summed grads from forward/backward per row."""
    for p in params:
        p.grad = 0
    outs = []
    for row in rows:
        for v, c in zip(inputs, row):
            v.data = c
        outs.append(g.forward())
        g.backward()
    return outs, [p.grad for p in params]


def assert_close_lists(xs, ys, rel=1e-12, abs_tol=1e-12):
    assert len(xs) == len(ys)
    for a, b in zip(xs, ys):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol), (a, b)


@pytest.mark.parametrize("n_rows", [1, 5, 64, 100, 130])
def test_run_matches_per_row_forward_backward(n_rows):
    x, y, model, loss = hinge_graph()
    g = Graph(loss)
    params = model.parameters()
    rows = random_rows(n_rows)
    want_out, want_grads = per_row_loop(g, [*x, y], rows, params)
    for p in params:
        p.grad = 0
    data_before = [p.data for p in params]
    out = g.run(inputs=[x[0], x[1], y], rows=rows, grads=params)
    assert out == want_out                      # the same floats, row by row
    assert_close_lists([p.grad for p in params], want_grads)
    assert [p.data for p in params] == data_before
    assert any(gr != 0 for gr in want_grads)


def test_run_adds_into_grads_and_forward_only_without_grads():
    x, y, model, loss = hinge_graph((4, 1))
    g = Graph(loss)
    params = model.parameters()
    rows = random_rows(10)
    for p in params:
        p.grad = 1
    g.run([*x, y], rows, params)
    once = [p.grad for p in params]
    for p in params:
        p.grad = 0
    g.run([*x, y], rows, Params(params))
    assert_close_lists([p.grad + 1 for p in params], once)
    before = [bits(p.grad) for p in params]
    out = g.run([*x, y], rows)                  # no grads: forward only
    assert [bits(p.grad) for p in params] == before
    assert len(out) == 10


def test_run_grads_of_inner_nodes_and_of_the_root():
    a, b = Value(0.0), Value(1.5)
    h = (a * b).tanh()
    r = h * h + a.exp() * b
    g = Graph(r)
    rows = [[v] for v in (-1.0, 0.25, 0.5, 2.0)]
    want = {"h": 0.0, "b": 0.0, "r": 0.0}
    for (v,) in rows:
        a.data = v
        g.forward()
        b.grad = 0
        g.backward()
        want["h"] += h.grad
        want["b"] += b.grad
        want["r"] += r.grad
    for v in (h, b, r):
        v.grad = 0
    g.run([a], rows, [h, b, r])
    assert_close_lists([h.grad, b.grad, r.grad], [want["h"], want["b"], want["r"]])
    assert r.grad == 4.0


@pytest.mark.parametrize("threads", [2, 3, 8, None])
def test_threads_match_one_thread(threads):
    x, y, model, loss = hinge_graph()
    g = Graph(loss)
    params = model.parameters()
    # enough work for 8 threads: each gets at least 2**18 node-rows
    rows = random_rows(8 * 2**18 // len(g) + 64, seed=7)
    for p in params:
        p.grad = 0
    out1 = g.run([*x, y], rows, params, threads=1)
    grads1 = [p.grad for p in params]
    for p in params:
        p.grad = 0
    out_n = g.run([*x, y], rows, params, threads=threads)
    assert out_n == out1
    assert_close_lists([p.grad for p in params], grads1, rel=1e-10)


def run_grads(g, inputs, rows, params, **kw):
    for p in params:
        p.grad = 0
    out = g.run(inputs, rows, params, **kw)
    return list(out), [p.grad for p in params]


def rows_case():
    """A captured hinge graph, its inputs and parameters, 70 random rows
    and run_grads's answer for them given as a list of lists."""
    x, y, model, loss = hinge_graph((8, 1))
    g = Graph(loss)
    params = model.parameters()
    rows = random_rows(70)
    return g, [*x, y], params, rows, run_grads(g, [*x, y], rows, params)


def test_rows_as_sequences_and_array():
    g, inputs, params, rows, want = rows_case()
    x, y = inputs[:-1], inputs[-1]
    assert run_grads(g, [*x, y], [tuple(r) for r in rows], params) == want
    assert run_grads(g, [*x, y], (iter(r) for r in rows), params) == want
    flat = array.array("d", [c for r in rows for c in r])
    assert run_grads(g, [*x, y], flat, params) == want
    buf = array.array("d", [0.0] * 70)
    assert g.run([*x, y], flat, out=buf) is buf and list(buf) == want[0]
    with pytest.raises(ValueError):
        g.run([*x, y], flat, out=array.array("d", [0.0] * 69))
    ints = [[int(c) for c in r] for r in rows]      # ints are numbers too
    assert run_grads(g, [*x, y], ints, params)[0] == run_grads(
        g, [*x, y], [[float(c) for c in r] for r in ints], params)[0]


@needs_numpy
def test_rows_as_numpy_arrays():
    g, inputs, params, rows, want = rows_case()
    x, y = inputs[:-1], inputs[-1]
    X = np.array(rows, dtype=np.float64)
    assert run_grads(g, [*x, y], X, params) == want
    wide = np.zeros((70, 5))
    wide[:, 1:4] = X
    assert run_grads(g, [*x, y], wide[:, 1:4], params) == want  # strided: copied
    out = np.empty(70)
    assert g.run([*x, y], X, out=out) is out
    assert list(out) == want[0]
    for bad, exc in [(np.empty(70, dtype=np.float32), TypeError), (np.empty(69), ValueError),
                     (np.empty((70, 2))[:, 0], TypeError), (b"\0" * 560, TypeError)]:
        with pytest.raises(exc):
            g.run([*x, y], X, out=bad)

    X32 = X.astype(np.float32)
    got = run_grads(g, [*x, y], X32, params)
    assert got == run_grads(g, [*x, y], X32.astype(np.float64).tolist(), params)


def test_run_errors_change_nothing():
    x, y, model, loss = hinge_graph((4, 1))
    g = Graph(loss)
    params = model.parameters()
    for p in params:
        p.grad = 0.5
    hidden = model.layers[0](x)[0]               # a node of another graph
    inner = [v for v in model.parameters()][0] * x[0]
    g.forward()
    state = [(bits(v.data), bits(v.grad)) for v in params + x + [y, loss]]
    rows = random_rows(5)
    other = Value(1.0)
    cases = [
        (ValueError, dict(inputs=[x[0], other, y], rows=rows)),          # not in graph
        (ValueError, dict(inputs=[x[0], x[1], loss], rows=rows)),        # not a leaf
        (ValueError, dict(inputs=[x[0], x[0], y], rows=rows)),           # twice
        (ValueError, dict(inputs=[*x, y], rows=[[1.0, 2.0]] * 3)),      # short rows
        (ValueError, dict(inputs=[*x, y], rows=rows + [[1.0, 2.0, 3.0, 4.0]])),
        (ValueError, dict(inputs=[*x, y], rows=array.array("d", [1.0] * 7))),
        (TypeError, dict(inputs=[*x, y], rows=[[1.0, "2", 3.0]])),
        (TypeError, dict(inputs=[*x, y], rows=[[1.0, None, 3.0]])),
        (TypeError, dict(inputs=[*x, y], rows=[1.0, 2.0, 3.0])),
        (TypeError, dict(inputs=[x[0], 3.0, y], rows=rows)),
        (ValueError, dict(inputs=[*x, y], rows=rows, grads=[hidden])),
        (ValueError, dict(inputs=[*x, y], rows=rows, grads=[inner])),
        (ValueError, dict(inputs=[*x, y], rows=rows, grads=params + params[:1])),
        (ValueError, dict(inputs=[*x, y], rows=rows, grads=params, threads=0)),
    ]
    for exc, kw in cases:
        kw.setdefault("grads", params)
        with pytest.raises(exc):
            g.run(**kw)
        assert [(bits(v.data), bits(v.grad)) for v in params + x + [y, loss]] == state, kw
    if np is not None:
        with pytest.raises(ValueError):
            g.run([*x, y], np.zeros((4, 2)), params)
        with pytest.raises(ValueError):
            g.run([*x, y], np.zeros((2, 2, 3)), params)
        with pytest.raises(TypeError):
            g.run([*x, y], np.array([[1, "a", 2]], dtype=object), params)


def test_run_without_rows_and_single_leaf_graph():
    a = Value(2.5)
    g = Graph(a)
    assert len(g) == 1 and g.forward() == 2.5
    a.grad = 0
    out = g.run([a], [[1.0], [2.0], [-3.0]], [a])
    assert out == [1.0, 2.0, -3.0] and a.grad == 3.0
    assert g.run([a], [], [a]) == [] and a.grad == 3.0
    assert a.data == 2.5


def test_batched_float_semantics_are_documented_ones():
    x = Value(1.0)
    y = x.log()
    g = Graph(y)
    out = g.run([x], [[-1.0], [0.0], [math.e]])
    assert math.isnan(out[0]) and out[1] == -math.inf and out[2] == 1.0


# ---- lifetime, params, threads ------------------------------------------------------

def test_graph_keeps_its_nodes_alive():
    base = live_nodes()

    def make():
        a, b = Value(1.0), Value(2.0)
        return a, Graph((a * b + 3).relu() * a)

    a, g = make()
    assert live_nodes() - base == len(g) == 7
    a.data = 2.0
    assert g.forward() == 14.0
    a.grad = 0
    g.backward()
    assert a.grad == 7.0 + 2.0 * 2.0  # relu(a*b + 3) + a * b
    del g
    assert live_nodes() - base == 1  # only a, which we still hold
    del a
    assert live_nodes() == base


def test_params_sgd_and_zero_grad_match_python_loops():
    random.seed(3)
    model = ag.nn.MLP(3, [4, 1])
    ps = model.parameters()
    for i, p in enumerate(ps):
        p.grad = (i % 5) - 2 if i % 2 else 0.25 * i
    want = [p.data - 0.37 * p.grad for p in ps]
    P = Params(ps)
    assert len(P) == len(ps) and list(P) == ps
    P.sgd(0.37)
    assert [bits(p.data) for p in ps] == [bits(w) for w in want]
    P.zero_grad()
    assert all(bits(p.grad) == bits(0) for p in ps)
    with pytest.raises(TypeError):
        Params([1.0])


def test_two_threads_replay_different_graphs_at_once():
    xa, ya, model_a, loss_a = hinge_graph((16, 16, 1), seed=11)
    ga = Graph(loss_a)
    pa = model_a.parameters()
    rows = random_rows(300, seed=5)
    want_a = run_grads(ga, [*xa, ya], rows, pa)

    random.seed(12)
    b = [Value(random.uniform(-1, 1)) for _ in range(3)]
    model_b = ag.nn.MLP(3, [8, 8, 1])
    loss_b = (model_b(b) ** 2).tanh()
    gb = Graph(loss_b)
    pb = model_b.parameters()
    settings_b = [[random.uniform(-1, 1) for _ in range(3)] for _ in range(20)]
    want_b = []
    for s in settings_b:
        for v, c in zip(b, s):
            v.data = c
        for p in pb:
            p.grad = 0
        want_b.append((bits(gb.forward()), [bits(p.grad) for p in pb]))
        gb.backward()
        want_b[-1] = (want_b[-1][0], [bits(p.grad) for p in pb])

    barrier = threading.Barrier(2)
    failures = []

    def worker_a():
        barrier.wait()
        for _ in range(15):
            got = run_grads(ga, [*xa, ya], rows, pa)
            if got[0] != want_a[0] or any(
                    not math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-12)
                    for u, v in zip(got[1], want_a[1])):
                failures.append("a")

    def worker_b():
        barrier.wait()
        for _ in range(5):
            for s, want in zip(settings_b, want_b):
                for v, c in zip(b, s):
                    v.data = c
                for p in pb:
                    p.grad = 0
                out = bits(gb.forward())
                gb.backward()
                if (out, [bits(p.grad) for p in pb]) != want:
                    failures.append("b")

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_demo_replay_option_trains_with_the_same_numbers(capsys):
    from autograd_c.__main__ import main
    main(["--replay", "--steps", "3", "--samples", "20"])
    out = capsys.readouterr().out
    assert "replay: final loss" in out and "the same bits as the eager run" in out
