"""Fused runs of the compiled replay (csrc/compiled.c: float sums and
products at consecutive program positions run as one step) against the
unfused program (AG_GRAPH_UNFUSED) and against fresh eager builds: data,
grads and their types bit for bit, the same exceptions.  Random programs
(hypothesis) and neuron-shaped ones, where nearly every node is in a run."""
from hypothesis import given, settings
from hypothesis import strategies as st

from autograd_c import Graph, Value
from autograd_c._autograd_c import lib
from support import (ALL_OPS, PYTHON_ERRORS, Run, bits, programs, run_program,
                     steps_reaching)
from test_graph_compiled import ordered_nodes, state, zero_source_grads


def unfused(root):
    g = Graph(root)
    assert lib.ag_graph_set_options(g._g, lib.AG_GRAPH_UNFUSED) == 0
    return g


def forward_with(g, leaves, values):
    """New leaf data, then g's forward: the exception's type, or None."""
    for leaf, v in zip(leaves, values):
        leaf.data = v
    try:
        g.forward()
    except PYTHON_ERRORS as e:
        return type(e)
    return None


def passes(g, leaves, values, twice=False):
    """New leaf data, forward, backward (twice: again, accumulating): the
    exception's type, or the state of every node."""
    failed = forward_with(g, leaves, values)
    if failed:
        return failed
    zero_source_grads(g.root)
    g.backward()
    if twice:
        g.backward()
    return state(g.root)


def builds(program):
    """Two builds of program (only what the root reaches kept by Values:
    the leaves and the root), or None when none is possible."""
    run = run_program(Value, program, root="last")
    steps = steps_reaching(run)
    if not steps:
        return None
    plan = Run()
    plan.outcomes = list(run.outcomes)
    other = run_program(Value, program, root="last", plan=plan, only=steps)
    return (run.leaves, run.root), (other.leaves, other.root)


@settings(max_examples=60, deadline=None)
@given(program=programs((2, 5), (4, 30), ops=ALL_OPS),
       values=st.lists(st.one_of(st.integers(-4, 4), st.floats(-3, 3)), min_size=5,
                       max_size=5))
def test_fused_is_unfused_on_random_programs(program, values):
    made = builds(program)
    if made is None:
        return
    (la, ra), (lb, rb) = made
    fused, plain = Graph(ra), unfused(rb)
    for shift in (0, 1):
        vals = values[shift:] + values[:shift]
        assert passes(fused, la, vals) == passes(plain, lb, vals)


def neurons(draw_layers, leaves):
    """b + w0 * x0 + w1 * x1 + ... chains over leaves and earlier neurons,
    as micrograd's Neuron builds them; the root sums the last layer."""
    pool = list(leaves)
    for width, fan_in, picks in draw_layers:
        layer = []
        for j in range(width):
            act = pool[picks[j] % len(pool)]
            for i in range(fan_in):
                w = pool[(picks[j] + 3 * i + 1) % len(pool)]
                x = pool[(picks[j] * 7 + i) % len(pool)]
                act = act + w * x
            layer.append(act.relu() if j % 2 else act)
        pool += layer
    root = pool[-1]
    for v in pool[-3:-1]:
        root = root + v
    return root


layers = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 6),
                            st.lists(st.integers(0, 50), min_size=4, max_size=4)),
                  min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(shape=layers,
       values=st.lists(st.one_of(st.integers(-3, 3), st.floats(-2, 2)), min_size=6,
                       max_size=6))
def test_fused_neurons_are_unfused_and_eager(shape, values):
    la = [Value(v) for v in values]
    lb = [Value(v) for v in values]
    fused, plain = Graph(neurons(shape, la)), unfused(neurons(shape, lb))
    shifted = values[1:] + values[:1]
    ours = passes(fused, la, shifted)
    assert ours == passes(plain, lb, shifted)
    fresh = neurons(shape, [Value(v) for v in shifted])
    fresh.backward()
    assert ours == state(fresh)
    fused.backward()                         # again: accumulates, as eager
    fresh.backward()
    assert state(fused.root) == state(fresh)


def test_options_are_checked():
    g = Graph(Value(1.0) * 2 + 1)
    assert lib.ag_graph_set_options(g._g, 4) == lib.AG_ERR_ARG
    assert lib.ag_graph_set_options(g._g, lib.AG_GRAPH_UNFUSED) == 0
    assert lib.ag_graph_set_options(g._g, 0) == 0
    assert bits(g.forward()) == bits(3.0)
    assert [bits(v.data) for v in ordered_nodes(g.root)][-1] == bits(3.0)


def float_mlp(leaves, rng, sizes=(5, 4, 1)):
    """An MLP of float Values as micrograd's Neuron builds it (sum(w_i * x_i,
    b), relu): every neuron a dot chain of the compiled program."""
    x = list(leaves)
    for n_out in sizes:
        x = [sum((Value(rng.uniform(-1, 1)) * xi for xi in x), Value(rng.uniform(-1, 1))).relu()
             for _ in range(n_out)]
    return x[0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), looks=st.lists(st.integers(0, 10**6), max_size=3),
       values=st.lists(st.floats(-2, 2), min_size=3, max_size=3))
def test_dot_chains_repeated_backward_and_looks_inside(seed, looks, values):
    """Neurons fused into dot chains: backward twice after one forward (the
    members' grads accumulate, as eager's), an interior node read between
    passes (written back, kept visible), against the unfused program and
    a fresh eager build."""
    import random
    graphs = []
    for vals in (values, values, values[1:] + values[:1]):  # the last: eager's
        leaves = [Value(v) for v in vals]
        graphs.append((leaves, float_mlp(leaves, random.Random(seed))))
    (la, ra), (lb, rb), (_, rc) = graphs
    fused, plain = Graph(ra), unfused(rb)
    inner = [n for n in ordered_nodes(ra) if n._prev]
    for step in range(2):
        for g, leaves in ((fused, la), (plain, lb)):
            for leaf, v in zip(leaves, values[step:] + values[:step]):
                leaf.data = v
            g.forward()
            zero_source_grads(g.root)
            g.backward()
            g.backward()                       # accumulates into every grad
        for k in looks:                        # a look inside: written back
            node = inner[k % len(inner)]
            assert bits(node.grad) == bits(ordered_nodes(rb)[ordered_nodes(ra).index(node)].grad)
        assert state(fused.root) == state(plain.root)
    rc.backward()
    rc.backward()
    assert state(fused.root) == state(rc)


def test_options_changed_after_a_backward_keep_the_neurons_grads():
    """The steps are remade when the options change: grads a dot chain held
    unstored (a backward right after a forward) survive it."""
    import random
    leaves = [Value(v) for v in (0.5, -1.25, 2.0)]
    root = float_mlp(leaves, random.Random(7))
    g = Graph(root)
    g.forward()
    g.backward()                                 # nothing inside read yet
    assert lib.ag_graph_set_options(g._g, lib.AG_GRAPH_UNFUSED) == 0
    fresh = float_mlp([Value(v) for v in (0.5, -1.25, 2.0)], random.Random(7))
    fresh.backward()
    assert state(g.root) == state(fresh)


def test_a_forked_child_reads_the_grads_a_chain_holds_unstored():
    """fork() right after a backward whose dot chains hold their inner
    grads unstored, while another thread replays the graph: the child reads
    every node as the parent's serial run has it."""
    import random
    from support import forked_child_succeeds, replaying
    leaves = [Value(v) for v in (0.5, -1.25, 2.0)]
    root = float_mlp(leaves, random.Random(3))
    fresh = float_mlp([Value(v) for v in (0.5, -1.25, 2.0)], random.Random(3))
    fresh.backward()
    want = state(fresh)
    g = Graph(root)
    g.forward()
    g.backward()
    with replaying(Graph(float_mlp([Value(0.25)] * 3, random.Random(4)))):
        for _ in range(5):
            assert forked_child_succeeds(lambda: state(g.root) == want)
    assert state(g.root) == want

