"""The grads a compiled replay does not store (csrc/compiled.c:
inner_grads): after a forward the fused steps' inner members' grads are
int 0s nobody wrote; after one backward a softmax's inner members' (its exps, sums and
power) are found, when asked, from its outputs' grads kept by the step.

Here the passes run with nobody looking inside the graph -- only the
leaves, which the test holds, are read and written -- so the fused steps
keep their members and those grads stay unstored; then the test looks
(every node through _prev), in each state, and compares with the unfused
program (AG_GRAPH_UNFUSED) run the same way: bit for bit where the fused
step does its members' operations (softplus, every mode), to a tolerance
where it sums in another order (softmax, exact=False only)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograd_c import Graph, Value
from autograd_c._autograd_c import lib
from support import bits, forked_child_succeeds, replaying
from test_graph_compiled import state
from test_graph_fusion import forward_with
from test_graph_patterns import close, graphs, pieces, program, softmax_net, softplus_net


def leaf_pass(g, leaves, values, backwards=1):
    """New leaf data, forward, the leaves' grads zeroed, `backwards`
    backwards; the exception's type, or the leaves' and the root's data
    and grads.  Only what the test holds is read: no node inside is."""
    failed = forward_with(g, leaves, values)
    if failed:
        return failed
    for leaf in leaves:
        leaf.grad = 0
    for _ in range(backwards):
        g.backward()
    return [(bits(v.data), bits(v.grad)) for v in list(leaves) + [g.root]]


def agree(ours, theirs, inexact):
    return close(ours, theirs, rel=1e-9) if inexact else ours == theirs


def both(pair, values, backwards, inexact):
    """leaf_pass on both graphs of pair (graphs()); whether they agree."""
    (f, lf), (u, lu) = pair
    return agree(leaf_pass(f, lf, values, backwards),
                 leaf_pass(u, lu, values, backwards), inexact)


def looks_agree(pair, inexact):
    (f, _), (u, _) = pair
    return agree(state(f.root), state(u.root), inexact)


NETS = [("softplus", softplus_net, (0.5, -1.0, 2.0), False),
        ("softplus inexact", softplus_net, (0.5, -1.0, 2.0), True),
        ("softmax 4", softmax_net(4, {0, 1, 2, 3}, 1), [0.3, -1.2, 2.5, 0.0, 1.0, -0.5],
         True),
        ("softmax missing outputs", softmax_net(5, {1, 3}, 1),
         [0.3, -1.2, 2.5, 0.0, 1.0, -0.5], True),
        ("softmax shared inputs", softmax_net(6, {0, 5}, 2),
         [0.3, -1.2, 2.5, 0.0, 1.0, -0.5], True)]


@pytest.mark.parametrize("name, build, values, inexact", NETS, ids=[n[0] for n in NETS])
@pytest.mark.parametrize("backwards", [0, 1, 2])
def test_unlooked_passes_then_a_look(name, build, values, inexact, backwards):
    """Passes nobody looks into, then a look in the state they leave: after
    a forward alone (every op node's grad an unstored int 0), one backward
    (a softmax's inner grads found from its outputs'), two (accumulated)."""
    pair = graphs(build, values, inexact)
    shifted = [v * 0.5 + 0.1 for v in values]
    for vals in (values, shifted, values):
        assert both(pair, vals, 1, inexact)
    assert both(pair, shifted, backwards, inexact)
    assert looks_agree(pair, inexact)
    for vals in (values, shifted):         # the looked-at members left their steps
        assert both(pair, vals, 1, inexact)
        assert looks_agree(pair, inexact)


@pytest.mark.parametrize("name, build, values, inexact", NETS, ids=[n[0] for n in NETS])
def test_an_eager_backward_reaching_inside_after_a_pass(name, build, values, inexact):
    """An eager backward from a new node on the root reaches the graph's
    private nodes: they are all written back first (the softmax's inner
    grads found then), and accumulate as eager's."""
    pair = graphs(build, values, inexact)
    for (g, leaves) in pair:
        leaf_pass(g, leaves, values)
        (g.root * 2.0).backward()
    assert looks_agree(pair, inexact)


def test_options_changed_after_an_unlooked_backward():
    """exact=False to exact and back between passes: the steps are remade,
    the softmax's unstored grads stored first."""
    values = [0.3, -1.2, 2.5, 0.0, 1.0, -0.5]
    pair = graphs(softmax_net(4, {0, 2, 3}, 1), values, inexact=True)
    (f, lf), (u, lu) = pair
    leaf_pass(f, lf, values)
    leaf_pass(u, lu, values)
    assert lib.ag_graph_set_options(f._g, 0) == 0
    assert lib.ag_graph_set_options(u._g, lib.AG_GRAPH_UNFUSED) == 0
    assert looks_agree(pair, True)
    assert both(pair, values, 1, False)
    assert lib.ag_graph_set_options(f._g, lib.AG_GRAPH_INEXACT) == 0
    assert lib.ag_graph_set_options(u._g, lib.AG_GRAPH_UNFUSED | lib.AG_GRAPH_INEXACT) == 0
    assert both(pair, values, 2, True)
    assert looks_agree(pair, True)


def test_a_look_at_one_inner_member_only():
    """Looking at a single exp of a softmax after a backward: its grad is
    found from the outputs' kept grads; the rest stay unlooked until the
    next pass compares the leaves."""
    values = [0.3, -1.2, 2.5, 0.0, 1.0, -0.5]
    made = []
    for options in (0, 1):
        leaves = [Value(v) for v in values]
        xs = [leaves[j] * (1 + 0.25 * j) for j in range(4)]
        e = [x.exp() for x in xs]
        total = e[0] + e[1] + e[2] + e[3]
        inv = total ** -1
        root = e[1] * inv * 2.0 + e[3] * inv * leaves[5]
        g = Graph(root, exact=False)
        if options:
            assert lib.ag_graph_set_options(
                g._g, lib.AG_GRAPH_UNFUSED | lib.AG_GRAPH_INEXACT) == 0
        held = e[2]                        # a member nobody reads before the end
        del xs, e, total, inv, root
        made.append((g, leaves, held))
    (f, lf, fe), (u, lu, ue) = made
    assert close(leaf_pass(f, lf, values), leaf_pass(u, lu, values), rel=1e-9)
    assert close([(bits(fe.data), bits(fe.grad))], [(bits(ue.data), bits(ue.grad))])
    assert close(leaf_pass(f, lf, values, 2), leaf_pass(u, lu, values, 2), rel=1e-9)
    assert close([(bits(fe.data), bits(fe.grad))], [(bits(ue.data), bits(ue.grad))])


@settings(max_examples=60, deadline=None)
@given(spec=pieces, values=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
       backwards=st.integers(0, 2), inexact=st.booleans())
def test_random_programs_unlooked_then_looked(spec, values, backwards, inexact):
    pair = graphs(program(spec), [0.5] * 4, inexact)
    for vals in (values, values[1:] + values[:1]):
        (f, lf), (u, lu) = pair
        ours, theirs = leaf_pass(f, lf, vals, backwards), leaf_pass(u, lu, vals, backwards)
        assert agree(ours, theirs, inexact)
    if isinstance(ours, list):
        assert looks_agree(pair, inexact)


def test_a_forked_child_finds_the_softmax_grads_kept_unstored():
    """fork() right after an unlooked backward (a softmax's inner grads kept
    as its outputs' grads), while another thread replays another graph and
    holds the locks now and then: the child works them out and reads every
    node as the unfused program has it."""
    values = [0.3, -1.2, 2.5, 0.0, 1.0, -0.5]
    pair = graphs(softmax_net(4, {0, 1, 3}, 1), values, inexact=True)
    (f, lf), (u, lu) = pair
    leaf_pass(f, lf, values)
    leaf_pass(u, lu, values)
    expected = state(u.root)
    other, _ = graphs(softmax_net(5, {1, 2}, 1), values, inexact=True)[0]
    with replaying(other):
        for _ in range(5):
            assert forked_child_succeeds(lambda: close(state(f.root), expected))
    assert close(state(f.root), expected)


@pytest.mark.parametrize("inexact", [False, True])
def test_an_inner_member_an_int_before_the_forward_is_a_float_after(inexact):
    """A member's arena node holding an int (set before capture) is read
    into the graph as an int; after a forward the fused step's member is
    the float it computed, as the unfused program's (found by fuzzing)."""
    def build(leaves):
        e = leaves[0].exp()                          # softplus's
        e.data = 3                                   # an int, for now
        softplus = (e + 1).log()
        e0, e1 = leaves[1].exp(), leaves[0].exp()    # softmax's
        total = e0 + e1
        e0.data, total.data = 2, 5
        inv = total ** -1
        m1 = leaves[0] * 1.5                         # a dot chain's
        m1.data = 7
        chain = leaves[1] * 0.25 + m1 + leaves[1] * leaves[0]
        return (e0 * inv * 2.0 + e1 * inv + softplus + chain) * 0.5   # float grads
    pair = graphs(build, (0.5, -1.0), inexact)
    (f, lf), (u, lu) = pair
    assert agree(leaf_pass(f, lf, (0.5, -1.0), 0), leaf_pass(u, lu, (0.5, -1.0), 0),
                 inexact)
    assert looks_agree(pair, inexact)
