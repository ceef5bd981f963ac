"""The ops beyond micrograd: tanh, exp, log, sigmoid, Value ** Value and
number ** Value.  Forward values against Python's math module (the same
libm: identical), gradients against the analytic derivatives and against
central finite differences."""
import gc
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd_c
from autograd_c import Value
from support import same_number

NAN, INF = math.nan, math.inf


def stable_sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)



# op name -> (method caller, f, f', domain)
UNARY = {
    "tanh": (lambda v: v.tanh(), math.tanh, lambda x: 1 - math.tanh(x) ** 2, (-6, 6)),
    "exp": (lambda v: v.exp(), math.exp, math.exp, (-20, 20)),
    "log": (lambda v: v.log(), math.log, lambda x: 1 / x, (1e-3, 50)),
    "sigmoid": (lambda v: v.sigmoid(), stable_sigmoid,
                lambda x: stable_sigmoid(x) * (1 - stable_sigmoid(x)), (-30, 30)),
}


def central_difference(f, x, h=None):
    h = h if h is not None else 1e-6 * max(1.0, abs(x))
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name", sorted(UNARY))
@settings(max_examples=60, deadline=None)
@given(u=st.floats(0, 1))
def test_unary_op_value_and_grad(name, u):
    call, f, df, (lo, hi) = UNARY[name]
    x = lo + (hi - lo) * u
    v = Value(x)
    out = call(v)
    assert out._op == name and out._prev == {v}
    assert type(out.data) is float
    if name == "sigmoid":
        assert math.isclose(out.data, f(x), rel_tol=1e-15, abs_tol=1e-300)
    else:
        assert out.data == f(x)  # the same libm function as Python's math
    out.backward()
    assert type(v.grad) is float
    assert math.isclose(v.grad, df(x), rel_tol=1e-12, abs_tol=1e-300)
    # finite differences through the engine's own forward pass
    fd = central_difference(lambda t: call(Value(t)).data, x)
    assert math.isclose(v.grad, fd, rel_tol=1e-5, abs_tol=1e-8), (x, v.grad, fd)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_op_on_ints_gives_floats(name):
    call = UNARY[name][0]
    v = Value(1)
    out = call(v)
    assert type(out.data) is float
    out.backward()
    assert type(v.grad) is float and type(out.grad) is int


def test_unary_chain_rule_and_reuse():
    x = Value(0.7)
    y = x.tanh() * x.exp() + x.sigmoid().log()
    y.backward()
    t, e, s = math.tanh(0.7), math.exp(0.7), stable_sigmoid(0.7)
    expected = (1 - t * t) * e + t * e + (1 / s) * s * (1 - s)
    assert math.isclose(x.grad, expected, rel_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.2, 5), st.floats(-3, 3))
def test_value_pow_value(a, b):
    x, y = Value(a), Value(b)
    out = x ** y
    assert out._op == "**" and out._prev == {x, y}
    assert same_number(out.data, a ** b)
    out.backward()
    assert type(x.grad) is float and type(y.grad) is float
    assert math.isclose(x.grad, b * a ** (b - 1), rel_tol=1e-12)
    assert math.isclose(y.grad, a ** b * math.log(a), rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(x.grad, central_difference(lambda t: (Value(t) ** y).data, a),
                        rel_tol=1e-5, abs_tol=1e-7)
    assert math.isclose(y.grad, central_difference(lambda t: (x ** Value(t)).data, b),
                        rel_tol=1e-5, abs_tol=1e-7)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([2, 2.0, 0.5, 10, math.e, 3.5]), st.floats(-4, 4))
def test_number_pow_value(c, b):
    y = Value(b)
    out = c ** y
    assert out._op == "**" and len(out._prev) == 2 and y in out._prev
    assert same_number(out.data, c ** b)
    out.backward()
    assert type(y.grad) is float
    assert math.isclose(y.grad, c ** b * math.log(c), rel_tol=1e-12, abs_tol=1e-300)
    fd = central_difference(lambda t: (c ** Value(t)).data, b)
    assert math.isclose(y.grad, fd, rel_tol=1e-5, abs_tol=1e-7)
    # the constant base is a leaf of its own, with micrograd's base rule
    (base,) = [v for v in out._prev if not v == y]
    assert base.data == c and base.grad == b * c ** (b - 1)


def test_value_pow_value_types_follow_python():
    x, y = Value(2), Value(3)
    out = x ** y
    assert out.data == 8 and type(out.data) is int  # as 2 ** 3
    out.backward()
    assert x.grad == 12 and type(x.grad) is int     # micrograd's 3 * 2**2 * 1
    assert type(y.grad) is float and math.isclose(y.grad, 8 * math.log(2), rel_tol=1e-15)
    assert (Value(2) ** Value(-1)).data == 0.5
    assert type((2 ** Value(3)).data) is int and (2 ** Value(3)).data == 8
    assert type((2 ** Value(3.0)).data) is float


def test_value_pow_value_edge_points():
    # 0 ** b, b > 0: the exponent's derivative is 0 (0**b is 0 for all b > 0)
    x, y = Value(0.0), Value(2.0)
    out = x ** y
    out.backward()
    assert out.data == 0.0 and x.grad == 0.0 and y.grad == 0.0
    # a negative base with an integral exponent: defined, but not
    # differentiable in the exponent over the reals
    x, y = Value(-2.0), Value(3.0)
    out = x ** y
    out.backward()
    assert out.data == -8.0 and x.grad == 12.0 and math.isnan(y.grad)


@settings(max_examples=60, deadline=None)
@given(st.floats(-2, 2), st.floats(-2, 2), st.floats(0.5, 2))
def test_composite_gradcheck(a, b, c):
    """A graph mixing new and old ops, each input used several times:
    backward against central differences for every input."""
    def f(x, y, z):
        u = x.tanh() * y.exp() + (x * y).sigmoid()
        w = (y * y + 1).log() + 2 ** (x * 0.5) + z ** (y.sigmoid() + 1)
        return (u * w + (x + 3).relu() * z - y / z) ** 2  # relu away from its kink

    vals = [a, b, c]
    vs = [Value(t) for t in vals]
    out = f(*vs)
    out.backward()
    for i, v in enumerate(vs):
        def g(t, i=i):
            args = [Value(s) for s in vals]
            args[i] = Value(t)
            return f(*args).data
        fd = central_difference(g, vals[i], h=1e-6)
        assert type(v.grad) is float
        assert math.isclose(v.grad, fd, rel_tol=1e-4, abs_tol=1e-5), (i, v.grad, fd)


SPECIAL_CASES = [
    # (op, x, expected data, expected grad of x)
    ("exp", INF, INF, INF), ("exp", -INF, 0.0, 0.0), ("exp", NAN, NAN, NAN),
    ("log", INF, INF, 0.0), ("log", NAN, NAN, NAN),
    ("tanh", INF, 1.0, 0.0), ("tanh", -INF, -1.0, 0.0), ("tanh", NAN, NAN, NAN),
    ("sigmoid", INF, 1.0, 0.0), ("sigmoid", -INF, 0.0, 0.0), ("sigmoid", NAN, NAN, NAN),
    ("tanh", -0.0, -0.0, 1.0), ("sigmoid", 0.0, 0.5, 0.25), ("exp", -800.0, 0.0, 0.0),
]


@pytest.mark.parametrize("op,x,data,grad", SPECIAL_CASES)
def test_new_ops_ieee_specials(op, x, data, grad):
    v = Value(x)
    out = UNARY[op][0](v)
    assert same_number(out.data, data)
    if op in ("exp", "log", "tanh") and not math.isnan(x):
        assert same_number(out.data, getattr(math, op)(x))
    out.backward()
    assert same_number(v.grad, grad), (v.grad, grad)


def test_new_op_errors_create_nothing():
    x = Value(2.0)
    gc.collect()  # see conftest.live_nodes
    before = autograd_c.stats()["live_nodes"]
    for fn, exc in ((lambda: Value(-1.0).log(), ValueError),
                    (lambda: x.exp() * Value(800.0).exp(), OverflowError),
                    (lambda: (x - 2).log(), ValueError)):
        try:
            fn()
        except exc:
            pass
        else:
            pytest.fail("no error")
    gc.collect()
    assert autograd_c.stats()["live_nodes"] == before
    assert x.data == 2.0 and x.grad == 0
