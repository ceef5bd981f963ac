"""Differential tests: autograd_c against micrograd 0.1.0 on random programs
(hypothesis) and on the moons training step and nn.

A program (support.random_program) runs on both engines through
support.run_program, over micrograd's shared surface (+ - * / ** with int
and float constant exponents, unary -, relu, the reflected forms 2+v, 2-v,
2*v, 2/v) with int and float constants and leaves; operands are picked
from a pool of earlier results, so nodes get reused.  Every node both
engines create is compared: the op results, the hidden nodes micrograd's
rules create (the constant leaf of `v + 2`, the `-b` of `a - b`, the
`b**-1` of `a / b`), the sums that tie the pool into one root, and which
nodes each one's _prev links to.

micrograd runs first and is the reference: it decides which ops raise
(ZeroDivisionError, OverflowError: autograd_c must raise the same type and
create nothing) or give a complex number (autograd_c must raise ValueError
and create nothing), and which results are small enough to be used again
(keeping ints exact and floats finite).

The stateful fuzzer (build, reuse, backward twice, set data and grad, drop)
is test_differential_stateful.py.
"""
import math
import random

import pytest
from hypothesis import assume, event, example, given, note, settings
from hypothesis import strategies as st

import autograd_c
import autograd_c.nn as ac_nn
import micrograd.engine as mg_engine
import micrograd.nn as mg_nn
from autograd_c import Value as AV
from autograd_c.datasets import make_moons
from autograd_c.train import make_model, moons_loss, train_step
from micrograd.engine import Value as MV
from support import (Program, gc_paused, grad_magnitudes, grads_match, live_nodes, programs, raised,
                     reachable, run_program, same_number, small_number)

POOL_MAX = 1e4   # |data| of a result that may be used again (ints stay
                 # exact: the largest op result is 1e4**3 < 2**53)
POOL_MIN = 1e-6  # ... and not so small that x**-2 in a backward overflows
INT_EXACT = 2**53
ALLOW_NONFINITE_IN_POOL = [False]  # switched on by the NaN/inf test only


# --------------------------------------------------------------------------
# running a program on both engines

def _other(node, known):
    """The one child of node that is not `known` (by Value equality, which
    is identity for micrograd and node identity for autograd_c)."""
    kids = [ch for ch in node._prev if not ch == known]
    assert len(kids) == 1, (node, known, node._prev)
    return kids[0]


def _with_op(node, op):
    kids = [ch for ch in node._prev if ch._op == op]
    assert len(kids) == 1, (node, op, node._prev)
    return kids[0]


def hidden_nodes(kind, r, a, b):
    """The nodes besides r that micrograd's rules create for one op, found
    through _prev in a fixed order (so both engines list them alike)."""
    if kind in ("add", "mul", "pow", "relu"):
        return []
    if kind == "sub":                       # r = a + n, n = b * -1
        n = _other(r, a)
        return [n, _other(n, b)]
    if kind == "div":                       # r = a * p, p = b ** -1
        return [_other(r, a)]
    if kind in ("addc", "subc", "mulc", "divc", "radd", "rmul", "neg"):
        return [_other(r, a)]               # r = a op leaf
    if kind == "rsub":                      # r = n + leaf, n = a * -1
        n = _with_op(r, "*")
        return [n, _other(n, a), _with_op(r, "")]
    if kind == "rdiv":                      # r = p * leaf, p = a ** -1
        return [_with_op(r, "**-1"), _with_op(r, "")]
    raise AssertionError(kind)


def all_nodes(run):
    """(tag, node) for every node a run made, in creation order."""
    nodes = [("leaf", v) for v in run.leaves]
    for n, step in enumerate(run.steps):
        if step.result is not None:
            nodes.append((f"op{n}:{step.op}", step.result))
            nodes += [(f"op{n}:{step.op}:hidden{h}", x)
                      for h, x in enumerate(hidden_nodes(step.op, step.result, step.a, step.b))]
    return nodes + [("sum", v) for v in run.sums]


def reusable(kind, r, a, k):
    """Whether result r may be an operand again: a real, bounded number,
    and not x**k at x == 0 with k < 1 (whose micrograd backward raises
    ZeroDivisionError: 0.0 ** (k-1); autograd_c gives IEEE inf/nan there,
    by design, see test_backward)."""
    x = r.data
    if math.isnan(x) or math.isinf(x):
        return ALLOW_NONFINITE_IN_POOL[0]
    if x != 0 and not POOL_MIN <= abs(x) <= POOL_MAX:
        return False
    if kind == "pow" and a.data == 0 and k < 1:
        return False
    return True


def check_failed_op(n, kind, call):
    """autograd_c's outcome of an op micrograd failed: the exception it
    raised, which must have created nothing."""
    before = live_nodes(collect=False)
    err = raised(call)
    if err is None:
        return ("ok", None)
    assert live_nodes(collect=False) == before, f"op {n} ({kind}) failed but left nodes behind"
    return ("raise", err[0])


def grads_in_range(nodes):
    """Reference grads that autograd_c can reproduce: ints within 2**53
    (autograd_c stores ints as doubles, by design), finite floats far from
    overflow (where the summation order could decide between a number and
    inf); NaN and inf only where the program has them as inputs."""
    for _, v in nodes:
        g = v.grad
        if isinstance(g, int) and abs(g) > INT_EXACT:
            return False
        if isinstance(g, float) and math.isfinite(g) and abs(g) > 1e250:
            return False
        if isinstance(g, float) and not math.isfinite(g) and not ALLOW_NONFINITE_IN_POOL[0]:
            return False
        if isinstance(v.data, int) and abs(v.data) > INT_EXACT:
            return False
    return True


def _assert(ok):
    assert ok, "program outside the comparable range"


def compare_runs(program, in_hypothesis=True):
    """Run a program on both engines and compare every node.  Programs the
    engines cannot agree on by design are rejected (hypothesis.assume), or
    fail outside hypothesis.  Returns (ours, micrograd's): (run, nodes)."""
    reject = (lambda ok: assume(ok)) if in_hypothesis else (lambda ok: _assert(ok))
    mg = run_program(MV, program, keep=reusable)
    # With the cyclic garbage collector paused, a Value of an earlier test
    # that only a reference cycle keeps alive cannot be freed in the middle
    # of the run and move the live-node count.  (The run itself makes no
    # cycles: its dead Values go by reference counting.)
    with gc_paused():
        ac = run_program(AV, program, plan=mg, on_fail=check_failed_op)
    # where micrograd raised, ours raised the same; where it made a complex
    # number, ours raised ValueError
    assert ac.outcomes == [("raise", ValueError) if o == ("complex",) else o
                           for o in mg.outcomes]
    ac_nodes, mg_nodes = all_nodes(ac), all_nodes(mg)  # node for node (one plan)
    # the same graph: each node's _prev links the same nodes of the list
    ac_pos = {v: i for i, (_, v) in enumerate(ac_nodes)}
    mg_pos = {id(v): i for i, (_, v) in enumerate(mg_nodes)}
    for (tag, va), (_, vm) in zip(ac_nodes, mg_nodes):
        assert {ac_pos.get(c) for c in va._prev} == {mg_pos.get(id(c)) for c in vm._prev}, tag
    # forward: data and op identical, before any backward
    for (tag, va), (_, vm) in zip(ac_nodes, mg_nodes):
        assert same_number(va.data, vm.data), (tag, va.data, vm.data)
        assert va._op == vm._op, (tag, va._op, vm._op)
        assert va.grad == 0 and type(va.grad) is int, (tag, va.grad)
    assert len(reachable(ac.root)) == len(reachable(mg.root))
    try:
        mg.root.backward()
    except (ZeroDivisionError, OverflowError):
        # micrograd's backward can raise half-way (x ** (k-1) out of range);
        # autograd_c by design gives IEEE inf/nan instead.  Not comparable.
        reject(False)
    reject(grads_in_range(mg_nodes))
    ac.root.backward()
    mag = grad_magnitudes(mg.root)
    for (tag, va), (_, vm) in zip(ac_nodes, mg_nodes):
        assert same_number(va.data, vm.data), (tag, va.data, vm.data)
        scale = mag.get(id(vm), 0.0)
        assert grads_match(va.grad, vm.grad, scale), (tag, va.grad, vm.grad, scale)
    if in_hypothesis:  # what the examples covered (--hypothesis-show-statistics)
        for outcome in set(o[0] if o[0] != "raise" else o[1].__name__ for o in mg.outcomes):
            event(f"an op gave: {outcome}")
        grads = [v.grad for _, v in mg_nodes[:-1]]
        event(f"int grads != 0: {any(type(g) is int and g != 0 for g in grads)}")
        event(f"float grads: {any(type(g) is float for g in grads)}")
        event(f"nodes: {len(mg_nodes) // 10 * 10}+")
    return (ac, ac_nodes), (mg, mg_nodes)


# --------------------------------------------------------------------------
# random programs

SPECIALS = [math.nan, math.inf, -math.inf]


def special_or_small(rng):
    return rng.choice(SPECIALS) if rng.randrange(2) == 0 else small_number(rng)


@st.composite
def special_programs(draw):
    """Programs with NaN and inf among the constants and at least one leaf."""
    p = draw(programs(n_leaves=(0, 5), n_steps=(0, 20), number=special_or_small))
    at = draw(st.integers(0, len(p.leaves)))
    return Program(p.leaves[:at] + [draw(st.sampled_from(SPECIALS))] + p.leaves[at:], p.steps)


@settings(max_examples=max(200, settings.default.max_examples), deadline=None)
@given(programs(n_leaves=(1, 6), n_steps=(0, 30)))
# an int-only graph with reuse: int data, int grads
@example(Program([2, 3], [("mul", 0, 0, 0), ("add", 2, 1, 0), ("sub", 3, 0, 0),
                          ("pow", 4, 0, 2), ("rsub", 5, 0, 7), ("relu", 6, 0, 0)]))
# errors: 0 ** -1, 0 / 0, 2 / 0, negative ** 0.5, float ** overflow
@example(Program([0, -8.0, 10.0], [("pow", 0, 0, -1), ("div", 0, 0, 0), ("divc", 1, 0, 0),
                                   ("rdiv", 0, 0, 2), ("pow", 1, 0, 0.5),
                                   ("pow", 2, 0, 400), ("pow", 2, 0, 400.0)]))
# mixed int/float reuse through every reflected form
@example(Program([2, 0.5], [("radd", 0, 0, 2), ("rsub", 1, 0, 2.5), ("rmul", 2, 0, 3),
                            ("rdiv", 3, 0, 2), ("neg", 4, 0, 0), ("mul", 5, 5, 0),
                            ("pow", 6, 0, 0.5), ("add", 7, 2, 0)]))
def test_random_programs_match_micrograd(program):
    note(repr(program))
    compare_runs(program)


@settings(max_examples=max(60, settings.default.max_examples // 2), deadline=None)
@given(special_programs())
def test_nan_inf_programs_match_micrograd(program):
    """NaN and inf leaves and constants: IEEE results, identical data;
    grads identical where non-finite (a sum with an inf or NaN term does not
    depend on order), else up to summation order."""
    note(repr(program))
    ALLOW_NONFINITE_IN_POOL[0] = True
    try:
        compare_runs(program)
    finally:
        ALLOW_NONFINITE_IN_POOL[0] = False


def test_interpreter_exercises_what_it_should():
    """Guard for the harness itself: a fixed program with reuse produces
    int grads, float grads, hidden nodes and the expected errors."""
    program = Program([2, 3.0, 0, 5], [
        ("mul", 0, 0, 0), ("sub", 4, 1, 0), ("pow", 2, 0, -1), ("rdiv", 0, 0, 1),
        ("relu", 4, 0, 0), ("pow", 1, 0, 0.5), ("mul", 3, 3, 0), ("mulc", 9, 0, 3)])
    (ac, ac_nodes), (mg, mg_nodes) = compare_runs(program, in_hypothesis=False)
    assert mg.outcomes[2] == ("raise", ZeroDivisionError)
    tags = [t for t, _ in ac_nodes]
    assert "op1:sub:hidden1" in tags and "op3:rdiv:hidden1" in tags
    five = ac_nodes[3][1]
    assert five.data == 5 and type(five.grad) is int and five.grad == 41  # 1 + 2*5*(1+3)
    two = ac_nodes[0][1]
    assert type(two.grad) is float and type(mg_nodes[0][1].grad) is float  # via 1/2


def test_backward_twice_matches_micrograd():
    """Grads are never zeroed: a second backward adds again (intermediate
    nodes add their already-accumulated grads once more), as in micrograd.
    Int-only graphs: exact."""
    results = []  # the smallest case, worked out: y = x*x + x at x = 2
    for V in (AV, MV):
        x = V(2)
        y = x * x + x
        y.backward()
        first = x.grad
        y.backward()
        results.append((first, x.grad, y.grad))
    assert results[0] == results[1] == (5, 14, 1)
    assert all(type(g) is int for g in results[0])
    program = Program([2, -3, 4], [("mul", 0, 1, 0), ("add", 3, 0, 0), ("pow", 4, 0, 2),
                                   ("relu", 5, 0, 0), ("rsub", 6, 0, 1), ("mul", 7, 2, 0)])
    (ac, ac_nodes), (mg, mg_nodes) = compare_runs(program, in_hypothesis=False)
    first = [v.grad for _, v in ac_nodes]
    mg.root.backward()
    ac.root.backward()
    for (tag, va), (_, vm) in zip(ac_nodes, mg_nodes):
        assert type(va.grad) is int and type(vm.grad) is int, tag
        assert va.grad == vm.grad, (tag, va.grad, vm.grad)
    assert [v.grad for _, v in ac_nodes] != first  # it did accumulate


def test_backward_twice_float_matches_micrograd():
    program = Program([2, -3, 1.5], [("mul", 0, 1, 0), ("add", 3, 0, 0), ("pow", 4, 0, 2),
                                     ("mulc", 2, 0, 0.25), ("div", 5, 6, 0), ("relu", 7, 0, 0)])
    (ac, ac_nodes), (mg, mg_nodes) = compare_runs(program, in_hypothesis=False)
    mg.root.backward()
    ac.root.backward()
    # the second pass sums up to (depth + 1) times the first pass's terms
    mag = grad_magnitudes(mg.root)
    for (tag, va), (_, vm) in zip(ac_nodes, mg_nodes):
        scale = len(ac_nodes) * mag.get(id(vm), 0.0)
        assert grads_match(va.grad, vm.grad, scale), (tag, va.grad, vm.grad)


# --------------------------------------------------------------------------
# the moons training step and nn

@pytest.fixture(scope="module")
def moons():
    return make_moons(100, noise=0.1)


def test_moons_training_matches_micrograd(moons):
    X, y = moons
    ac_model = make_model(ac_nn.MLP, seed=1337)
    mg_model = make_model(mg_nn.MLP, seed=1337)
    ac_params, mg_params = ac_model.parameters(), mg_model.parameters()
    assert [p.data for p in ac_params] == [p.data for p in mg_params]
    ac_hist, mg_hist = [], []
    for k in range(3):
        ac_hist.append(train_step(autograd_c.Value, ac_model, X, y, k))
        mg_hist.append(train_step(mg_engine.Value, mg_model, X, y, k))
        # parameters after the update: the grads differ only by summation
        # order (last bits), so the parameters stay close.  A grad is a sum
        # over the 100 points that can cancel, so its rounding is measured
        # against the largest grad, not against itself.
        scale = max(abs(p.grad) for p in mg_params)
        for pa, pm in zip(ac_params, mg_params):
            assert type(pa.data) is type(pm.data) and type(pa.grad) is type(pm.grad)
            assert math.isclose(pa.data, pm.data, rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(pa.grad, pm.grad, rel_tol=1e-9, abs_tol=1e-9 * scale)
    # step 0: same parameters, same forward: the loss is bit-identical
    assert same_number(ac_hist[0][0], mg_hist[0][0])
    assert ac_hist[0][1] == mg_hist[0][1]
    for (la, aa), (lm, am) in zip(ac_hist[1:], mg_hist[1:]):
        assert math.isclose(la, lm, rel_tol=1e-9)
        assert aa == am
    assert ac_hist[2][0] < ac_hist[0][0]  # it does train


def test_moons_loss_graph_matches_micrograd(moons):
    """The whole loss graph: same data at the root, same node count, same
    parameter grads up to summation order."""
    X, y = moons
    X, y = X[:10], y[:10]
    ac_model = make_model(ac_nn.MLP, seed=7)
    mg_model = make_model(mg_nn.MLP, seed=7)
    ac_loss, ac_acc = moons_loss(autograd_c.Value, ac_model, X, y)
    mg_loss, mg_acc = moons_loss(mg_engine.Value, mg_model, X, y)
    assert same_number(ac_loss.data, mg_loss.data) and ac_acc == mg_acc
    assert len(reachable(ac_loss)) == len(reachable(mg_loss))
    ac_loss.backward()
    mg_loss.backward()
    mag = grad_magnitudes(mg_loss)
    for pa, pm in zip(ac_model.parameters(), mg_model.parameters()):
        assert grads_match(pa.grad, pm.grad, mag[id(pm)]), (pa.grad, pm.grad)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.floats(-3, 3), min_size=3, max_size=3),
       st.sampled_from([[1], [4, 1], [5, 3, 2]]))
def test_layer_fast_path_matches_python_path_and_micrograd(seed, xs, nouts):
    """Layer builds its forward in one C call when every input is a Value;
    with numbers it goes micrograd's way.  Both, and micrograd's nn from the
    same seed, give identical data; and identical grads through backward."""
    random.seed(seed)
    ac_model = ac_nn.MLP(3, nouts)
    random.seed(seed)
    mg_model = mg_nn.MLP(3, nouts)
    fast_in = [AV(x) for x in xs]
    fast = ac_model(fast_in)
    slow = ac_model(list(xs))
    ref_in = [MV(x) for x in xs]
    ref = mg_model(ref_in)
    as_list = (lambda o: o if isinstance(o, list) else [o])
    fast, slow, ref = as_list(fast), as_list(slow), as_list(ref)
    assert len(fast) == len(slow) == len(ref) == nouts[-1]
    for f, s, r in zip(fast, slow, ref):
        assert same_number(f.data, r.data) and same_number(s.data, r.data)
        assert f._op == r._op
        assert len(reachable(f)) == len(reachable(r))
    # backward through the fast path: the same grads on inputs and weights
    # (each parameter's contributions come from one neuron: two terms at most
    # per sum, so the order does not matter here... but allow rounding)
    fast[0].backward()
    ref[0].backward()
    mag = grad_magnitudes(ref[0])
    for a, m in zip(fast_in + ac_model.parameters(), ref_in + mg_model.parameters()):
        assert grads_match(a.grad, m.grad, mag.get(id(m), 0.0)), (a.grad, m.grad)
