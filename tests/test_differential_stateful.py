"""Stateful differential fuzzing: autograd_c against micrograd 0.1.0.

A hypothesis RuleBasedStateMachine runs one random program on both engines
at once: it makes leaves (ints, floats, -0.0, NaN, inf), builds with every
op the two share (+ - * / ** -x relu and the reflected 2+v 2-v 2*v 2/v, with
int and float constants), reuses nodes (a*a, a+a, shared subgraphs), runs
backward (also twice), sets data and grad, and drops Values.  After every
step every Value still held must match:

* data: identical (type, value and repr; NaN matches NaN);
* repr: identical whenever the grads are;
* grad: same type; equal up to the order in which contributions are summed
  into one node (see `Magnitudes`): exactly equal when int-valued.

micrograd is the reference for errors: where it raises ZeroDivisionError or
OverflowError autograd_c must raise the same; where it gives a complex
number (negative ** fractional) autograd_c raises ValueError.  Documented
differences are checked, then the result is not reused: an int beyond 2**53
(autograd_c stores the nearest double, OverflowError beyond double range),
and a backward in which micrograd raises or makes complex gradients
(autograd_c follows IEEE: inf/nan) -- every node that backward reached is
then "tainted": its data is still compared, its grad no longer.

CI runs ~100 programs of ~30 steps.  For a longer hunt:
    AGC_FUZZ_EXAMPLES=20000 AGC_FUZZ_STEPS=100 pytest tests/test_differential_stateful.py
"""
import math
import os
import weakref

import micrograd.engine as mg
import pytest
from hypothesis import event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes,
                                 initialize, invariant, multiple, rule)

import autograd_c
from support import MICROGRAD_OPS, OPS, local_derivatives, same_number, topo

EXAMPLES = int(os.environ.get("AGC_FUZZ_EXAMPLES", "100"))
STEPS = int(os.environ.get("AGC_FUZZ_STEPS", "30"))

EXACT_INT = 2**53     # ints are exact up to here in a double
GRAD_RTOL = 1e-9      # of the magnitude of a grad's contributions (see below)
NEAR_OVERFLOW = 1e300  # beyond: summation order decides finite vs inf

SPECIAL = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e-300, 5e-324, 1e300]
numbers = st.one_of(
    st.integers(-5, 5),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from(SPECIAL),
)
exponents = st.one_of(st.integers(-3, 4),
                      st.sampled_from([0.5, -0.5, 1.5, 2.0, -1.0, 0.0, 3.0]))

# Every op both engines have (support.OPS), by its operands.
BINARY = ("add", "sub", "mul", "div")                                  # a op b
WITH_NUMBER = ("addc", "subc", "mulc", "divc", "radd", "rsub", "rmul", "rdiv")  # a op n, n op a
UNARY = ("neg", "relu")
assert set(BINARY + WITH_NUMBER + UNARY + ("pow",)) == set(MICROGRAD_OPS)


def big_int_as_double(exact, got):
    """The documented result of an int beyond 2**53: the nearest double
    (within rounding of the steps that made it) as an int."""
    return type(got) is int and math.isclose(got, exact, rel_tol=1e-12)


class Pair:
    """The same Value in both engines."""

    def __init__(self, m, a):
        self.mg, self.ag, self.tainted = m, a, False

    def __repr__(self):
        return f"Pair({self.mg!r}, {self.ag!r}{', tainted' if self.tainted else ''})"


class Magnitudes:
    """Per micrograd node: the sum of the absolute values of every term ever
    added into its grad (micrograd's backward run on |.|), and whether a
    non-finite term (inf/nan data or grad) was among them.

    Why the tolerance: a float grad is a sum of terms, each a product of
    local derivatives along a path.  micrograd adds the terms of one node in
    set-iteration order (memory addresses), autograd_c in a fixed DFS order.
    Each order's result is within (ops on the paths) * eps * M of the exact
    one, M the magnitude tracked here -- not the result, which can cancel to
    ~0.  With <= ~1000 ops that is < 1e-12 * M, so GRAD_RTOL * M (1e-9)
    leaves a margin of 1000 while a wrong rule is off by O(M).  Ints are
    exact while M <= 2**53.  With a non-finite term, or M beyond 1e300,
    summation order can decide between inf, nan and finite (inf * 0 vs inf *
    1e-17, overflow of a partial sum): only the type is compared there."""

    def __init__(self):
        self.state = weakref.WeakKeyDictionary()

    def get(self, v):
        return self.state.get(v, (0.0, False))

    def set_grad(self, v, g):
        finite = math.isfinite(g)
        self.state[v] = (abs(g) if finite else 0.0, not finite)

    def backward(self, root):
        self.state[root] = (1.0, False)
        for v in reversed(topo(root)):
            m, special = self.get(v)
            for child, d in local_derivatives(v):
                cm, cs = self.get(child)
                if math.isfinite(d):
                    self.state[child] = (cm + d * m, cs or special)
                else:
                    self.state[child] = (cm, True)

    def grads_match(self, v, mg_grad, ag_grad):
        m, special = self.get(v)
        event("grad compared: " + ("type only" if special or not m <= NEAR_OVERFLOW else
                                   "exactly" if type(mg_grad) is int and m <= EXACT_INT else
                                   "up to summation order"))
        if special or not m <= NEAR_OVERFLOW:
            if type(mg_grad) is int and type(ag_grad) is float:
                return math.isinf(ag_grad)  # an int grad beyond double range
            return type(mg_grad) is type(ag_grad)
        if type(mg_grad) is not type(ag_grad):
            return False
        if type(mg_grad) is int and m <= EXACT_INT:
            return mg_grad == ag_grad
        return abs(mg_grad - ag_grad) <= GRAD_RTOL * m


class DifferentialMachine(RuleBasedStateMachine):
    values = Bundle("values")

    def __init__(self):
        super().__init__()
        self.pairs = []
        self.mag = Magnitudes()

    # -- building ----------------------------------------------------------
    def build(self, op, a, b=None, k=0):
        """support.OPS[op] on both engines; the new Pair, or nothing when
        micrograd's result is an error, a complex number or an int beyond
        2**53."""
        note(f"{op} {a} {b} {k}")
        fn = OPS[op]
        m_args = (a.mg, None if b is None else b.mg, k)
        a_args = (a.ag, None if b is None else b.ag, k)
        try:
            m = fn(*m_args)
        except (ZeroDivisionError, OverflowError) as e:
            # a complex result too big for Python: ValueError as any complex
            complex_result = "complex" in str(e)
            with pytest.raises(ValueError if complex_result else type(e)):
                fn(*a_args)
            return multiple()
        if isinstance(m.data, complex):
            with pytest.raises(ValueError):
                fn(*a_args)
            return multiple()
        if type(m.data) is int and abs(m.data) > EXACT_INT:
            try:
                got = fn(*a_args)
            except OverflowError:
                with pytest.raises(OverflowError):
                    float(m.data)
            else:
                assert big_int_as_double(m.data, got.data), (m, got)
            return multiple()
        pair = Pair(m, fn(*a_args))
        self.pairs.append(pair)
        self.check(pair)
        return pair

    def new_leaf(self, x):
        pair = Pair(mg.Value(x), autograd_c.Value(x))
        self.pairs.append(pair)
        self.check(pair)
        return pair

    @initialize(target=values, xs=st.lists(numbers, min_size=2, max_size=4))
    def leaves(self, xs):
        return multiple(*map(self.new_leaf, xs))

    @rule(target=values, x=numbers)
    def leaf(self, x):
        return self.new_leaf(x)

    @rule(target=values, op=st.sampled_from(BINARY), a=values, b=values)
    def binary(self, op, a, b):
        return self.build(op, a, b)

    @rule(target=values, op=st.sampled_from(WITH_NUMBER), a=values, n=numbers)
    def with_number(self, op, a, n):
        return self.build(op, a, k=n)

    @rule(target=values, a=values, k=exponents)
    def power(self, a, k):
        return self.build("pow", a, k=k)

    @rule(target=values, op=st.sampled_from(UNARY), a=values)
    def unary(self, op, a):
        return self.build(op, a)

    # -- using -------------------------------------------------------------
    @rule(p=values)
    def backward(self, p):
        self.run_backward(p)

    @rule(p=values)
    def backward_twice(self, p):
        self.run_backward(p)
        self.run_backward(p)

    def run_backward(self, p):
        reached = topo(p.mg)
        try:
            p.mg.backward()
            failed = any(isinstance(v.grad, complex) for v in reached)
        except (ZeroDivisionError, OverflowError):
            failed = True
        p.ag.backward()  # IEEE inside backward: never raises
        if failed:
            note(f"micrograd's backward failed from {p}: taint what it reached")
            reached = set(reached)
            for q in self.pairs:
                q.tainted |= q.mg in reached
        else:
            self.mag.backward(p.mg)

    @rule(p=values, x=numbers)
    def set_data(self, p, x):
        p.mg.data = x
        p.ag.data = x

    @rule(p=values, g=numbers)
    def set_grad(self, p, g):
        p.mg.grad = g
        p.ag.grad = g
        self.mag.set_grad(p.mg, g)

    @rule(p=consumes(values))
    def drop(self, p):
        self.pairs.remove(p)

    # -- checking ----------------------------------------------------------
    def check(self, p):
        m, a = p.mg, p.ag
        assert same_number(m.data, a.data), p
        if p.tainted:
            return
        assert self.mag.grads_match(m, m.grad, a.grad), (p, self.mag.get(m))
        if same_number(m.grad, a.grad):
            assert repr(m) == repr(a)

    @invariant()
    def every_value_matches(self):
        for p in self.pairs:
            self.check(p)


DifferentialMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None)
TestDifferential = DifferentialMachine.TestCase

