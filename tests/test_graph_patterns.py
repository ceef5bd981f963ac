"""Softplus and softmax run as one step each (csrc/patterns.c) against the
unfused program (AG_GRAPH_UNFUSED): softplus bit for bit in every mode
(values, grads, types, errors, state after a failure); softmax in an
inexact replay only, its values bit for bit those of the unfused inexact
program and its grads to a tolerance (summed in another order), with some
outputs missing from the graph, shared inputs, errors; random programs of
both (hypothesis)."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograd_c import Graph, Value
from autograd_c._autograd_c import lib
from test_graph_compiled import state
from test_graph_fusion import passes as one_pass


def graphs(build, values, inexact=False):
    """Two builds of build(leaves) over leaves of `values`, captured: the
    default program and the unfused one, both inexact when asked."""
    made = []
    for options in (0, lib.AG_GRAPH_UNFUSED):
        leaves = [Value(v) for v in values]
        g = Graph(build(leaves), exact=not inexact)
        if options:
            assert lib.ag_graph_set_options(
                g._g, options | (lib.AG_GRAPH_INEXACT if inexact else 0)) == 0
        made.append((g, leaves))
    return made


def close(ours, theirs, rel=1e-12):
    """Two one_pass results: the same exception, or the same data bits and
    grads of the same types within rel."""
    if not isinstance(ours, list) or not isinstance(theirs, list):
        return ours == theirs
    for ((dt, dv), (gt, gv)), ((et, ev), (ht, hv)) in zip(ours, theirs):
        if (dt, dv) != (et, ev) or gt != ht:
            return False
        x, y = _float(gt, gv), _float(ht, hv)
        if gv != hv and not (math.isclose(x, y, rel_tol=rel, abs_tol=1e-300)
                             or (math.isnan(x) and math.isnan(y))):
            return False
    return len(ours) == len(theirs)


def _float(kind, raw):
    import struct
    return struct.unpack("<d", raw)[0] if kind == "float" else float(raw)


# ---- softplus: every mode, bit for bit ---------------------------------------

def softplus_net(leaves):
    x, y, c = leaves
    a = (x.exp() + 1).log()            # exp(x) + c, the op mix's
    b = (c + (y * 0.5).exp()).log()    # c + exp(.): the sum's other order
    d = (x.exp() + x).log()            # its other operand its own x
    return a * b + d * y


@pytest.mark.parametrize("inexact", [False, True])
@pytest.mark.parametrize("values", [(0.5, -1.0, 2.0), (3.0, 0.25, 0.0), (1, 2, 3),
                                    (800.0, 0.0, 1.0),     # exp overflows
                                    (0.1, 0.3, -5.0)])     # log of a negative
def test_softplus_is_its_members_bit_for_bit(values, inexact):
    (f, lf), (u, lu) = graphs(softplus_net, (0.5, -1.0, 2.0), inexact)
    for vals in ((0.5, -1.0, 2.0), values, (0.5, -1.0, 2.0)):
        assert one_pass(f, lf, vals, twice=True) == one_pass(u, lu, vals, twice=True)


def test_a_failed_softplus_changes_nothing():
    (f, lf), (u, lu) = graphs(softplus_net, (0.5, -1.0, 2.0))
    for g, leaves in ((f, lf), (u, lu)):
        one_pass(g, leaves, (0.5, -1.0, 2.0))
    before = state(f.root)
    assert one_pass(f, lf, (900.0, 0.0, 1.0)) is OverflowError
    for leaf, v in zip(lf, (0.5, -1.0, 2.0)):
        leaf.data = v
    assert state(f.root) == before == state(u.root)


# ---- softmax: inexact replays, values bit for bit, grads close ----------------

def softmax(xs, keep):
    """micrograd's softmax as the op mix writes it; only the outputs whose
    index is in keep are returned (the others are not in the graph)."""
    e = [x.exp() for x in xs]
    total = e[0]
    for t in e[1:]:
        total = total + t
    inv = total ** -1
    return [e[j] * inv for j in range(len(xs)) if j in keep]


def softmax_net(n, keep, shared):
    def build(leaves):
        xs = [leaves[(j * shared) % len(leaves)] * (1 + 0.25 * j) for j in range(n)]
        outs = softmax(xs, keep)
        root = outs[0] * leaves[0]
        for k, y in enumerate(outs[1:]):
            root = root + y * (k + 2.0)
        return root
    return build


@pytest.mark.parametrize("n, keep, shared", [(2, {0, 1}, 1), (4, {0, 1, 2, 3}, 1),
                                             (4, {1, 3}, 1), (5, {2}, 1),
                                             (6, {0, 5}, 2), (4, {0, 1, 2, 3}, 0)])
def test_softmax_values_bit_for_bit_grads_close(n, keep, shared):
    values = [0.3, -1.2, 2.5, 0.0, 1.0, -0.5]
    (f, lf), (u, lu) = graphs(softmax_net(n, keep, shared), values, inexact=True)
    for vals in (values, [v * 2 for v in values], values[::-1]):
        ours, theirs = one_pass(f, lf, vals, twice=True), one_pass(u, lu, vals, twice=True)
        assert close(ours, theirs), vals


@pytest.mark.parametrize("values, error", [([800.0, 0.0, 1.0, 0.0, 0.0, 0.0], OverflowError),
                                           ([-800.0] * 6, ZeroDivisionError)])
def test_softmax_errors_are_the_unfused_ones_and_change_nothing(values, error):
    start = [0.3, -1.2, 2.5, 0.0, 1.0, -0.5]
    (f, lf), (u, lu) = graphs(softmax_net(4, {0, 1, 2, 3}, 1), start, inexact=True)
    for g, leaves in ((f, lf), (u, lu)):
        one_pass(g, leaves, start)
    before = state(f.root)
    assert one_pass(f, lf, values) is error is one_pass(u, lu, values)
    for leaf, v in zip(lf, start):
        leaf.data = v
    assert state(f.root) == before


def test_the_first_failure_is_the_programs_first():
    """A softmax's step runs its exps where its first product is: an error
    there, and another at a node between (an input of a later term), give
    the program's first failure (the replay's rule), as the unfused replay."""
    def build(leaves):
        x, w = leaves
        return softmax([x, w.log()], {0, 1})[0] * 2.0
    (f, lf), (u, lu) = graphs(build, (0.5, 2.0), inexact=True)
    assert one_pass(u, lu, (800.0, -1.0)) is OverflowError     # exp(800) first
    assert one_pass(f, lf, (800.0, -1.0)) is OverflowError


def test_the_op_mix_inexact_is_close_to_eager():
    def op_mix(leaves, ops=120):
        n = list(leaves)
        for k in range(ops):
            kind = k % 4
            if kind == 0:
                n.append((n[-10].exp() + 1).log())
            elif kind == 1:
                a, b, c, d = n[-30:-10:5]
                n.append(a + b + c + d)
            elif kind == 2:
                n.append(n[-20] * n[-10])
            else:
                n += softmax(n[-4:], range(4))
        return n[-1]
    values = [i / 100 for i in range(100)]
    (f, lf), _ = graphs(op_mix, values, inexact=True)
    ours = one_pass(f, lf, values)
    fresh = op_mix([Value(v) for v in values])
    fresh.backward()
    theirs = state(fresh)
    assert len(ours) == len(theirs)
    for (dt, dv), (et, ev) in [(o[0], t[0]) for o, t in zip(ours, theirs)]:
        assert dt == et and math.isclose(_float(dt, dv), _float(et, ev), rel_tol=1e-12)
    for (gt, gv), (ht, hv) in [(o[1], t[1]) for o, t in zip(ours, theirs)]:
        assert gt == ht and math.isclose(_float(gt, gv), _float(ht, hv), rel_tol=1e-9,
                                         abs_tol=1e-12)


# ---- random programs of both (hypothesis) -------------------------------------

pieces = st.lists(st.tuples(st.sampled_from(["softplus", "softmax", "mul", "sum"]),
                            st.lists(st.integers(0, 30), min_size=4, max_size=4),
                            st.integers(2, 5), st.sets(st.integers(0, 4), min_size=1)),
                  min_size=1, max_size=8)


def program(spec):
    def build(leaves):
        pool = list(leaves)
        for kind, picks, n, keep in spec:
            xs = [pool[p % len(pool)] for p in picks]
            if kind == "softplus":
                pool.append((xs[0].exp() + xs[1]).log())
            elif kind == "softmax":
                pool += softmax([xs[j % 4] * (1 + j) for j in range(n)], keep) or [xs[0]]
            elif kind == "mul":
                pool.append(xs[0] * xs[1])
            else:
                pool.append(xs[0] + xs[1] + xs[2] + xs[3])
        root = pool[-1]
        for v in pool[-4:-1]:
            root = root + v
        return root
    return build


@settings(max_examples=60, deadline=None)
@given(spec=pieces, values=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
       inexact=st.booleans())
def test_random_programs_fused_and_unfused_agree(spec, values, inexact):
    (f, lf), (u, lu) = graphs(program(spec), [0.5] * 4, inexact)  # builds: no error
    for vals in (values, values[1:] + values[:1]):
        ours, theirs = one_pass(f, lf, vals, twice=True), one_pass(u, lu, vals, twice=True)
        if inexact:
            assert close(ours, theirs, rel=1e-9)
        else:
            assert ours == theirs


@pytest.mark.parametrize("xs", [(400.0, 399.0), (-400.0, -401.0)])
def test_softmax_grads_stay_right_where_eagers_power_overflows(xs):
    """Where eager's s ** -2 (the power's derivative) overflows or
    underflows, its grads lose that term or become -inf; the fused step's
    textbook form stays finite, and a softmax's grads sum to zero."""
    def build(leaves):
        y0, y1 = softmax([v * 1.0 for v in leaves], {0, 1})
        return (y0 * 2.0 + y1) * 1.0
    (f, lf), (u, lu) = graphs(build, xs, inexact=True)
    for g in (f, u):
        g.forward()
        g.backward()
    fused, unfused = [v.grad for v in lf], [v.grad for v in lu]
    assert all(math.isfinite(g) for g in fused) and abs(sum(fused)) < 1e-15
    assert math.isclose(fused[0], 0.19661193324148185, rel_tol=1e-12)
    assert not all(math.isfinite(g) for g in unfused) or abs(sum(unfused)) > 1.0
