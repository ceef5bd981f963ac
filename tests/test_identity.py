"""_prev gives back the objects you hold: while a Value of a node is alive,
_prev returns that very object, so walks that name nodes by id() -- as
micrograd's trace_graph notebook's draw_dot does -- see micrograd's graph.
Each walk runs on micrograd's Value and on ours and is compared."""
import gc
import math

from hypothesis import given, settings

from autograd_c import Value, enable_grad, no_grad
from autograd_c.nn import MLP
from micrograd.engine import Value as MV
from support import live_nodes, programs, readme_graph, run_program


def notebook_trace(root):
    """micrograd's trace_graph.ipynb: the nodes and edges draw_dot draws."""
    nodes, edges = set(), set()

    def build(v):
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                build(child)
    build(root)
    return nodes, edges


def drawn(root):
    """(boxes, arrows, stray boxes) of draw_dot's picture: it names a node by
    id(), so an edge to an object that is not in `nodes` draws a stray box."""
    nodes, edges = notebook_trace(root)
    ids = {id(n) for n in nodes}
    stray = {id(x) for e in edges for x in e} - ids
    return len(nodes), len(edges), len(stray)


def tour(V):
    """The README's tour graph."""
    g, a, b, *_ = readme_graph(V)
    return g, (a, b)


def test_prev_returns_the_operands_themselves():
    a, b = Value(2.0), Value(3.0)
    c = a * b + a
    (m,) = [k for k in c._prev if k is not a]
    assert any(k is a for k in c._prev)
    assert {id(k) for k in m._prev} == {id(a), id(b)}
    assert m._prev == m._prev and [id(k) for k in m._prev] == [id(k) for k in m._prev]


def test_the_tour_graph_draws_as_micrographs():
    ours, (a, b) = tour(Value)
    theirs, _ = tour(MV)
    assert drawn(ours) == drawn(theirs)
    assert drawn(ours)[2] == 0
    nodes, _ = notebook_trace(ours)
    assert any(n is a for n in nodes) and any(n is b for n in nodes)


def test_a_node_without_a_value_gets_one_that_stays():
    """The constant of `x * 2` never had a Value (C made its node): _prev
    makes one, and gives that same object on every later call."""
    x = Value(1.5)
    y = (x * 2).relu()
    gc.collect()
    (mid,) = y._prev
    (const,) = [k for k in mid._prev if k is not x]
    assert const.data == 2 and any(k is x for k in mid._prev)
    assert all(any(k is const for k in mid._prev) for _ in range(3))
    assert drawn(y) == drawn((MV(1.5) * 2).relu())


class Tagged(Value):
    """A subclass adding an attribute and its own repr."""

    def __repr__(self):
        return f"Tagged({self.data})"


def test_subclass_objects_and_labels_come_back_through_prev():
    w = Tagged(0.5, label="w")
    x = Value(2.0, label="x")
    y = w * x
    kinds = {type(k).__name__: k for k in y._prev}
    assert kinds["Tagged"] is w and repr(kinds["Tagged"]) == "Tagged(0.5)"
    assert {k.label for k in y._prev} == {"w", "x"}


def test_layers_made_in_c_lead_back_to_the_parameters():
    """nn's layers build their sums in C: _prev still reaches the model's own
    parameter and input objects, the same object each walk."""
    model = MLP(2, [3, 1])
    x = [Value(0.5), Value(-1.0)]
    out = model(x)
    nodes, edges = notebook_trace(out)
    held = {id(p) for p in model.parameters()} | {id(v) for v in x}
    assert held <= {id(n) for n in nodes}
    assert drawn(out)[2] == 0 and drawn(out)[:2] == (len(nodes), len(edges))


@settings(max_examples=40, deadline=None)
@given(programs(3, 12))
def test_random_graphs_draw_as_micrographs(program):
    ours = run_program(Value, program)
    theirs = run_program(MV, program, plan=ours)
    assert drawn(ours.root) == drawn(theirs.root)
    assert drawn(ours.root)[2] == 0


# --------------------------------------------------------------------------
# the user's own ops under no_grad: nothing recorded, as for built-in ops

def test_results_under_no_grad_keep_no_operands(live_baseline):
    """No graph, so nothing for _prev to give back: a chain computed under
    no_grad keeps no Values (or nodes) of its steps alive."""
    x = Value(1.0)
    with no_grad():
        h = x
        for _ in range(1000):
            h = (h * 1.0001).relu() + 0.5
        with enable_grad():
            kept = h * 2  # recording again: keeps its operand
    assert live_nodes() == live_baseline + 4  # x, h, kept, its constant 2
    assert any(k is h for k in kept._prev)


def test_user_op_under_no_grad_records_nothing():
    x = Value(2.0)
    with no_grad():
        out = Value(x.data * 3, (x,), "triple")

        def rule():
            x.grad += 3 * out.grad
        out._backward = rule  # accepted, as micrograd code sets it
        y = out * 2
    assert out._prev == set() and out._op == "triple" and y._prev == set()
    out.backward()
    (out * 2 + x).backward()
    assert x.grad == 1  # through `+ x` only: the rule is not part of any graph
    out._backward()  # a node without children: its rule is nothing to apply
    assert x.grad == 1


# --------------------------------------------------------------------------
# any attribute, as on micrograd's Value

def momentum_training(V, steps=5):
    """A hand-written optimizer keeping its state on the parameters, as users
    of micrograd write one (`p.m`)."""
    w, b = V(0.3), V(-0.2)
    for p in (w, b):
        p.m = 0.0
    losses = []
    for _ in range(steps):
        loss = sum(((w * x + b - 2 * x) ** 2 for x in (0.5, 1.0, 1.5)), V(0))
        for p in (w, b):
            p.grad = 0
        loss.backward()
        for p in (w, b):
            p.m = 0.9 * p.m + p.grad
            p.data -= 0.05 * p.m
        losses.append(loss.data)
    return losses, (w.m, b.m)


def test_a_hand_written_optimizer_keeps_its_state_on_the_values():
    """The same numbers, up to the order grads are summed in (micrograd's is
    set order, see the README)."""
    ours, theirs = momentum_training(Value), momentum_training(MV)
    flat = [x for part in ours for x in part], [x for part in theirs for x in part]
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(*flat))


def test_user_attributes_go_where_the_value_goes():
    import copy
    import pickle
    p = Value(1.5, label="p")
    p.m, p.note = 0.25, "mine"
    assert vars(p) == {"_label": "p", "m": 0.25, "note": "mine"}
    q = pickle.loads(pickle.dumps(p))
    assert (q.data, q.label, q.m, q.note) == (1.5, "p", 0.25, "mine")
    r = copy.copy(p * 2)
    r.extra = 1
    s = copy.copy(r)
    assert s.extra == 1 and s is not r and s.data == 3.0
    del p.m
    assert not hasattr(p, "m")
