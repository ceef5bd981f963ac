"""Graphs that travel: pickle.dumps(graph) / pickle.loads (Graph._load, autograd_c._graph_io
over csrc/serialize.c).  A loaded graph, in this process or another, gives
the original's forward(), backward() and run() results bit for bit, node by
node, and lists its sources in the original's order with their labels;
bytes cut at any length, with any bit flipped, or made up (with a right
checksum) raise ValueError and make no node."""
import math
import pickle
import random
import struct
import subprocess
import sys
import zlib

import pytest
from hypothesis import given, settings, strategies as st

import autograd_c
from autograd_c import Graph, Value, no_grad, nn
from autograd_c import _graph_io
from autograd_c._autograd_c import ffi, lib
from support import (ALL_OPS, bits, gc_paused, live_nodes, raised, random_program, run_program,
                     small_number)


def every_node(graph):
    """Values of every node of graph, by program position."""
    return _graph_io.node_values(graph._g, range(len(graph)))


def state(graph):
    """(data bits, grad bits, op) of every node, by program position."""
    return [(bits(v.data), bits(v.grad), v._op) for v in every_node(graph)]


def is_leaf(v):
    return v._node().op == lib.AG_LEAF


def travelled(graph):
    return pickle.loads(pickle.dumps(graph))


def random_graph(seed):
    """A Graph over a random program of every op (support.random_program),
    its root the program's last Value."""
    rng = random.Random(seed)
    while True:
        program = random_program(rng, 4, 14, ops=ALL_OPS,
                                 exponent=lambda r: r.choice([2, 3, -1, 0.5, 1.5]))
        run = run_program(Value, program, root="last")
        if run.root._prev:
            return rng, run, Graph(run.root)


@pytest.mark.parametrize("seed", range(30))
def test_a_loaded_graph_replays_forward_backward_and_run_bit_for_bit(seed):
    rng, run, g = random_graph(seed)
    for leaf in g.sources:
        leaf.grad = rng.choice([0, 1.5, -2])  # source grads travel too
    g2 = travelled(g)
    assert len(g2) == len(g)
    assert [bits(s.data) for s in g2.sources] == [bits(s.data) for s in g.sources]
    assert [bits(s.grad) for s in g2.sources] == [bits(s.grad) for s in g.sources]
    for _ in range(4):
        assert raised(g.forward) == raised(g2.forward)
        if raised(g.forward) is None:
            g.backward()
            g2.backward()
            assert state(g2) == state(g)
        for s1, s2 in zip(g.sources, g2.sources):
            s1.data = s2.data = small_number(rng)
    leaves = [s for s in g.sources if is_leaf(s)]
    leaves2 = [s for s in g2.sources if is_leaf(s)]
    rows = [[small_number(rng) for _ in leaves] for _ in range(70)]
    out1 = g.run(inputs=leaves, rows=rows, grads=g.sources)
    out2 = g2.run(inputs=leaves2, rows=rows, grads=g2.sources)
    assert [bits(x) for x in out2] == [bits(x) for x in out1]
    assert [bits(s.grad) for s in g2.sources] == [bits(s.grad) for s in g.sources]


def test_a_model_trains_the_same_after_travelling():
    """An MLP's loss graph pickled mid-training: the same steps from both."""
    random.seed(3)
    model = nn.MLP(2, [8, 1])
    x = [Value(0.0, label="x0"), Value(0.0, label="x1")]
    y = Value(0.0, label="y")
    loss = (1 + -y * model(x)).relu()
    g = Graph(loss)
    g2 = travelled(g)
    by_label = {s.label: s for s in g2.sources if s.label}
    assert set(by_label) == {"x0", "x1", "y"}
    params = [s for s in g.sources if not s.label]
    params2 = [s for s in g2.sources if not s.label]
    assert [bits(p.data) for p in params2] == [bits(p.data) for p in params]
    rng = random.Random(0)
    for _ in range(5):
        rows = [[rng.uniform(-2, 2), rng.uniform(-2, 2), rng.choice([-1.0, 1.0])] for _ in range(64)]
        for graph, ins, ps in ((g, x + [y], params), (g2, [by_label[k] for k in ("x0", "x1", "y")], params2)):
            for p in ps:
                p.grad = 0
            graph.run(inputs=ins, rows=rows, grads=ps)
            for p in ps:
                p.data -= 0.05 * p.grad
    assert [bits(p.data) for p in params2] == [bits(p.data) for p in params]


def test_a_loaded_graph_is_built_anew_from_its_sources():
    x, k = Value(3, label="x"), Value(-2.5)
    named = Value(1.5, (x, k), "my op \udcff")  # a lone surrogate, as str allows
    named.grad = 0.25
    h = ((x ** 2) * named).tanh() + x * 4
    h.label = "h"
    x.data = 4  # changed since the graph was built: loading computes from it
    g = Graph(h)
    g2 = travelled(g)
    x2 = g2.sources[0]
    assert (x2.label, type(x2.data), x2.data) == ("x", int, 4)
    assert g2.root.label == "h"
    assert [(s._op, bits(s.data), bits(s.grad)) for s in g2.sources] == \
        [(s._op, bits(s.data), bits(s.grad)) for s in g.sources]
    assert {bits(v.data) for v in g2.sources[2]._prev} == {bits(4), bits(-2.5)}
    g.forward()  # the original's op nodes now hold what loading computed
    assert state(g2) == state(g)
    sources = set(g2.sources)
    assert all(bits(v.grad) == bits(0) for v in every_node(g2) if v not in sources)


def test_loading_under_no_grad_still_builds_the_graph():
    x = Value(0.5)
    g = Graph((x * 2).exp() + 1)
    blob = pickle.dumps(g)
    with no_grad():
        g2 = pickle.loads(blob)
    assert len(g2) == len(g) and state(g2) == state(g)


def test_a_graph_travels_to_another_process():
    rng = random.Random(5)
    _, run, g = random_graph(11)
    leaves = [s for s in g.sources if is_leaf(s)]
    positions = [i for i, s in enumerate(g.sources) if is_leaf(s)]
    rows = [[small_number(rng) for _ in leaves] for _ in range(20)]
    code = (
        "import pickle, sys, struct\n"
        "g, positions, rows = pickle.load(sys.stdin.buffer)\n"
        "ins = [g.sources[i] for i in positions]\n"
        "out = g.run(inputs=ins, rows=rows, grads=g.sources)\n"
        "sys.stdout.write(repr([struct.pack('<d', v).hex() for v in out + [s.grad for s in g.sources]]))\n")
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((g, positions, rows)),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    for s in g.sources:
        s.grad = 0
    local = g.run(inputs=leaves, rows=rows, grads=g.sources)
    local += [float(s.grad) for s in g.sources]
    assert eval(proc.stdout.decode()) == [struct.pack("<d", v).hex() for v in local]


# ---- bytes that are no saved graph ----------------------------------------------

def saved_bytes():
    x, y = Value(2.0, label="x"), Value(3)
    g = Graph((x * y + Value(1.5, (x,), "o")).relu() ** 2)
    blob, labels = _graph_io.state(g)
    return g, blob, labels


def test_bytes_cut_at_every_length_are_refused():
    g, blob, labels = saved_bytes()
    before = live_nodes()
    for cut in range(len(blob)):
        with pytest.raises(ValueError, match="cannot load a Graph"):
            Graph._load(blob[:cut], labels)
    assert live_nodes() == before
    assert state(Graph._load(blob, labels)) == state(g)  # whole: it loads


def test_every_flipped_bit_is_refused():
    g, blob, labels = saved_bytes()
    before = live_nodes()
    for bit in range(8 * len(blob)):
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ValueError, match="cannot load a Graph"):
            pickle.loads(pickle.dumps(g).replace(blob, bytes(bad)))
    assert live_nodes() == before


def sealed(n, records, version=1):
    """A saved graph made up: header for n nodes, the records, a right CRC."""
    body = struct.pack("<I", n) + records
    return b"AGCG" + struct.pack("<HHI", version, 0, zlib.crc32(body)) + body


def leaf(v, flags=0, grad=0.0):
    return struct.pack("<BBdd", lib.AG_LEAF, flags, v, grad)


def unary(op, a):
    return struct.pack("<BI", op, a)


MADE_UP = {
    "unknown op code": sealed(2, leaf(1.0) + unary(lib.AG_OP_COUNT, 0)),
    "code 255": sealed(2, leaf(1.0) + unary(255, 0)),
    "forward reference": sealed(2, leaf(1.0) + unary(lib.AG_TANH, 1)),
    "far reference": sealed(2, leaf(1.0) + unary(lib.AG_TANH, 2**32 - 1)),
    "huge count": sealed(2**31 - 1, leaf(1.0)),
    "count beyond int32": sealed(2**32 - 1, leaf(1.0)),
    "zero nodes": sealed(0, b""),
    "trailing bytes": sealed(1, leaf(1.0) + b"\0"),
    "NaN flagged int": sealed(1, leaf(math.nan, 1)),
    "fraction flagged int": sealed(1, leaf(0.5, 1)),
    "inf grad flagged int": sealed(1, leaf(1.0, 2, math.inf)),
    "unknown flags": sealed(1, leaf(1.0, 8)),
    "int exponent NaN": sealed(2, leaf(2.0) + struct.pack("<BIdB", lib.AG_POW_CONST, 0, math.nan, 1)),
    "exponent flag 2": sealed(2, leaf(2.0) + struct.pack("<BIdB", lib.AG_POW_CONST, 0, 2.0, 2)),
    "unreached node": sealed(2, leaf(1.0) + leaf(2.0)),
    "not capture's order": sealed(3, leaf(1.0) + leaf(2.0) + struct.pack("<BII", lib.AG_ADD, 1, 0)),
    "three children": sealed(1, struct.pack("<BBBddI", lib.AG_OPAQUE, 0, 3, 1.0, 0.0, 0)),
    "name with NUL": sealed(1, struct.pack("<BBBddI", lib.AG_OPAQUE, 0, 0, 1.0, 0.0, 3) + b"a\0b"),
    "name not UTF-8": sealed(1, struct.pack("<BBBddI", lib.AG_OPAQUE, 0, 0, 1.0, 0.0, 2) + b"\xc0\xaf"),
    "name longer than the bytes": sealed(1, struct.pack("<BBBddI", lib.AG_OPAQUE, 0, 0, 1.0, 0.0, 99)),
    "another version": sealed(1, leaf(1.0), version=2),
    "log of a negative number": sealed(2, leaf(-1.0) + unary(lib.AG_LOG, 0)),
    "zero to a negative power": sealed(2, leaf(0.0) + struct.pack("<BIdB", lib.AG_POW_CONST, 0, -1.0, 0)),
    "overflow": sealed(2, leaf(1000.0) + unary(lib.AG_EXP, 0)),
}


@pytest.mark.parametrize("name", sorted(MADE_UP))
def test_made_up_bytes_raise_value_error_and_make_nothing(name):
    before = live_nodes()
    with pytest.raises(ValueError, match="cannot load a Graph") as info:
        Graph._load(MADE_UP[name])
    assert len(str(info.value)) > len("cannot load a Graph: ")
    assert live_nodes() == before


def test_the_made_up_format_is_the_real_one():
    g = Graph._load(sealed(2, leaf(2.0, 0, 0.5) + unary(lib.AG_TANH, 0)), [(0, "x")])
    assert g.root.data == math.tanh(2.0) and g.sources[0].label == "x"
    assert g.sources[0].grad == 0.5


def test_bad_labels_and_bad_types_are_refused():
    _, blob, _ = saved_bytes()
    for labels in ([(99, "x")], [(-1, "x")], [(0, 5)], [("0", "x")], [1, 2], None):
        with pytest.raises(ValueError, match="label"):
            Graph._load(blob, labels)
    with pytest.raises(TypeError, match="bytes"):
        Graph._load("AGCG...")


def test_the_node_limit_gives_memory_error_and_makes_nothing():
    g, blob, labels = saved_bytes()
    before = live_nodes()
    autograd_c.set_node_limit(before + 3)
    try:
        with pytest.raises(MemoryError):
            Graph._load(blob, labels)
    finally:
        autograd_c.set_node_limit(0)
    assert live_nodes() == before


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 40))
def test_changed_bytes_with_a_right_checksum_load_whole_or_raise_value_error(edits, cut):
    """A fuzzed loader from Python: bytes changed anywhere past the header's
    checksum, then resealed, either load into a consistent graph or raise
    ValueError -- never anything else, never a crash."""
    _, blob, _ = saved_bytes()
    bad = bytearray(blob[:len(blob) - cut] if cut < len(blob) - 16 else blob)
    for at, byte in edits:
        bad[12 + at % (len(bad) - 12)] = byte
    bad[8:12] = struct.pack("<I", zlib.crc32(bytes(bad[12:])))
    with gc_paused():
        before = live_nodes(collect=False)
        try:
            g = Graph._load(bytes(bad))
        except ValueError:
            assert live_nodes(collect=False) == before
            return
        assert live_nodes(collect=False) == before + len(g)
    assert len(g) == lib.ag_graph_check(bytes(bad), len(bad), ffi.NULL)
    assert _graph_io.state(g)[0] == bytes(bad)  # what loaded saves the same
