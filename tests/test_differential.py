"""Differential tests: autograd_c against micrograd 0.1.0.

The same program runs on both engines through one small interpreter that
takes a Value class.  A program is a list of leaves and a list of ops over
micrograd's shared surface (+ - * / ** with int/float constant exponents,
unary -, relu, the reflected forms 2+v, 2-v, 2*v, 2/v), with int and float
constants and leaves; operands are picked by index from a pool of earlier
results, so nodes get reused.  Every node both engines create is compared:
the op results, the hidden nodes micrograd's rules create (the constant
leaf of `v + 2`, the `-b` of `a - b`, the `b**-1` of `a / b`), and the sums
that tie the pool into one root.

micrograd runs first and is the reference: it decides which ops raise
(ZeroDivisionError, OverflowError: autograd_c must raise the same type and
create nothing) or give a complex number (autograd_c must raise ValueError
and create nothing), and which results are small enough to be used again
(keeping ints exact and floats finite).
"""
import gc
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
from support import reachable, same_number

# --------------------------------------------------------------------------
# the interpreter

BINARY = ("add", "sub", "mul", "div")           # Value op Value
WITH_CONST = ("addc", "subc", "mulc", "divc")   # Value op number
REFLECTED = ("radd", "rsub", "rmul", "rdiv")    # number op Value
UNARY = ("neg", "relu")
KINDS = BINARY + WITH_CONST + REFLECTED + UNARY + ("pow",)

POOL_MAX = 1e4   # |data| of a result that may be used again (ints stay
                 # exact: the largest op result is 1e4**3 < 2**53)
POOL_MIN = 1e-6  # ... and not so small that x**-2 in a backward overflows
INT_EXACT = 2**53


# kind -> one op on Values a, b (of either engine), number c, exponent k
OPS = {
    "add": lambda a, b, c, k: a + b,
    "sub": lambda a, b, c, k: a - b,
    "mul": lambda a, b, c, k: a * b,
    "div": lambda a, b, c, k: a / b,
    "addc": lambda a, b, c, k: a + c,
    "subc": lambda a, b, c, k: a - c,
    "mulc": lambda a, b, c, k: a * c,
    "divc": lambda a, b, c, k: a / c,
    "radd": lambda a, b, c, k: c + a,
    "rsub": lambda a, b, c, k: c - a,
    "rmul": lambda a, b, c, k: c * a,
    "rdiv": lambda a, b, c, k: c / a,
    "neg": lambda a, b, c, k: -a,
    "relu": lambda a, b, c, k: a.relu(),
    "pow": lambda a, b, c, k: a ** k,
}


def apply_op(kind, a, b, c, k):
    return OPS[kind](a, b, c, k)


def live_nodes():
    """The live-node count, read while the cyclic garbage collector is
    paused (see compare_runs): nothing but the engine's own work moves it."""
    return autograd_c.stats()["live_nodes"]


def raised_type(fn):
    """The type of the exception fn() raises, or None (the exception itself
    is not kept, so nothing it references stays alive)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- the type is what is checked
        return type(e)
    return None


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


def reusable(kind, r, a, k):
    """Whether result r may be an operand again: a real, bounded number,
    and not x**k at x == 0 with k < 1 (whose micrograd backward raises
    ZeroDivisionError: 0.0 ** (k-1); autograd_c gives IEEE inf/nan there,
    by design, see test_values)."""
    x = r.data
    if isinstance(x, complex):
        return False
    if math.isnan(x) or math.isinf(x):
        return ALLOW_NONFINITE_IN_POOL[0]
    if x != 0 and not POOL_MIN <= abs(x) <= POOL_MAX:
        return False
    if kind == "pow" and a.data == 0 and k < 1:
        return False
    return True


ALLOW_NONFINITE_IN_POOL = [False]  # switched on by the NaN/inf test only


class Run:
    """The result of running a program on one engine."""

    def __init__(self):
        self.nodes = []      # (tag, node): every node, in creation order
        self.outcomes = []   # per op: ("ok", reusable) | ("raise", type) | ("complex",)
        self.root = None


def run_program(V, leaves, ops, plan=None, live=None):
    """Run a program on the engine whose Value class is V.

    plan None: the reference run (micrograd), which decides the outcome of
    each op.  Otherwise plan is the reference Run: errors must be the same
    (ValueError where the reference made a complex number) and, if live is
    given (a function giving the live-node count), a failed op must create
    nothing."""
    run = Run()
    pool = [V(x) for x in leaves]
    run.nodes += [("leaf", v) for v in pool]
    for n, (kind, i, j, c, k) in enumerate(ops):
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        if plan is None:
            try:
                r = apply_op(kind, a, b, c, k)
            except (ZeroDivisionError, OverflowError) as e:
                run.outcomes.append(("raise", type(e)))
                continue
            if isinstance(r.data, complex):
                run.outcomes.append(("complex",))
                continue
            outcome = ("ok", reusable(kind, r, a, k))
        else:
            outcome = plan.outcomes[n]
            if outcome[0] != "ok":
                run.outcomes.append(outcome)
                expected = ValueError if outcome[0] == "complex" else outcome[1]
                before = live() if live else None
                got = raised_type(lambda: apply_op(kind, a, b, c, k))
                assert got is expected, f"op {n} ({kind}) raised {got}, not {expected}"
                if live:
                    assert live() == before, f"op {n} ({kind}) failed but left nodes behind"
                continue
            r = apply_op(kind, a, b, c, k)
        run.outcomes.append(outcome)
        run.nodes.append((f"op{n}:{kind}", r))
        run.nodes += [(f"op{n}:{kind}:hidden{h}", x)
                      for h, x in enumerate(hidden_nodes(kind, r, a, b))]
        if outcome[1]:
            pool.append(r)
    root = pool[0]
    for v in pool[1:]:
        root = root + v
        run.nodes.append(("sum", root))
    run.root = root
    return run


# --------------------------------------------------------------------------
# comparing


def grad_magnitudes(root):
    """For every node micrograd reaches from root, the sum over all
    backward contributions of their absolute values (backward run on |.|).

    A float grad is a sum of contributions, each made of products of local
    derivatives; micrograd sums the contributions into one node in set
    iteration order (memory addresses), autograd_c in its own fixed order.
    Floating point addition is not associative, so the two can differ by
    rounding, and that rounding is bounded by (number of terms) * eps * the
    sum of the absolute values of the terms -- not by the result, which can
    cancel to ~0.  This gives the scale for the tolerance."""
    topo, seen, stack = [], set(), [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            topo.append(v)
            continue
        if v in seen:
            continue
        seen.add(v)
        stack.append((v, True))
        stack.extend((ch, False) for ch in v._prev)
    mag = {id(root): 1.0}

    def add(node, g):
        mag[id(node)] = mag.get(id(node), 0.0) + g

    for v in reversed(topo):
        g = mag.get(id(v), 0.0)
        kids = list(v._prev)
        if v._op == "+":
            for ch in kids:
                add(ch, g * (2 if len(kids) == 1 else 1))
        elif v._op == "*":
            if len(kids) == 1:
                add(kids[0], 2 * abs(kids[0].data) * g)
            else:
                add(kids[0], abs(kids[1].data) * g)
                add(kids[1], abs(kids[0].data) * g)
        elif v._op.startswith("**"):
            k = float(v._op[2:])
            x = abs(kids[0].data)
            d = math.inf if x == 0 and k < 1 else abs(k) * x ** (k - 1)
            add(kids[0], d * g)
        elif v._op == "ReLU":
            add(kids[0], g if v.data > 0 else 0.0)
    return mag


def grads_match(g_ac, g_mg, scale):
    """grad equal up to summation order (see grad_magnitudes): ints exact,
    floats within 1e-9 of the scale (generous: the rounding error is about
    depth * 2**-53 of it); non-finite floats exactly (NaN == NaN), as a sum
    with an inf or NaN term is the same in any order."""
    if type(g_ac) is not type(g_mg):
        return False
    if isinstance(g_mg, int):
        return g_ac == g_mg
    if math.isnan(g_mg) or math.isnan(g_ac):
        return math.isnan(g_mg) and math.isnan(g_ac)
    if math.isinf(g_mg) or math.isinf(g_ac) or not math.isfinite(scale):
        return g_ac == g_mg
    return abs(g_ac - g_mg) <= 1e-9 * scale + 1e-300


def grads_in_range(run):
    """Reference grads that autograd_c can reproduce: ints within 2**53
    (autograd_c stores ints as doubles, by design), finite floats far from
    overflow (where the summation order could decide between a number and
    inf); NaN and inf only where the program has them as inputs."""
    for _, v in run.nodes:
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


def compare_runs(leaves, ops, check_live=True, in_hypothesis=True):
    """Run a program on both engines and compare every node.  Programs the
    engines cannot agree on by design are rejected (hypothesis.assume), or
    fail outside hypothesis."""
    reject = (lambda ok: assume(ok)) if in_hypothesis else (lambda ok: _assert(ok))
    mg = run_program(MV, leaves, ops)
    live = live_nodes if check_live else None
    # With the cyclic garbage collector paused, a Value of an earlier test
    # that only a reference cycle keeps alive cannot be freed in the middle
    # of the run and move the live-node count.  (The run itself makes no
    # cycles: its dead Values go by reference counting.)
    gc.disable()
    try:
        ac = run_program(AV, leaves, ops, plan=mg, live=live)
    finally:
        gc.enable()
    assert ac.outcomes == mg.outcomes
    assert [t for t, _ in ac.nodes] == [t for t, _ in mg.nodes]
    # forward: data and op identical, before any backward
    for (tag, va), (_, vm) in zip(ac.nodes, mg.nodes):
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
    reject(grads_in_range(mg))
    ac.root.backward()
    mag = grad_magnitudes(mg.root)
    for (tag, va), (_, vm) in zip(ac.nodes, mg.nodes):
        assert same_number(va.data, vm.data), (tag, va.data, vm.data)
        scale = mag.get(id(vm), 0.0)
        assert grads_match(va.grad, vm.grad, scale), (tag, va.grad, vm.grad, scale)
    if in_hypothesis:  # what the examples covered (--hypothesis-show-statistics)
        for outcome in set(o[0] if o[0] != "raise" else o[1].__name__ for o in mg.outcomes):
            event(f"an op gave: {outcome}")
        grads = [v.grad for _, v in mg.nodes[:-1]]
        event(f"int grads != 0: {any(type(g) is int and g != 0 for g in grads)}")
        event(f"float grads: {any(type(g) is float for g in grads)}")
        event(f"nodes: {len(mg.nodes) // 10 * 10}+")
    return ac, mg


# --------------------------------------------------------------------------
# strategies

def signed_floats(hi):
    """Floats in [-hi, -1e-3] and [1e-3, hi] (zeros come from the samples):
    no subnormals, whose reciprocals overflow (those are tested apart)."""
    return st.builds(lambda m, neg: -m if neg else m, st.floats(1e-3, hi), st.booleans())


small_ints = st.integers(-4, 4)
small_floats = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 0.1, 3.0, 1.5]),
    signed_floats(4),
)
numbers = st.one_of(small_ints, small_floats)
exponents = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, -0.5, 1.5, 2.0, -1.0, 0.0, 1.0, 3.0, -2.0, 0.25, 2.5]),
    signed_floats(3),
)
index = st.integers(0, 63)
op = st.tuples(st.sampled_from(KINDS), index, index, numbers, exponents)
leaves = st.lists(numbers, min_size=1, max_size=6)
programs = st.tuples(leaves, st.lists(op, max_size=30))

special = st.sampled_from([math.nan, math.inf, -math.inf])
special_numbers = st.one_of(special, numbers)
special_op = st.tuples(st.sampled_from(KINDS), index, index, special_numbers, exponents)
special_leaves = st.builds(lambda xs, s, at: xs[:at] + [s] + xs[at:],
                           st.lists(special_numbers, max_size=5), special, st.integers(0, 5))
special_programs = st.tuples(special_leaves, st.lists(special_op, max_size=20))


# --------------------------------------------------------------------------
# the tests

@settings(max_examples=max(200, settings.default.max_examples), deadline=None)
@given(programs)
# an int-only graph with reuse: int data, int grads
@example(([2, 3], [("mul", 0, 0, 1, 2), ("add", 2, 1, 1, 2), ("sub", 3, 0, 1, 2),
                   ("pow", 4, 0, 1, 2), ("rsub", 5, 0, 7, 2), ("relu", 6, 0, 1, 2)]))
# errors: 0 ** -1, 0 / 0, 2 / 0, negative ** 0.5, float ** overflow
@example(([0, -8.0, 10.0], [("pow", 0, 0, 1, -1), ("div", 0, 0, 1, 2), ("divc", 1, 0, 0, 2),
                            ("rdiv", 0, 0, 2, 2), ("pow", 1, 0, 1, 0.5),
                            ("pow", 2, 0, 1, 400), ("pow", 2, 0, 1, 400.0)]))
# mixed int/float reuse through every reflected form
@example(([2, 0.5], [("radd", 0, 0, 2, 2), ("rsub", 1, 0, 2.5, 2), ("rmul", 2, 0, 3, 2),
                     ("rdiv", 3, 0, 2, 2), ("neg", 4, 0, 1, 2), ("mul", 5, 5, 1, 2),
                     ("pow", 6, 0, 1, 0.5), ("add", 7, 2, 0, 2)]))
def test_random_programs_match_micrograd(program):
    leaves, ops = program
    note(f"leaves={leaves!r} ops={ops!r}")
    compare_runs(leaves, ops)


@settings(max_examples=max(60, settings.default.max_examples // 2), deadline=None)
@given(special_programs)
def test_nan_inf_programs_match_micrograd(program):
    """NaN and inf leaves and constants: IEEE results, identical data;
    grads identical where non-finite (a sum with an inf or NaN term does not
    depend on order), else up to summation order."""
    leaves, ops = program
    note(f"leaves={leaves!r} ops={ops!r}")
    ALLOW_NONFINITE_IN_POOL[0] = True
    try:
        compare_runs(leaves, ops)
    finally:
        ALLOW_NONFINITE_IN_POOL[0] = False


def test_interpreter_exercises_what_it_should():
    """Guard for the harness itself: a fixed program with reuse produces
    int grads, float grads, hidden nodes and the expected errors."""
    leaves = [2, 3.0, 0, 5]
    ops = [("mul", 0, 0, 1, 2), ("sub", 4, 1, 1, 2), ("pow", 2, 0, 1, -1),
           ("rdiv", 0, 0, 1, 2), ("relu", 4, 0, 1, 2), ("pow", 1, 0, 1, 0.5),
           ("mul", 3, 3, 1, 2), ("mulc", 9, 0, 3, 2)]
    ac, mg = compare_runs(leaves, ops, in_hypothesis=False)
    assert mg.outcomes[2] == ("raise", ZeroDivisionError)
    tags = [t for t, _ in ac.nodes]
    assert "op1:sub:hidden1" in tags and "op3:rdiv:hidden1" in tags
    five = ac.nodes[3][1]
    assert five.data == 5 and type(five.grad) is int and five.grad == 41  # 1 + 2*5*(1+3)
    two = ac.nodes[0][1]
    assert type(two.grad) is float and type(mg.nodes[0][1].grad) is float  # via 1/2


def test_backward_twice_matches_micrograd():
    """Grads are never zeroed: a second backward adds again (intermediate
    nodes add their already-accumulated grads once more), as in micrograd.
    Int-only graph: exact."""
    leaves = [2, -3, 4]
    ops = [("mul", 0, 1, 1, 2), ("add", 3, 0, 1, 2), ("pow", 4, 0, 1, 2),
           ("relu", 5, 0, 1, 2), ("rsub", 6, 0, 1, 2), ("mul", 7, 2, 1, 2)]
    ac, mg = compare_runs(leaves, ops, in_hypothesis=False)
    first = [v.grad for _, v in ac.nodes]
    mg.root.backward()
    ac.root.backward()
    for (tag, va), (_, vm) in zip(ac.nodes, mg.nodes):
        assert type(va.grad) is int and type(vm.grad) is int, tag
        assert va.grad == vm.grad, (tag, va.grad, vm.grad)
    assert [v.grad for _, v in ac.nodes] != first  # it did accumulate


def test_backward_twice_float_matches_micrograd():
    leaves = [2, -3, 1.5]
    ops = [("mul", 0, 1, 1, 2), ("add", 3, 0, 1, 2), ("pow", 4, 0, 1, 2),
           ("mulc", 2, 0, 0.25, 2), ("div", 5, 6, 1, 2), ("relu", 7, 0, 1, 2)]
    ac, mg = compare_runs(leaves, ops, in_hypothesis=False)
    mg.root.backward()
    ac.root.backward()
    # the second pass sums up to (depth + 1) times the first pass's terms
    mag = grad_magnitudes(mg.root)
    for (tag, va), (_, vm) in zip(ac.nodes, mg.nodes):
        scale = len(ac.nodes) * mag.get(id(vm), 0.0)
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


def test_mlp_shape_and_repr_match_micrograd():
    random.seed(0)
    ac_model = ac_nn.MLP(2, [16, 16, 1])
    random.seed(0)
    mg_model = mg_nn.MLP(2, [16, 16, 1])
    assert len(ac_model.parameters()) == 337 == len(mg_model.parameters())
    assert repr(ac_model) == repr(mg_model)
    assert repr(ac_model).startswith("MLP of [Layer of [ReLUNeuron(2), ")
    assert repr(ac_model).endswith("Layer of [LinearNeuron(16)]]")
    assert [p.data for p in ac_model.parameters()] == [p.data for p in mg_model.parameters()]
    assert all(type(p.data) is type(q.data) for p, q in
               zip(ac_model.parameters(), mg_model.parameters()))


def test_zero_grad():
    random.seed(1)
    model = ac_nn.MLP(3, [4, 1])
    out = model([AV(1.0), AV(-2.0), AV(0.5)])
    out.backward()  # the last bias gets grad 1 at least
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 and type(p.grad) is int for p in model.parameters())


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
