"""Captured graphs (autograd_c.Graph): forward() and backward() replayed
against fresh eager builds (bit for bit, types included) and against
micrograd (up to summation order); errors; opaque nodes; lifetime.

Batched runs (Graph.run) are test_graph_run.py; replay from several
threads is in test_threads.py."""
import math
import random

import pytest
from micrograd.engine import Value as MgValue

from autograd_c import Graph, Value
from support import (ALL_OPS, MICROGRAD_OPS, PYTHON_ERRORS, bits, live_nodes, random_program,
                     run_program, small_number, steps_reaching)


# ---- random graphs (support.random_program), replayed with new leaf values ----

def captured_graph(rng, ops, n_leaves, n_steps, exponent):
    """(program, run, Graph, steps) of a random program built with our
    Value: the root is the pool's last Value; steps: the steps it reaches."""
    while True:
        program = random_program(rng, n_leaves, n_steps, ops=ops, exponent=exponent)
        run = run_program(Value, program, root="last")
        steps = steps_reaching(run)
        if steps:
            return program, run, Graph(run.root), steps


def snapshot(run, steps):
    return [(bits(run.steps[n].result.data), bits(run.steps[n].result.grad)) for n in steps]


def compared(run, fresh, steps):
    """(ours, fresh) Value pairs: the leaves and the reached steps' results."""
    pairs = list(zip(run.leaves, fresh.leaves))
    return pairs + [(run.steps[n].result, fresh.steps[n].result) for n in sorted(steps)]


@pytest.mark.parametrize("seed", range(40))
def test_replay_is_bit_identical_to_fresh_eager_builds(seed):
    rng = random.Random(seed)
    program, run, g, steps = captured_graph(
        rng, ALL_OPS, 4, 16, exponent=lambda r: r.choice([2, 3, -1, 1, 0.5, 1.5]))
    checked = 0
    for _ in range(6):
        values = [small_number(rng) for _ in program.leaves]
        try:  # a fresh build of what the root reaches, and its backward
            fresh = run_program(Value, program._replace(leaves=values), root="last",
                                plan=run, only=steps)
            fresh.root.backward()
        except PYTHON_ERRORS:
            fresh = None
        before = snapshot(run, steps)
        for leaf, v in zip(run.leaves, values):
            leaf.data = v
        if fresh is None:
            with pytest.raises(PYTHON_ERRORS):
                g.forward()
            assert snapshot(run, steps) == before, "a failed forward changed op nodes"
            continue
        assert bits(g.forward()) == bits(fresh.root.data)
        for leaf in run.leaves:
            leaf.grad = 0
        g.backward()
        for ours, theirs in compared(run, fresh, steps):
            assert bits(ours.data) == bits(theirs.data), program
            assert bits(ours.grad) == bits(theirs.grad), program
        checked += 1
    if seed < 10:
        assert checked, "no error-free rebuild: the test checked nothing"


@pytest.mark.parametrize("seed", range(25))
def test_replay_matches_micrograd_on_random_graphs(seed):
    rng = random.Random(1000 + seed)
    # exponents 1, 2, 3: real results for any base, as micrograd needs
    program, run, g, steps = captured_graph(rng, MICROGRAD_OPS, 3, 15,
                                            exponent=lambda r: r.choice([2, 3, 1]))
    for _ in range(4):
        values = [small_number(rng) for _ in program.leaves]
        try:
            mg = run_program(MgValue, program._replace(leaves=values), root="last",
                             plan=run, only=steps)
        except PYTHON_ERRORS:
            continue
        mg.root.backward()
        for leaf, v in zip(run.leaves, values):
            leaf.data = v
            leaf.grad = 0
        g.forward()
        g.backward()
        for node, ref in compared(run, mg, steps):
            for ours, theirs in [(node.data, ref.data), (node.grad, ref.grad)]:
                assert type(ours) is type(theirs)
                if math.isnan(theirs):
                    assert math.isnan(ours)
                else:
                    assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12), program


# ---- fixed graphs -----------------------------------------------------------------

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
