"""Batched runs of a captured graph (Graph.run): against per-row
forward/backward loops, grads of inner nodes and of the root, threads=,
rows as sequences, array.array and numpy buffers (every numeric dtype,
strided views, converted by numpy and by struct as without numpy; formats
that are not numbers refused), out=, errors that change nothing, float
semantics."""
import array
import ctypes
import math
import random
import re

import pytest

import autograd_c as ag
from autograd_c import graph as graph_module
from autograd_c import Graph, Params, Value
from support import bits

try:
    import numpy as np
except ImportError:  # the suite runs without numpy; the numpy cases are then skipped
    np = None

needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed")


def hinge_graph(sizes=(16, 16, 1), seed=0):
    """x (2 input leaves), y, model, loss = (1 + -y * model(x)).relu()."""
    random.seed(seed)
    x = [Value(0.0), Value(0.0)]
    y = Value(0.0)
    model = ag.nn.MLP(2, list(sizes))
    loss = (1 + -y * model(x)).relu()
    return x, y, model, loss


def random_rows(n, seed=1):
    rng = random.Random(seed)
    return [[rng.uniform(-1.5, 2.5), rng.uniform(-1, 1.5), rng.choice([-1.0, 1.0])]
            for _ in range(n)]


def per_row_loop(g, inputs, rows, params):
    """Outputs and summed grads from forward/backward per row."""
    for p in params:
        p.grad = 0
    outs = []
    for row in rows:
        for v, c in zip(inputs, row):
            v.data = c
        outs.append(g.forward())
        g.backward()
    return outs, [p.grad for p in params]


def assert_close_lists(xs, ys, rel=1e-12, abs_tol=1e-12):
    assert len(xs) == len(ys)
    for a, b in zip(xs, ys):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol), (a, b)


@pytest.mark.parametrize("n_rows", [1, 5, 64, 100, 130])
def test_run_matches_per_row_forward_backward(n_rows):
    x, y, model, loss = hinge_graph()
    g = Graph(loss)
    params = model.parameters()
    rows = random_rows(n_rows)
    want_out, want_grads = per_row_loop(g, [*x, y], rows, params)
    for p in params:
        p.grad = 0
    data_before = [p.data for p in params]
    out = g.run(inputs=[x[0], x[1], y], rows=rows, grads=params)
    assert out == want_out                      # the same floats, row by row
    assert_close_lists([p.grad for p in params], want_grads)
    assert [p.data for p in params] == data_before
    assert any(gr != 0 for gr in want_grads)


def test_run_adds_into_grads_and_forward_only_without_grads():
    x, y, model, loss = hinge_graph((4, 1))
    g = Graph(loss)
    params = model.parameters()
    rows = random_rows(10)
    for p in params:
        p.grad = 1
    g.run([*x, y], rows, params)
    once = [p.grad for p in params]
    for p in params:
        p.grad = 0
    g.run([*x, y], rows, Params(params))
    assert_close_lists([p.grad + 1 for p in params], once)
    before = [bits(p.grad) for p in params]
    out = g.run([*x, y], rows)                  # no grads: forward only
    assert [bits(p.grad) for p in params] == before
    assert len(out) == 10


def test_run_grads_of_inner_nodes_and_of_the_root():
    a, b = Value(0.0), Value(1.5)
    h = (a * b).tanh()
    r = h * h + a.exp() * b
    g = Graph(r)
    rows = [[v] for v in (-1.0, 0.25, 0.5, 2.0)]
    want = {"h": 0.0, "b": 0.0, "r": 0.0}
    for (v,) in rows:
        a.data = v
        g.forward()
        b.grad = 0
        g.backward()
        want["h"] += h.grad
        want["b"] += b.grad
        want["r"] += r.grad
    for v in (h, b, r):
        v.grad = 0
    g.run([a], rows, [h, b, r])
    assert_close_lists([h.grad, b.grad, r.grad], [want["h"], want["b"], want["r"]])
    assert r.grad == 4.0


@pytest.mark.parametrize("threads", [2, 3, 8, None])
def test_threads_option_gives_the_one_thread_results(threads):
    x, y, model, loss = hinge_graph()
    g = Graph(loss)
    params = model.parameters()
    # enough work for 8 threads: each gets at least 2**18 node-rows
    rows = random_rows(8 * 2**18 // len(g) + 64, seed=7)
    for p in params:
        p.grad = 0
    out1 = g.run([*x, y], rows, params, threads=1)
    grads1 = [p.grad for p in params]
    for p in params:
        p.grad = 0
    out_n = g.run([*x, y], rows, params, threads=threads)
    assert out_n == out1
    assert_close_lists([p.grad for p in params], grads1, rel=1e-10)


def run_grads(g, inputs, rows, params, **kw):
    for p in params:
        p.grad = 0
    out = g.run(inputs, rows, params, **kw)
    return list(out), [p.grad for p in params]


def rows_case():
    """A captured hinge graph, its inputs and parameters, 70 random rows
    and run_grads's answer for them given as a list of lists."""
    x, y, model, loss = hinge_graph((8, 1))
    g = Graph(loss)
    params = model.parameters()
    rows = random_rows(70)
    return g, [*x, y], params, rows, run_grads(g, [*x, y], rows, params)


def test_rows_as_sequences_and_array():
    g, inputs, params, rows, want = rows_case()
    x, y = inputs[:-1], inputs[-1]
    assert run_grads(g, [*x, y], [tuple(r) for r in rows], params) == want
    assert run_grads(g, [*x, y], (iter(r) for r in rows), params) == want
    flat = array.array("d", [c for r in rows for c in r])
    assert run_grads(g, [*x, y], flat, params) == want
    buf = array.array("d", [0.0] * 70)
    assert g.run([*x, y], flat, out=buf) is buf and list(buf) == want[0]
    with pytest.raises(ValueError):
        g.run([*x, y], flat, out=array.array("d", [0.0] * 69))
    ints = [[int(c) for c in r] for r in rows]      # ints are numbers too
    assert run_grads(g, [*x, y], ints, params)[0] == run_grads(
        g, [*x, y], [[float(c) for c in r] for r in ints], params)[0]


@needs_numpy
def test_rows_as_numpy_arrays():
    g, inputs, params, rows, want = rows_case()
    x, y = inputs[:-1], inputs[-1]
    X = np.array(rows, dtype=np.float64)
    assert run_grads(g, [*x, y], X, params) == want
    wide = np.zeros((70, 5))
    wide[:, 1:4] = X
    assert run_grads(g, [*x, y], wide[:, 1:4], params) == want  # strided: copied
    out = np.empty(70)
    assert g.run([*x, y], X, out=out) is out
    assert list(out) == want[0]
    for bad, exc in [(np.empty(70, dtype=np.float32), TypeError), (np.empty(69), ValueError),
                     (np.empty((70, 2))[:, 0], TypeError), (b"\0" * 560, TypeError)]:
        with pytest.raises(exc):
            g.run([*x, y], X, out=bad)

    X32 = X.astype(np.float32)
    got = run_grads(g, [*x, y], X32, params)
    assert got == run_grads(g, [*x, y], X32.astype(np.float64).tolist(), params)


# -- buffers of any numeric format: converted to doubles, as floats would be --

@pytest.fixture(params=["numpy", "struct"])
def converter(request, monkeypatch):
    """Each buffer case twice: converted by numpy (when installed), and by
    struct, the way it goes without numpy."""
    if request.param == "numpy":
        pytest.importorskip("numpy")
    else:
        monkeypatch.setattr(graph_module, "_numpy", lambda: None)
    return request.param


def cells_for(code, rows):
    """rows as numbers a buffer of struct/array code can hold: the floats
    for a float code, ints in -60..100 (0..100 unsigned), bools."""
    kind = code.lstrip("<>=!@")[0]
    if kind in "efdg":
        return rows
    if kind == "?":
        return [[c > 0.3 for c in r] for r in rows]
    ints = [[round(c * 40) for c in r] for r in rows]
    return [[abs(c) for c in r] for r in ints] if kind.isupper() else ints


def as_floats(cells):
    """A buffer's items (tolist()) as the list of lists of floats they stand for."""
    return [[float(c) for c in r] for r in cells]


def same_bits(got, want):
    """run_grads results equal bit for bit (outputs and grads)."""
    return [[bits(v) for v in part] for part in got] == [[bits(v) for v in part] for part in want]


NUMERIC_DTYPES = [">f8", "e", ">e", "f", ">f4", "b", "h", ">h", "i", "q", ">i8",
                  "B", "H", "I", ">u4", "Q", "?"]


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_rows_of_every_numeric_dtype_are_converted(dtype, converter):
    """Before: '>f8' and float16 raised a TypeError (memoryview.tolist
    cannot read them); now every numeric dtype runs as its rows given as
    lists of floats do, bit for bit."""
    np = pytest.importorskip("numpy")
    g, inputs, params, rows, _ = rows_case()
    X = np.array(cells_for(np.dtype(dtype).char, rows), dtype=dtype)
    want = run_grads(g, inputs, as_floats(X.tolist()), params)
    assert same_bits(run_grads(g, inputs, X, params), want)
    assert same_bits(run_grads(g, inputs, X.ravel(), params), want)   # flat 1-D


def test_rows_of_long_double_need_numpy(converter):
    np = pytest.importorskip("numpy")
    g, inputs, params, rows, _ = rows_case()
    X = np.array(rows, dtype=np.longdouble)
    want = run_grads(g, inputs, as_floats(X.astype(np.float64).tolist()), params)
    if converter == "numpy":
        assert same_bits(run_grads(g, inputs, X, params), want)
    else:
        with pytest.raises(TypeError, match=r"format 'g'.*pip install numpy"):
            g.run(inputs, X, params)


@pytest.mark.parametrize("dtype", ["d", "f", "q", ">i2", "?"])
def test_rows_as_non_contiguous_numpy_views(dtype, converter):
    np = pytest.importorskip("numpy")
    g, inputs, params, rows, _ = rows_case()
    X = np.array(cells_for(np.dtype(dtype).char, rows), dtype=dtype)
    want = run_grads(g, inputs, as_floats(X.tolist()), params)
    wide = np.zeros((70, 6), dtype=dtype)
    wide[:, ::2] = X
    tall = np.ascontiguousarray(X.T)                    # (3, 70): .T is the rows again
    flat = np.zeros(420, dtype=dtype)
    flat[1::2] = X.ravel()
    backwards = X[::-1].copy()                           # [::-1] of it: negative strides
    for view in (wide[:, ::2], tall.T, flat[1::2], backwards[::-1]):
        assert not view.flags.c_contiguous
        assert same_bits(run_grads(g, inputs, view, params), want)


@pytest.mark.parametrize("typecode", ["b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "f", "d"])
def test_rows_as_array_array_of_every_typecode(typecode, monkeypatch):
    """No numpy: array.array rows of each typecode, contiguous and strided
    (a memoryview slice), converted by struct."""
    monkeypatch.setattr(graph_module, "_numpy", lambda: None)
    g, inputs, params, rows, _ = rows_case()
    flat = array.array(typecode, [c for r in cells_for(typecode, rows) for c in r])
    want = run_grads(g, inputs, as_floats(zip(*[iter(flat.tolist())] * 3)), params)
    assert same_bits(run_grads(g, inputs, flat, params), want)
    doubled = array.array(typecode, [c for c in flat for _ in (0, 1)])
    assert same_bits(run_grads(g, inputs, memoryview(doubled)[::2], params), want)


def test_rows_of_formats_that_are_not_numbers_are_refused(converter):
    """A TypeError naming the dtype or the buffer format, before anything changes."""
    g, inputs, params, rows, _ = rows_case()
    for p in params:
        p.grad = 0.25

    class Record(ctypes.Structure):
        _fields_ = [("a", ctypes.c_double), ("b", ctypes.c_int)]

    cases = [((Record * 210)(), r"format 'T\{")]
    if converter == "numpy":
        import numpy as np
        cases += [(np.zeros((70, 3), dtype=complex), r"dtype complex128 \(format 'Zd'\)"),
                  (np.zeros((70, 3), dtype=object), r"dtype object \(format 'O'\)"),
                  (np.zeros(210, dtype=[("a", "f8"), ("b", "i4")]), r"format 'T\{"),
                  (np.zeros((70, 3), dtype="V8"), r"dtype \|V8 \(format '8x'\)")]
    for bad, match in cases:
        with pytest.raises(TypeError, match=match):
            g.run(inputs, bad, params)
        assert all(bits(p.grad) == bits(0.25) for p in params)


def test_rows_at_a_misaligned_address_are_read_through_a_copy(converter):
    """float64 rows whose address is no multiple of 8 (a slice of a
    bytearray, of a pickle frame as Dask hands them over) give the bits of
    aligned rows: C never reads a misaligned double."""
    g, inputs, params, rows, want = rows_case()
    shifted = memoryview(bytearray(1 + 8 * 210))[1:].cast("d")
    shifted[:] = array.array("d", [c for r in rows for c in r])
    assert run_grads(g, inputs, shifted, params) == want


def test_out_must_be_writable_contiguous_native_float64_and_says_what_it_got():
    g, inputs, params, rows, _ = rows_case()
    cases = [(array.array("f", [0.0] * 70), r"format 'f'"),
             (memoryview(bytearray(1 + 560))[1:].cast("d"), r"format 'd', not 8-byte aligned"),
             (b"\0" * 560, r"format 'B', read-only"),
             (memoryview(array.array("d", [0.0] * 140))[::2], r"format 'd', not C-contiguous")]
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        cases += [(np.zeros(70, dtype=np.float32), r"dtype float32 \(format 'f'\)"),
                  (np.zeros(70, dtype=">f8"), r"dtype >f8 \(format '>d'\)"),
                  (np.zeros((70, 2))[:, 0], r"dtype float64 \(format 'd'\), not C-contiguous")]
    said = re.escape("out must be a writable C-contiguous native float64 buffer; got one of ")
    for bad, what in cases:
        with pytest.raises(TypeError, match=f"^{said}{what}$"):
            g.run(inputs, rows, out=bad)


def test_run_errors_change_nothing():
    x, y, model, loss = hinge_graph((4, 1))
    g = Graph(loss)
    params = model.parameters()
    for p in params:
        p.grad = 0.5
    hidden = model.layers[0](x)[0]               # a node of another graph
    inner = [v for v in model.parameters()][0] * x[0]
    g.forward()
    state = [(bits(v.data), bits(v.grad)) for v in params + x + [y, loss]]
    rows = random_rows(5)
    other = Value(1.0)
    cases = [
        (ValueError, dict(inputs=[x[0], other, y], rows=rows)),          # not in graph
        (ValueError, dict(inputs=[x[0], x[1], loss], rows=rows)),        # not a leaf
        (ValueError, dict(inputs=[x[0], x[0], y], rows=rows)),           # twice
        (ValueError, dict(inputs=[*x, y], rows=[[1.0, 2.0]] * 3)),      # short rows
        (ValueError, dict(inputs=[*x, y], rows=rows + [[1.0, 2.0, 3.0, 4.0]])),
        (ValueError, dict(inputs=[*x, y], rows=array.array("d", [1.0] * 7))),
        (TypeError, dict(inputs=[*x, y], rows=[[1.0, "2", 3.0]])),
        (TypeError, dict(inputs=[*x, y], rows=[[1.0, None, 3.0]])),
        (TypeError, dict(inputs=[*x, y], rows=[1.0, 2.0, 3.0])),
        (TypeError, dict(inputs=[x[0], 3.0, y], rows=rows)),
        (ValueError, dict(inputs=[*x, y], rows=rows, grads=[hidden])),
        (ValueError, dict(inputs=[*x, y], rows=rows, grads=[inner])),
        (ValueError, dict(inputs=[*x, y], rows=rows, grads=params + params[:1])),
        (ValueError, dict(inputs=[*x, y], rows=rows, grads=params, threads=0)),
    ]
    for exc, kw in cases:
        kw.setdefault("grads", params)
        with pytest.raises(exc):
            g.run(**kw)
        assert [(bits(v.data), bits(v.grad)) for v in params + x + [y, loss]] == state, kw
    if np is not None:
        with pytest.raises(ValueError):
            g.run([*x, y], np.zeros((4, 2)), params)
        with pytest.raises(ValueError):
            g.run([*x, y], np.zeros((2, 2, 3)), params)
        with pytest.raises(TypeError):
            g.run([*x, y], np.array([[1, "a", 2]], dtype=object), params)


def test_run_without_rows_and_single_leaf_graph():
    a = Value(2.5)
    g = Graph(a)
    assert len(g) == 1 and g.forward() == 2.5
    a.grad = 0
    out = g.run([a], [[1.0], [2.0], [-3.0]], [a])
    assert out == [1.0, 2.0, -3.0] and a.grad == 3.0
    assert g.run([a], [], [a]) == [] and a.grad == 3.0
    assert a.data == 2.5


def test_batched_float_semantics_are_documented_ones():
    x = Value(1.0)
    y = x.log()
    g = Graph(y)
    out = g.run([x], [[-1.0], [0.0], [math.e]])
    assert math.isnan(out[0]) and out[1] == -math.inf and out[2] == 1.0
