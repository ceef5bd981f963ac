"""Dot chains of batched runs (csrc/batch.c: a neuron's sum(w_i * x_i, c)
as one step whose intermediate values and grads are never stored) against
the unfused program (AG_GRAPH_UNFUSED) and per-row eager passes: outputs,
summed grads and per-row grads bit for bit -- on MLPs built by
autograd_c.nn (C layers) and by micrograd-style Python neurons, on chains
with shared operands (x * x, c among the w_i), with a requested or
otherwise used intermediate (which must stop the chain there), and on
random sums of products (hypothesis)."""
import random

from hypothesis import given, settings
from hypothesis import strategies as st

import autograd_c as ag
from autograd_c import Graph, Value
from autograd_c._autograd_c import lib
from support import bits


def two_graphs(root):
    fused, unfused = Graph(root), Graph(root)
    assert lib.ag_graph_set_options(unfused._g, lib.AG_GRAPH_UNFUSED) == 0
    return fused, unfused


def run_bits(g, inputs, rows, grads, row_grads):
    """Outputs, summed grads added into zeroed .grad, per-row grads: bits."""
    for v in grads:
        v.grad = 0.0
    out, per_row = g.run(inputs=inputs, rows=rows, grads=grads, row_grads=row_grads)
    return ([bits(o) for o in out], [bits(v.grad) for v in grads],
            [[bits(x) for x in r] for r in per_row])


def assert_fused_is_unfused(root, inputs, rows, grads, row_grads=None):
    fused, unfused = two_graphs(root)
    row_grads = list(grads) if row_grads is None else row_grads
    got = run_bits(fused, inputs, rows, grads, row_grads)
    want = run_bits(unfused, inputs, rows, grads, row_grads)
    assert got == want
    return got


def rows_for(n_inputs, n_rows, seed):
    rng = random.Random(seed)
    return [[rng.uniform(-2, 2) for _ in range(n_inputs)] for _ in range(n_rows)]


def neuron(w, x, b):
    """micrograd's Neuron.__call__: sum((wi * xi for ...), b)."""
    return sum((wi * xi for wi, xi in zip(w, x)), b)


def python_mlp(x, sizes, rng):
    params = []
    for n_out in sizes:
        layer = []
        for _ in range(n_out):
            w = [Value(rng.uniform(-1, 1)) for _ in x]
            b = Value(rng.uniform(-1, 1))
            params += w + [b]
            layer.append(neuron(w, x, b).relu())
        x = layer
    return x[0], params


def test_mlp_of_c_layers_is_unchanged_bit_for_bit():
    random.seed(3)
    x = [Value(0.0), Value(0.0)]
    model = ag.nn.MLP(2, [16, 16, 1])
    loss = (1 + -x[1] * model(x)).relu()
    assert_fused_is_unfused(loss, x, rows_for(2, 130, 1), model.parameters())


def test_mlp_of_python_neurons_is_unchanged_and_matches_per_row_passes():
    rng = random.Random(5)
    x = [Value(0.0) for _ in range(3)]
    out, params = python_mlp(x, [6, 5, 1], rng)
    rows = rows_for(3, 70, 2)
    got_out, got_sums, got_rows = assert_fused_is_unfused(out, x, rows, params)
    g = Graph(out)
    for r, row in enumerate(rows):   # each row's grads are those of a single pass
        for v, c in zip(x, row):
            v.data = c
        for p in params:
            p.grad = 0.0
        assert bits(float(g.forward())) == got_out[r]   # (relu's int 0: a float
        g.backward()                                     # in a run)
        assert [bits(float(p.grad)) for p in params] == got_rows[r]
    assert any(v != bits(0.0) for v in got_sums)


def test_shared_operands_within_a_chain():
    x, y = Value(0.0), Value(0.0)
    c = Value(0.5)
    terms = [(x, x), (c, y), (y, x), (c, c), (x, y)]   # x * x, c among the w_i
    root = sum((a * b for a, b in terms), c) * y
    assert_fused_is_unfused(root, [x, y], rows_for(2, 65, 3), [x, y, c])


def test_a_requested_intermediate_stops_the_chain():
    x = [Value(0.0) for _ in range(6)]
    w = [Value(0.1 * (i + 1)) for i in range(6)]
    b = Value(-0.3)
    partial = sum((wi * xi for wi, xi in zip(w[:3], x[:3])), b)   # an inner sum
    root = sum((wi * xi for wi, xi in zip(w[3:], x[3:])), partial).relu()
    got = assert_fused_is_unfused(root, x, rows_for(6, 64, 4), w + [b, partial])
    sums = got[1]
    assert sums[-1] != bits(0.0)            # the intermediate's grad is there


def test_an_intermediate_with_another_use_stops_the_chain():
    x = [Value(0.0) for _ in range(5)]
    w = [Value(0.2 * (i - 2)) for i in range(5)]
    b = Value(0.25)
    mid = sum((wi * xi for wi, xi in zip(w[:2], x[:2])), b)
    root = sum((wi * xi for wi, xi in zip(w[2:], x[2:])), mid) * mid  # mid twice
    assert_fused_is_unfused(root, x, rows_for(5, 33, 5), w + [b])


def test_negative_zero_grads_pass_through_a_chain_as_eager_gives_them():
    x = Value(0.0)
    w = [Value(-0.0), Value(0.0), Value(-0.0)]
    root = sum((wi * x for wi in w), Value(-0.0)) * -0.0
    got = assert_fused_is_unfused(root, [x], [[-0.0], [0.0], [-1.0]], w + [x])
    g = Graph(root)
    for v in w + [x]:
        v.grad = 0.0
    x.data = -1.0
    g.forward()
    g.backward()
    assert [bits(v.grad) for v in w + [x]] == got[2][2]


# a random sum of products over a few inputs and constants: chains of every
# length, operands shared and repeated
product = st.tuples(st.integers(0, 5), st.integers(0, 5))
sums = st.lists(st.lists(product, min_size=1, max_size=7), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(sums, st.integers(0, 2**16), st.booleans())
def test_random_sums_of_products(spec, seed, request_inner):
    rng = random.Random(seed)
    x = [Value(0.0) for _ in range(3)]
    consts = [Value(rng.choice([-1.5, -0.0, 0.0, 0.5, 2.0])) for _ in range(3)]
    pool = x + consts
    acc = consts[0] + consts[1] * consts[2] + x[0] * (x[1] + x[2])  # all in the graph
    inner = []
    for chain in spec:
        acc = sum((pool[i] * pool[j] for i, j in chain), acc)
        inner.append(acc)
        pool.append(acc.relu())
    grads = consts + (inner[:1] if request_inner else [])
    assert_fused_is_unfused(acc, x, rows_for(3, rng.randint(1, 80), seed), grads)
