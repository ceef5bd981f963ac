"""Value.backward(): it adds to the grads already there, sums the
contributions of a node used several times, keeps int gradients int,
passes no gradient through a hand-made node, and follows IEEE where
micrograd's backward raises half-way.

Against micrograd on random programs, and backward twice:
test_differential.py; deep graphs (10**6 nodes): test_memory.py."""
import math
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autograd_c import Value
from micrograd.engine import Value as MV
from support import grad_magnitudes, grads_match, random_program, run_program, topo

INF = math.inf


def test_backward_adds_to_the_grad_already_there():
    # backward adds to whatever grad is there, as micrograd
    for V in (Value, MV):
        x = V(3)
        x.grad = 10
        (x * x).backward()
        assert x.grad == 16 and type(x.grad) is int


def test_node_reuse_sums_grads():
    for V in (Value, MV):
        a = V(3)
        (a + a).backward()
        assert a.grad == 2 and type(a.grad) is int
        b = V(3.0)
        (b * b).backward()
        assert b.grad == 6.0 and type(b.grad) is float
        c = V(2)
        d = c * 5
        e = d + d * c + c      # c used three times, d twice
        e.backward()
        assert c.grad == 1 + d.data + 5 * (1 + c.data) == 26 and d.grad == 1 + 2


def test_int_only_graph_keeps_ints():
    a, b = Value(3), Value(-4)
    out = ((a * b) ** 2 - a + 5 * b).relu() * 2 + (-b)
    out.backward()
    for v in (a, b, out):
        assert type(v.data) is int and type(v.grad) is int
    assert out.data == 2 * (144 - 3 - 20) + 4
    assert a.grad == 2 * (2 * (a.data * b.data) * b.data - 1)
    assert b.grad == 2 * (2 * (a.data * b.data) * a.data + 5) - 1


def test_a_hand_made_node_passes_no_gradient():
    # a hand-made node: children kept, gradient does not flow (as micrograd,
    # whose such node has a no-op _backward)
    a, b = Value(1), Value(2.5)
    c = Value(3.5, (a, b), "+")
    ref_a, ref_b = MV(1), MV(2.5)
    ref_c = MV(3.5, (ref_a, ref_b), "+")
    c.backward()
    ref_c.backward()
    assert (c.grad, a.grad, b.grad) == (ref_c.grad, ref_a.grad, ref_b.grad) == (1, 0, 0)


def test_backward_is_ieee_where_micrograd_raises_half_way():
    """micrograd computes d(x**k)/dx as k * x**(k-1), which raises for x == 0
    and k < 1 in the middle of backward().  autograd_c (by design, see the
    README) completes the backward with the IEEE value of the same formula."""
    x, z = Value(0.0), Value(3.0)
    y = x ** 0.5 + z * z
    y.backward()
    assert x.grad == INF and z.grad == 6.0
    w = Value(0.0)
    (w ** 0 + 1).backward()
    assert math.isnan(w.grad)  # 0 * 0.0**-1 = 0 * inf
    rx = MV(0.0)
    with pytest.raises(ZeroDivisionError):
        (rx ** 0.5).backward()


def _micrograd_loop(root):
    """The backward loop micrograd teaches, written by hand: a topological
    order by walking _prev, root.grad = 1, then every node's _backward() in
    reverse."""
    order = topo(root)
    root.grad = 1
    for v in reversed(order):
        v._backward()
    return order


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_hand_written_backward_loop_gives_backwards_grads(seed):
    """Every Value has micrograd's _backward (its own rule; a leaf's does
    nothing): the loop micrograd teaches gives root.backward()'s grads, and
    micrograd's own (up to the order of the sums)."""
    program = random_program(random.Random(seed), 3, 12)
    reference = run_program(MV, program)
    try:
        _micrograd_loop(reference.root)
    except (ZeroDivisionError, OverflowError):  # micrograd's own pow rule
        assume(False)
    scale = grad_magnitudes(reference.root)
    ours = run_program(Value, program, plan=reference)
    topo = _micrograd_loop(ours.root)
    by_loop = [leaf.grad for leaf in ours.leaves]
    for v in topo:
        v.grad = 0
    ours.root.backward()
    for leaf, mine, theirs in zip(ours.leaves, by_loop, reference.leaves):
        s = scale.get(id(theirs), 0.0)
        assert grads_match(mine, leaf.grad, s) and grads_match(mine, theirs.grad, s)


def test_a_leafs_backward_does_nothing():
    x = Value(2.0)
    x.grad = 3
    x._backward()
    assert x.grad == 3 and x._prev == set()
