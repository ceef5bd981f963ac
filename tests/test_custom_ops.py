"""The user's own ops, written as micrograd's are: `out = Value(f(x.data),
(x, ...), 'name')`, then `out._backward = rule` where the rule adds into
the children's grads from out.grad.  Each program runs on micrograd's Value
and on ours and is compared."""
import gc
import math

import pytest

import autograd_c
from autograd_c import Graph, Value
from micrograd.engine import Value as MV
from support import live_nodes


def softplus(V, x):
    out = V(math.log1p(math.exp(x.data)), (x,), "softplus")

    def _backward():
        x.grad += (1 / (1 + math.exp(-x.data))) * out.grad
    out._backward = _backward
    return out


def mean(V, *xs):
    """An op of any number of children."""
    out = V(sum(x.data for x in xs) / len(xs), xs, "mean")

    def _backward():
        for x in xs:
            x.grad += out.grad / len(xs)
    out._backward = _backward
    return out


def program(V):
    x, y, z = V(0.5), V(-1.5), V(2.0)
    h = softplus(V, x * y) + z
    m = mean(V, h, softplus(V, z), x, y * 2)
    loss = (m * m).relu() + softplus(V, m) * 0.5
    loss.backward()
    return loss, (x, y, z)


def test_user_ops_give_micrographs_numbers():
    ours, (x, y, z) = program(Value)
    theirs, (mx, my, mz) = program(MV)
    assert ours.data == theirs.data
    for a, b in ((x, mx), (y, my), (z, mz)):
        assert math.isclose(a.grad, b.grad, rel_tol=1e-12)
    assert sorted(k._op for k in ours._prev) == sorted(k._op for k in theirs._prev)


def test_an_op_of_four_children_keeps_them_all(live_baseline):
    a, b, c, d = (Value(float(i)) for i in range(4))
    m = mean(Value, a, b, c, d)
    assert m._prev == {a, b, c, d} and m._op == "mean"
    top = m * 3  # m's Value goes; its node, rule and children stay with top
    del m
    gc.collect()
    top.backward()
    assert [v.grad for v in (a, b, c, d)] == [0.75] * 4
    (kept,) = [k for k in top._prev if k._op == "mean"]
    assert kept._prev == {a, b, c, d}  # from the node's own Value, kept
    del kept
    del a, b, c, d, top
    assert live_nodes() == live_baseline


def test_deep_chain_of_user_ops():
    """Thousands of user ops deep: backward walks them without recursion and
    matches the same chain of built-in ops."""
    x, y = Value(0.1), Value(0.1)
    h, k = x, y
    for _ in range(3000):
        h = softplus(Value, h) * 0.5
        k = (k.exp() + 1).log() * 0.5
    h.backward()
    k.backward()
    assert math.isclose(h.data, k.data, rel_tol=1e-12)
    assert math.isclose(x.grad, y.grad, rel_tol=1e-9)


def test_hand_written_loop_calls_the_users_rules():
    ours, (x, y, z) = program(Value)
    expected = (x.grad, y.grad, z.grad)
    topo, seen = [], set()

    def build(v):
        if v not in seen:
            seen.add(v)
            for child in v._prev:
                build(child)
            topo.append(v)
    build(ours)
    for v in topo:
        v.grad = 0
    ours.grad = 1
    for v in reversed(topo):
        v._backward()
    for got, want in zip((x.grad, y.grad, z.grad), expected):
        assert math.isclose(got, want, rel_tol=1e-12)


def test_grad_and_graph_with_user_ops():
    x = Value(0.7)
    loss = softplus(Value, x * x)
    (dx,) = autograd_c.grad(loss, [x])
    assert math.isclose(dx, 2 * 0.7 / (1 + math.exp(-0.49)), rel_tol=1e-12)
    assert x.grad == 0  # grad() changes no .grad
    with pytest.raises(ValueError, match="Graph: .*own"):
        Graph(loss)
    Graph(x * x)  # graphs without them are captured as before


def test_backward_rule_must_be_callable():
    v = Value(1.0, (Value(2.0),), "mine")
    with pytest.raises(TypeError, match="callable"):
        v._backward = 3
