"""no_grad / enable_grad (context, decorator, per thread), detach, grad()."""
import math
import threading

import pytest

import autograd_c
from autograd_c import Value, enable_grad, grad, is_grad_enabled, no_grad


def _graph():
    """x, w, b and f = tanh(w*x + b) * x + x**2 (x reached three ways)."""
    x, w, b = Value(2), Value(-0.5), Value(0.25, label="b")
    h = w * x + b
    f = h.tanh() * x + x ** 2
    return x, w, b, h, f


# -- no_grad -------------------------------------------------------------------

def test_no_grad_results_are_leaves_and_backward_stops_there():
    x, w = Value(3.0), Value(2)
    with no_grad():
        y = (x * w + 1).relu()
        z = y.exp().log()
    assert y.data == 7.0 and z.data == pytest.approx(7.0)
    assert y._prev == set() and y._op == "" and z._prev == set()
    z.backward()
    assert (x.grad, w.grad, y.grad) == (0, 0, 0)
    assert z.grad == 1


def test_no_grad_keeps_int_results_int():
    with no_grad():
        y = Value(3) * 4 + 1
    assert y.data == 13 and type(y.data) is int


def test_no_grad_restores_previous_state_and_nests():
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        with no_grad():
            assert not is_grad_enabled()
        assert not is_grad_enabled()  # inner exit restored "off", not "on"
        with enable_grad():
            assert is_grad_enabled()
            assert len((Value(1) * Value(2))._prev) == 2
        assert not is_grad_enabled()
    assert is_grad_enabled()
    assert len((Value(1) * Value(2))._prev) == 2


def test_no_grad_restores_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            Value(0) ** -1
    assert is_grad_enabled()


def test_no_grad_instance_reused_when_nested():
    ng = no_grad()
    with ng:
        with enable_grad():
            with ng:
                assert not is_grad_enabled()
            assert is_grad_enabled()
        assert not is_grad_enabled()
    assert is_grad_enabled()


@pytest.mark.parametrize("decorate", [no_grad(), no_grad], ids=["no_grad()", "bare no_grad"])
def test_no_grad_as_decorator(decorate):
    @decorate
    def f(a, b=1):
        """doc"""
        return a * b, is_grad_enabled()

    y, enabled = f(Value(2), b=Value(5))
    assert (y.data, enabled, y._prev) == (10, False, set())
    assert f.__name__ == "f" and f.__doc__ == "doc"
    assert is_grad_enabled()


def test_enable_grad_decorator_inside_no_grad():
    @enable_grad()
    def f(a):
        return a * a

    with no_grad():
        y = f(Value(3))
    assert len(y._prev) == 1  # x*x: one child, linked twice


def test_decorating_a_non_callable_is_a_type_error():
    with pytest.raises(TypeError, match="decorates a function"):
        no_grad()(3)


def test_no_grad_is_thread_local():
    inside, go_on, results = threading.Event(), threading.Event(), {}

    def quiet():
        with no_grad():
            inside.set()
            go_on.wait(5)
            results["quiet"] = (Value(2) * Value(3))._prev

    t = threading.Thread(target=quiet)
    t.start()
    assert inside.wait(5)
    # the other thread is inside no_grad: this one still records
    assert is_grad_enabled()
    y = Value(2) * Value(3)
    assert len(y._prev) == 2
    results["main"] = y
    go_on.set()
    t.join(5)
    assert results["quiet"] == set()


def test_layer_fast_path_respects_no_grad():
    autograd_c.nn.random.seed(0)
    layer = autograd_c.nn.Layer(3, 4)
    x = [Value(1.0), Value(-2.0), Value(0.5)]
    recorded = layer(x)
    with no_grad():
        quiet = layer(x)
    assert [q.data for q in quiet] == [r.data for r in recorded]
    assert all(q._prev == set() for q in quiet)


# -- detach ----------------------------------------------------------------------

def test_detach_is_a_leaf_with_the_same_data_and_type():
    x = Value(3)
    doubled = x * 2
    doubled.grad = 4
    y = doubled.detach()
    assert y.data == 6 and type(y.data) is int and y._prev == set() and y.grad == 0
    z = (x * 2.5).detach()
    assert z.data == 7.5 and type(z.data) is float
    # a new node, not the one it was detached from: it has its own data and grad
    assert y != doubled and hash(y) != hash(doubled)
    y.data, y.grad = 1, 2
    assert (doubled.data, doubled.grad) == (6, 4) and x in doubled._prev


def test_detach_cuts_gradient_flow():
    x = Value(3.0)
    y = x * x
    z = y.detach() * x + y  # d/dx: y (through x only) + 2x (through y)
    z.backward()
    assert x.grad == 9.0 + 6.0
    full = Value(3.0)
    (full * full * full + full * full).backward()
    assert full.grad == 27.0 + 6.0  # without detach: 3x^2 + 2x


# -- grad() ------------------------------------------------------------------------

def test_grad_equals_backward_values_and_types():
    x, w, b, h, f = _graph()
    got = grad(f, [x, w, b])
    f.backward()
    want = (x.grad, w.grad, b.grad)
    assert got == want
    assert [type(g) for g in got] == [type(g) for g in want]
    # by hand: f = tanh(wx+b) x + x^2
    t = math.tanh(-0.75)
    assert got[1] == pytest.approx((1 - t * t) * 2 * 2)
    assert got[0] == pytest.approx((1 - t * t) * -0.5 * 2 + t + 4)


def test_grad_leaves_every_grad_untouched():
    x, w, b, h, f = _graph()
    # odd grads everywhere: ints, floats, on inputs and intermediate nodes
    nodes = [x, w, b, h, f] + list(h._prev) + list(f._prev)
    for i, v in enumerate(nodes):
        v.grad = i if i % 2 else i + 0.125
    before = [(v.grad, type(v.grad)) for v in nodes]
    grad(f, [x, w])
    grad(f, w)
    grad([f, h], [x, b], grad_outputs=[2, 0.5])
    assert [(v.grad, type(v.grad)) for v in nodes] == before


def test_grad_of_several_outputs_is_the_gradient_of_their_sum():
    x = Value(1.5)
    y, z = x * x, x.exp()
    assert grad([y, z], x) == pytest.approx((2 * 1.5 + math.exp(1.5),))
    assert grad([y, z], x, grad_outputs=[3, -1]) == pytest.approx((6 * 1.5 - math.exp(1.5),))
    # an output that another output reaches
    assert grad([y, x], x) == pytest.approx((2 * 1.5 + 1,))
    assert is_grad_enabled()


def test_grad_of_several_outputs_works_inside_no_grad():
    x = Value(2.0)
    y, z = x * 3, x * x
    with no_grad():
        assert grad([y, z], [x]) == (3.0 + 4.0,)
        assert not is_grad_enabled()


def test_grad_unused_input():
    x, w, b, h, f = _graph()
    other = Value(1.0)
    other.grad = 0.5
    with pytest.raises(RuntimeError, match=r"inputs \[1\] are not reached.*allow_unused"):
        grad(h, [x, other])
    got = grad(h, [x, other], allow_unused=True)
    assert got == (-0.5, None)
    assert other.grad == 0.5


def test_grad_bad_arguments():
    x = Value(1.0)
    with pytest.raises(TypeError, match="outputs"):
        grad(3.0, [x])
    with pytest.raises(TypeError, match="inputs"):
        grad(x * 2, [])
    with pytest.raises(ValueError, match="grad_outputs has 1 entries for 2 outputs"):
        grad([x * 2, x * 3], x, grad_outputs=[1])


def test_grad_in_a_deep_graph():
    x = Value(1.0)
    y = x
    for _ in range(20000):
        y = y * 1.0 + 0.0
    assert grad(y, x) == (1.0,)
    assert x.grad == 0
