"""to_dot / draw_dot: one box per node, one edge per child link, any depth."""
import importlib.util
import re
import sys
import types

import pytest

from autograd_c import Value, draw_dot, to_dot

NODE = re.compile(r'^\t(\w+) \[label="(.*)"( shape=record)?\]$')
EDGE = re.compile(r"^\t(\w+) -> (\w+)$")


def _parse(text):
    """(records {name: label}, op nodes {name: label}, edges [(tail, head)])."""
    lines = text.splitlines()
    assert lines[0] == "digraph {" and lines[-1] == "}"
    records, ops, edges = {}, {}, []
    for line in lines[1:-1]:
        if line.startswith("\tgraph "):
            continue
        m = NODE.match(line)
        if m:
            (records if m.group(3) else ops)[m.group(1)] = m.group(2)
            continue
        m = EDGE.match(line)
        assert m, f"unexpected DOT line {line!r}"
        edges.append((m.group(1), m.group(2)))
    return records, ops, edges


def _example():
    """x shared by three parents, x*x with the same child twice, labels."""
    x = Value(2.0, label="x")
    y = Value(-1, label="y")
    sq = x * x                # one child, linked through both operands
    s = sq + x * y            # x reached again through x*y
    out = (s + x).tanh()      # and a third time
    out.label = "out"
    out.backward()
    return x, y, out


def test_one_box_per_node_and_one_edge_per_child_link():
    x, y, out = _example()
    records, ops, edges = _parse(to_dot(out))
    # nodes: x, y, x*x, x*y, (+ -1 no: y is a Value) sq + xy, s + x, tanh  -> 7
    assert len(records) == 7
    assert len(ops) == 5 and sorted(ops.values()) == ["*", "*", "+", "+", "tanh"]
    assert len(edges) == len(set(edges))
    op_edges = [(t, h) for t, h in edges if t in ops]
    child_edges = [(t, h) for t, h in edges if t in records]
    assert sorted(h for _, h in op_edges) == sorted(n[:-2] for n in ops)  # op -> its node
    # child links: x*x: x; x*y: x, y; +: sq, xy; +: s, x; tanh: s+x  -> 8
    assert len(child_edges) == 8
    x_name = next(n for n, label in records.items() if label.startswith("{ x |"))
    assert sum(1 for t, _ in child_edges if t == x_name) == 3


def test_boxes_show_label_data_and_grad():
    x, y, out = _example()
    records, _, _ = _parse(to_dot(out))
    labels = sorted(records.values())
    assert "{ x | data 2.0000 | grad %.4f }" % x.grad in labels
    assert "{ y | data -1.0000 | grad %.4f }" % y.grad in labels
    assert any(label.startswith("{ out | data %.4f | grad 1.0000" % out.data) for label in labels)


def test_a_shared_subgraph_is_drawn_once():
    a = Value(1.5)
    shared = a.exp()
    root = shared * shared + shared
    records, ops, edges = _parse(to_dot(root))
    assert len(records) == 4  # a, exp, *, +
    assert len([e for e in edges if e[0] in records]) == 4  # a->exp, exp->*, *->+, exp->+


def test_several_roots_and_leaves():
    a, b = Value(1.0), Value(2.0)
    records, ops, edges = _parse(to_dot([a + b, a * b, a]))
    assert (len(records), len(ops)) == (4, 2)
    records, ops, edges = _parse(to_dot(Value(3)))
    assert (len(records), ops, edges) == (1, {}, [])


def test_record_labels_are_escaped():
    v = Value(1.0, label='a{b}|c<d>"e\\f\nnext')
    records, _, _ = _parse(to_dot(v))
    (label,) = records.values()
    assert label == '{ a\\{b\\}\\|c\\<d\\>\\"e\\\\f\\nnext | data 1.0000 | grad 0.0000 }'


def test_a_user_op_without_a_name_links_straight_to_its_node():
    a = Value(2.0)
    opaque = Value(5.0, (a,), "")
    named = Value(6.0, (a,), 'my "op"')
    records, ops, edges = _parse(to_dot([opaque, named]))
    assert list(ops.values()) == ['my \\"op\\"']
    assert (f"n{a._i}", f"n{opaque._i}") in edges
    assert (f"n{a._i}", f"n{named._i}op") in edges


def test_deep_graph_is_traversed_without_recursion():
    x = Value(0.5)
    y = x
    for _ in range(30000):
        y = y + 1
    records, ops, edges = _parse(to_dot(y))
    assert len(records) == 1 + 2 * 30000 and len(ops) == 30000


def test_rankdir_is_checked():
    v = Value(1.0)
    assert "\tgraph [rankdir=TB]" in to_dot(v, rankdir="TB")
    with pytest.raises(ValueError, match="rankdir must be one of"):
        to_dot(v, rankdir="sideways")


# -- draw_dot ---------------------------------------------------------------------

def test_draw_dot_in_this_environment():
    x, y, out = _example()
    if importlib.util.find_spec("graphviz") is None:
        with pytest.raises(ImportError, match=r"pip install 'autograd_c\[viz\]'"):
            draw_dot(out)
    else:
        import graphviz
        dot = draw_dot(out, format="png", rankdir="TB")
        assert isinstance(dot, graphviz.Digraph) and dot.format == "png"
        assert _parse(_unquote(dot.source)) == _parse(to_dot(out, rankdir="TB"))


def _unquote(source):
    """graphviz leaves simple labels unquoted (label=tanh): quote them back."""
    return re.sub(r"label=(\w+)\]", r'label="\1"]', source)


def test_draw_dot_without_graphviz(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz fails
    with pytest.raises(ImportError, match=r"draw_dot needs the graphviz package: "
                                          r"pip install 'autograd_c\[viz\]'"):
        draw_dot(Value(1.0))


def test_draw_dot_with_graphviz(monkeypatch):
    calls = []

    class Digraph:
        def __init__(self, format, graph_attr):
            calls.append(("graph", format, graph_attr))

        def node(self, name, label, **attrs):
            calls.append(("node", name, label, attrs))

        def edge(self, tail, head):
            calls.append(("edge", tail, head))

    fake = types.ModuleType("graphviz")
    fake.Digraph = Digraph
    fake.nohtml = lambda s: ("nohtml", s)
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    x, y, out = _example()
    dot = draw_dot(out, format="pdf")
    assert isinstance(dot, Digraph)
    assert calls[0] == ("graph", "pdf", {"rankdir": "LR"})
    records, ops, edges = _parse(to_dot(out))
    assert {c[1]: c[2] for c in calls if c[0] == "node" and c[3]} == \
        {name: ("nohtml", label) for name, label in records.items()}
    assert all(c[3] == {"shape": "record"} for c in calls if c[0] == "node" and c[3])
    assert {c[1]: c[2] for c in calls if c[0] == "node" and not c[3]} == \
        {name: ("nohtml", label) for name, label in ops.items()}
    assert [c[1:] for c in calls if c[0] == "edge"] == edges
