"""Captured graphs: build a graph once, replay it in C as often as you like.

    x = [Value(0.0), Value(0.0)]; y = Value(0.0)        # input leaves
    loss = (1 + -y * model(x)).relu()
    g = Graph(loss)                  # capture: a flat C program, once
    for xi, yi in data:
        x[0].data, x[1].data = xi; y.data = yi
        g.forward()                  # recompute every node from its leaves
        model.zero_grad(); g.backward()   # the grads building anew would give

    # many rows at once, in C, vectorised over rows (plain doubles):
    out = g.run(inputs=[x[0], x[1], y], rows=X_rows, grads=model.parameters())

forward() and backward() follow the eager engine bit for bit (Python int and
float types included); run() computes in plain doubles.  Replay touches no
Python object per node and runs with the GIL released, so graphs replay in
parallel Python threads.  Params does the per-parameter loops of a training
step (zero_grad, the SGD update) in one C call each.
"""
import os
import struct
import sys

from . import _graph_io
from ._autograd_c import ffi, lib
from ._session import ctx, fail
from .engine import Value

__all__ = ["Graph", "Params"]

# memoryview formats read in place as C doubles
_DOUBLE_FORMATS = {"d", "@d", "=d", *(("<d",) if sys.byteorder == "little" else (">d", "!d"))}
# buffer formats rows may have: an optional byte order, then the struct code
# of one real number -- bool, a signed or unsigned int, float16/32/64 (and
# long double, which only numpy converts)
_BYTE_ORDERS = "@=<>!"
_REAL_CODES = "?bBhHiIlLqQnNefdg"


def _id_array(values, what):
    """(tuple of the Values, C int32 array of their node ids)."""
    values = tuple(values)
    for i, v in enumerate(values):
        if not isinstance(v, Value):
            raise TypeError(f"{what}[{i}] is a {type(v).__name__}, not a Value")
    return values, ffi.new("int64_t[]", [v._i for v in values] or [0])


class Params:
    """A fixed list of Values (typically model.parameters()) whose training
    loops run in one C call each: zero_grad() and sgd(lr).  Also accepted
    wherever Graph.run takes grads, saving the conversion each call."""

    __slots__ = ("values", "_ids", "_distinct")

    def __init__(self, values):
        self.values, self._ids = _id_array(values, "values")
        self._distinct = len({v._i for v in self.values}) == len(self.values)

    def __len__(self):
        return len(self.values)

    def __iter__(self):
        return iter(self.values)

    def __getitem__(self, i):
        return self.values[i]

    def zero_grad(self):
        """p.grad = 0 (an int, as micrograd's Module.zero_grad sets it) for
        every p: the one zero_grad of Module, Optimizer and the demo."""
        status = lib.ag_zero_grads(ctx, self._ids, len(self.values))
        if status:
            fail(status, "Params.zero_grad")

    def sgd(self, lr):
        """p.data -= lr * p.grad for every p, as micrograd's update loop does
        and with the same bits for a float lr (the data becomes a float):
        the one plain SGD step of the package (optim.SGD without momentum
        or weight decay, train.sgd_step and the demo go through it)."""
        status = lib.ag_sgd(ctx, self._ids, len(self.values), float(lr))
        if status:
            fail(status, "Params.sgd")

    def __repr__(self):
        return f"Params({len(self.values)} values)"


def _flat_doubles(cells, where):
    """A C double array of the numbers in cells (a flat list); where(k) names
    cell k for the TypeError raised when one is not a number."""
    try:
        return ffi.new("double[]", cells or 1)
    except (TypeError, OverflowError):
        for k, x in enumerate(cells):
            try:
                ffi.new("double *", x)
            except TypeError:
                raise TypeError(f"{where(k)} is not a number: {x!r}") from None
            except OverflowError:
                raise OverflowError(f"{where(k)} is too large for a float: {x!r}") from None
        raise


def _buffer_kind(obj, view):
    """What a buffer holds, for a TypeError refusing it: its numpy dtype if
    it has one, and its buffer format ('dtype complex128 (format 'Zd')')."""
    dtype = getattr(obj, "dtype", None)
    fmt = f"format {view.format!r}"
    return f"dtype {dtype} ({fmt})" if dtype is not None else fmt


def _real_format(view):
    """The struct format of one item ('<h', '@e') if the buffer holds one
    bool, int or float per item; None for anything else (complex numbers,
    objects, records, several numbers per item)."""
    fmt = view.format
    order, code = (fmt[0], fmt[1:]) if fmt[:1] in _BYTE_ORDERS else ("@", fmt)
    return order + code if len(code) == 1 and code in _REAL_CODES else None


def _numpy():
    """numpy if it is installed, else None: it converts any numeric buffer
    to doubles in one C loop; without it struct does, item by item."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _struct_doubles(rows, view, fmt):
    """C doubles of every item of a numeric buffer, read with struct from
    a C-ordered copy of its bytes (tobytes follows any strides)."""
    try:
        item = struct.Struct(fmt)
    except struct.error:
        item = None
    if item is None or item.size != view.itemsize:  # long double, or a size struct disagrees with
        hint = " (numpy may: pip install numpy)" if _numpy() is None else ""
        raise TypeError(f"rows is a buffer of {_buffer_kind(rows, view)}, {view.itemsize} bytes "
                        f"an item, which struct cannot read as numbers{hint}")
    data = view.tobytes()
    cells = struct.unpack(f"{fmt[0]}{len(data) // item.size}{fmt[1:]}", data)
    return ffi.new("double[]", cells or 1)


def _converted_doubles(rows, view, fmt):
    """C doubles of a numeric buffer that is not C-contiguous native
    float64: each item converted to a double (a bool to 0 or 1), in row-major
    order whatever the strides and byte order; a new array, the buffer is
    not touched.  numpy converts when it can, struct otherwise."""
    np = _numpy()
    if np is not None:
        try:
            return ffi.from_buffer("double[]", np.array(view, dtype=np.float64, order="C"))
        except (TypeError, ValueError, NotImplementedError):
            pass  # a format numpy does not read ('n', say): struct's turn
    return _struct_doubles(rows, view, fmt)


def _buffer_rows(rows, view, width):
    """(C doubles, row count) for a buffer: 2-D (rows x width) or flat 1-D
    row-major, of bools, ints or floats of any size and byte order, strided
    or not.  C-contiguous native float64 is used in place; anything else is
    converted once (a TypeError names a format that is not numbers)."""
    if view.ndim == 2:
        n, m = view.shape
        if m != width:
            raise ValueError(f"rows has {m} columns, but there are {width} inputs")
    elif view.ndim == 1:
        size = view.shape[0]
        if width == 0 or size % width:
            if size or width:
                raise ValueError(f"a flat buffer of {size} numbers is not whole rows "
                                 f"of {width} (one number per input)")
            return ffi.new("double[]", 1), 0
        n = size // width
    else:
        raise ValueError(f"rows must be a 1-D (flat, row-major) or 2-D buffer, "
                         f"not {view.ndim}-D")
    if view.format in _DOUBLE_FORMATS and view.c_contiguous:
        cells = ffi.from_buffer("double[]", rows)
        if _aligned(cells):
            return cells, n
        # doubles at an address C may not read them from (a slice of a
        # pickle frame): converted, as other buffers are
    fmt = _real_format(view)
    if fmt is None:
        raise TypeError(f"rows is a buffer of {_buffer_kind(rows, view)}, not of numbers "
                        f"(bool, int or float)")
    return _converted_doubles(rows, view, fmt), n


def _sequence_rows(rows, width):
    """(C doubles, row count) for a sequence (or iterable) of rows."""
    cells = []
    n = 0
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            try:
                row = list(row)
            except TypeError:
                raise TypeError(f"rows[{i}] is a {type(row).__name__}, not a sequence "
                                f"of numbers") from None
        if len(row) != width:
            raise ValueError(f"rows[{i}] has {len(row)} numbers, but there are {width} inputs")
        cells += row
        n += 1
    return _flat_doubles(cells, lambda k: f"rows[{k // width}][{k % width}]"), n


def _aligned(cells):
    """Whether C doubles at cells (from ffi.from_buffer) are 8-byte aligned,
    as C must read and write them."""
    return int(ffi.cast("uintptr_t", cells)) % ffi.alignof("double") == 0


def _out_buffer(out, n_rows):
    """C doubles over out: a writable C-contiguous native float64 buffer of
    at least n_rows numbers at an aligned address, written in place (so
    never converted: a TypeError names the dtype or format of any other
    buffer)."""
    with memoryview(out) as view:
        misaligned = view.c_contiguous and not _aligned(ffi.from_buffer(view))
        if (view.readonly or view.format not in _DOUBLE_FORMATS or not view.c_contiguous
                or misaligned):
            flaws = [f for f, bad in [("read-only", view.readonly),
                                      ("not C-contiguous", not view.c_contiguous),
                                      ("not 8-byte aligned", misaligned)] if bad]
            raise TypeError("out must be a writable C-contiguous native float64 buffer; "
                            f"got one of {', '.join([_buffer_kind(out, view), *flaws])}")
        if view.nbytes < 8 * n_rows:
            raise ValueError(f"out holds {view.nbytes // 8} numbers, {n_rows} rows need more")
    return ffi.from_buffer("double[]", out, require_writable=True)


def _as_rows(rows, width):
    try:
        view = memoryview(rows)
    except TypeError:
        return _sequence_rows(rows, width)
    with view:
        return _buffer_rows(rows, view, width)


class Graph:
    """The graph a root Value reaches, captured as a flat program in C.

    Capturing holds a reference on the root, so every captured node stays
    alive (and keeps its identity: your Values see the replayed numbers)
    until the Graph is dropped.  The graph's shape is fixed; what changes
    between replays is the data of its leaves (and of Values built as
    Value(data, children), which replay treats as leaves too).

    A Graph pickles (pickle.dumps(graph)): its program and the data, grads
    and labels of its sources travel; loading builds the graph anew from
    them -- op nodes get the values forward() would give, grad 0 -- and
    checks every byte first (ValueError for bytes cut, changed or made up).
    The loaded graph's sources and root give the same forward(),
    backward() and run() results, bit for bit."""

    __slots__ = ("_g", "_root", "_n", "_cache", "__weakref__")

    def __init__(self, root, *, exact=True):
        """Capture everything root reaches.  exact=False lets forward() and
        backward() compute float powers by cheaper formulas (x ** -1 as
        1 / x, x ** 2 as x * x, ...): values and grads within an ulp or two
        of the exact ones, with the same types and exceptions; the default
        gives the eager engine's results bit for bit."""
        if not isinstance(root, Value):
            raise TypeError(f"Graph needs a Value to capture, not {type(root).__name__}")
        if not isinstance(exact, bool):
            raise TypeError(f"Graph's exact must be True or False, not {exact!r}")
        out = ffi.new("ag_graph **")
        status = lib.ag_graph_new(ctx, root._i, out)
        if status:
            fail(status, "Graph")
        self._own(ffi.gc(out[0], lib.ag_graph_free), root)
        if not exact:
            lib.ag_graph_set_options(self._g, lib.AG_GRAPH_INEXACT)

    def _own(self, cgraph, root):
        """Hold cgraph (an ag_graph * under ffi.gc) whose root is the Value root."""
        self._g = cgraph
        self._root = root
        self._n = lib.ag_graph_size(cgraph)
        self._cache = {}  # "inputs" / "grads" -> (Values, C id array);
        # "sources" -> Values; "labelled" -> the labelled Values of a loaded graph

    @classmethod
    def _load(cls, blob, labels=()):
        """The Graph pickled as (blob, labels) (_graph_io.state): a C graph
        loaded and checked by _graph_io, its Values kept here.  What
        pickle.loads calls; ValueError for bytes that are no saved graph."""
        cgraph, root, sources, labelled = _graph_io.load_parts(blob, labels)
        graph = cls.__new__(cls)
        graph._own(cgraph, root)
        graph._cache["sources"] = sources
        graph._cache["labelled"] = labelled  # keeps the labels
        return graph

    def __reduce__(self):
        """pickle: the bytes of the program and sources (ag_graph_save) and
        the labels; loaded by Graph._load."""
        return Graph._load, _graph_io.state(self)

    def __len__(self):
        """Number of captured nodes."""
        return self._n

    @property
    def root(self):
        return self._root

    @property
    def sources(self):
        """The graph's sources -- its leaves, and Values made as
        Value(data, children) -- as a tuple of Values in program order
        (children before parents, as capture lists them); the leaves among
        them are what run() takes as inputs.  The order depends only on the graph's shape,
        so a pickled and loaded graph lists its sources, and their labels,
        in the original's order: find the inputs there by index or label."""
        hit = self._cache.get("sources")
        if hit is None:
            positions = _graph_io.source_positions(self._g)
            hit = self._cache["sources"] = tuple(_graph_io.node_values(self._g, positions))
        return hit

    def __repr__(self):
        return f"Graph({self._n} nodes, root={self._root!r})"

    def forward(self):
        """Recompute every node from the current data of the leaves, as
        building the graph anew with the same code would: the same floats,
        bit for bit, and the same int/float types.  Every non-leaf node's
        grad becomes int 0, as a freshly built node's; leaves keep theirs.
        Returns the root's data.

        Raises what building anew would raise (ZeroDivisionError,
        OverflowError, ValueError -- e.g. log of a negative number) for the
        first failing node in topological order; then no Value has changed:
        every node keeps the data and grad it had before the call."""
        status = lib.ag_graph_forward(self._g)
        if status:
            fail(status, "Graph.forward")
        return self._root.data

    def backward(self):
        """root.backward(), without re-sorting the graph: root's grad = 1,
        gradients accumulated (never zeroed) into every captured node."""
        status = lib.ag_graph_backward(self._g)
        if status:
            fail(status, "Graph.backward")

    def _ids(self, kind, values):
        """The cached (Values, id array) for inputs or grads."""
        if isinstance(values, Params):
            if not values._distinct:
                raise ValueError(f"{kind} lists a Value twice")
            return values.values, values._ids
        key = tuple(values)
        hit = self._cache.get(kind)
        if hit is not None and hit[0] == key:
            return hit
        key, ids = _id_array(key, kind)
        if len({v._i for v in key}) != len(key):
            raise ValueError(f"{kind} lists a Value twice")
        self._cache[kind] = (key, ids)
        return key, ids

    def run(self, inputs, rows, grads=(), *, threads=1, out=None, row_grads=()):
        """Replay the graph once per row, in C, and return the root's value
        for each row.

        inputs  leaf Values of this graph, distinct; column i of the rows
                feeds inputs[i].  Every other leaf keeps its current data.
        rows    the input values: a sequence of sequences of numbers (rows x
                len(inputs)), or a buffer of numbers -- 2-D (a numpy array) or
                flat row-major 1-D (array.array('d')).  A C-contiguous native
                float64 buffer is read in place, without copying; other
                buffers of bools, ints or floats (any size, byte order or
                strides) are converted to doubles; others raise TypeError.
        grads   Values of this graph (e.g. model.parameters(), or a Params):
                the gradient of the root with respect to each, summed over
                all rows, is ADDED into its .grad, as per-row backward()
                calls would accumulate it (.grad becomes a float).
                No grads: forward only.
        threads split the rows over up to this many threads (None: one per
                CPU); a thread gets at least 2**18 node-rows of work, so a
                small run stays on this thread.  The grads then equal the
                single-threaded ones up to the order of the floating-point
                additions; outputs are equal.
        out     optional writable float64 buffer of len(rows) to fill (and
                return) instead of a new list.
        row_grads  Values of this graph whose gradient is wanted row by row:
                then run returns (outputs, per_row), per_row[r][j] the
                gradient of the root for row r with respect to row_grads[j]
                -- what a run of row r alone gives, bit for bit.  Their
                .grad does not change.  With row_grads, the sums added into
                grads are those of the per-row gradients (equal up to the
                order of the additions).

        Computes in plain doubles, not Python's numbers: no int results and
        no exceptions -- log of x <= 0 gives nan or -inf, overflow inf.  No
        Value's data changes, nor any grad outside grads.  Raises ValueError
        (an input is not a leaf of the graph or is given twice, a grads
        Value is not in the graph, a row has the wrong length) or TypeError
        (a cell is not a number) before anything is computed or changed."""
        in_values, in_ids = self._ids("inputs", inputs)
        grad_values, grad_ids = self._ids("grads", grads)
        row_values = self._ids("row_grads", row_grads)[0] if row_grads else ()
        if row_values:   # the C call takes them after grads, in one array
            grad_ids = _id_array(grad_values + row_values, "grads")[1]
        if threads is None:
            threads = os.cpu_count() or 1
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        width = len(in_values)
        cells, n_rows = _as_rows(rows, width)
        out_buf = ffi.new("double[]", n_rows or 1) if out is None else _out_buffer(out, n_rows)
        n_grads, n_all = len(grad_values), len(grad_values) + len(row_values)
        sums = ffi.new("double[]", n_all or 1)
        per_row = ffi.new("double[]", n_rows * n_all or 1) if row_values else ffi.NULL
        status = lib.ag_graph_run_rows(self._g, in_ids, width, cells, n_rows, width,
                                       grad_ids, n_all, out_buf, sums, per_row, threads)
        if status:
            self._run_error(status, in_values, grad_values, row_values)
        if n_grads:
            status = lib.ag_add_grads(ctx, grad_ids, n_grads, sums)
            if status:
                fail(status, "Graph.run")
        outputs = out if out is not None else ffi.unpack(out_buf, n_rows)
        if not row_values:
            return outputs
        flat = ffi.unpack(per_row, n_rows * n_all)
        return outputs, [flat[r * n_all + n_grads:(r + 1) * n_all] for r in range(n_rows)]

    def _run_error(self, status, inputs, grads, row_grads=()):
        """Raise the exception for a failed run, naming the culprit."""
        for i, v in enumerate(inputs):
            p = lib.ag_graph_position(self._g, v._i)
            if p < 0:
                raise ValueError(f"inputs[{i}] is not a node of this graph")
            if v._node().op not in (lib.AG_LEAF, lib.AG_OPAQUE):
                raise ValueError(f"inputs[{i}] is not a leaf of this graph: it is computed "
                                 f"from other Values (op {v._op!r})")
        for what, values in (("grads", grads), ("row_grads", row_grads)):
            for j, v in enumerate(values):
                if lib.ag_graph_position(self._g, v._i) < 0:
                    raise ValueError(f"{what}[{j}] is not a node of this graph")
        fail(status, "Graph.run")
