"""Graphs that travel: a Graph as bytes and back (what pickle uses), and a
captured graph's nodes as Values.

    blob = pickle.dumps(graph)        # the program, the sources' data, grads, labels
    g2 = pickle.loads(blob)           # in this process or any other
    x, y = g2.sources[:2]             # the sources, in the same (program) order
    g2.run(inputs=[x, y], rows=...)   # the same numbers, bit for bit

The bytes are C's (ag_graph_save, format in csrc/serialize.c): a versioned
header with a CRC-32, then one record per node.  Loading checks all of it
before any node is made, so that bytes cut short, changed or made up raise
ValueError; then the nodes are built by the eager constructors (the values,
Python number types and errors of building the graph anew) and captured.
Labels live in Python and travel beside the bytes, as (position, label).
"""
from ._autograd_c import ffi, lib
from ._session import ctx, fail, retry
from .engine import Value

_ARITHMETIC = (ArithmeticError, ValueError)  # what building a node can raise


def node_values(cgraph, positions):
    """Values of the nodes at the given program positions of cgraph."""
    positions = list(positions)
    handles = ffi.new("int64_t[]", len(positions) or 1)
    status = lib.ag_graph_handles(cgraph, positions, len(positions), handles)
    if status:
        fail(status, "Graph")
    return [Value._from_handle(h) for h in handles[0:len(positions)]]


def source_positions(cgraph):
    """Program positions of cgraph's sources (leaves, opaque nodes)."""
    n = lib.ag_graph_sources(cgraph, ffi.NULL, 0)
    positions = ffi.new("int32_t[]", n or 1)
    lib.ag_graph_sources(cgraph, positions, n)
    return list(positions[0:n])


def to_bytes(cgraph):
    """The saved form of cgraph (ag_graph_save)."""
    size = lib.ag_graph_save(cgraph, ffi.NULL, 0)
    if size < 0:
        fail(size, "pickling a Graph")
    buf = ffi.new("char[]", size)
    written = lib.ag_graph_save(cgraph, buf, size)  # the same size: a program is fixed
    if written < 0:
        fail(written, "pickling a Graph")
    return ffi.buffer(buf, size)[:]


def labels_of(cgraph):
    """(position, label) of every labelled node of cgraph, by position."""
    at = ((lib.ag_graph_position(cgraph, h), text) for h, text in Value._labels())
    return tuple(sorted((p, text) for p, text in at if p >= 0 and text))


def state(graph):
    """The arguments of load() that rebuild graph: (bytes, labels)."""
    return to_bytes(graph._g), labels_of(graph._g)


def _format_error(view):
    """The ValueError for bytes ag_graph_load refused, naming the flaw."""
    why = ffi.new("char **")
    status = lib.ag_graph_check(view, len(view), why)
    flaw = ffi.string(why[0]).decode() if status == lib.AG_ERR_FORMAT and why[0] else (
        "its program is not in the order capture gives")
    return ValueError(f"cannot load a Graph: {flaw}")


def _load_c(blob):
    """The ag_graph * built from blob, freed when it is garbage."""
    try:
        view = ffi.from_buffer(blob)
    except TypeError:
        raise TypeError(f"a saved Graph is bytes, not {type(blob).__name__}") from None
    out = ffi.new("ag_graph **")
    status = lib.ag_graph_load(ctx, view, len(view), out)
    if status == lib.AG_ERR_FORMAT:
        raise _format_error(view)
    if status:
        try:
            retry(status, lib.ag_graph_load, ctx, view, len(view), out)
        except _ARITHMETIC as exc:  # what building it anew raises, as a ValueError
            raise ValueError(f"cannot load a Graph: building its nodes from the saved "
                             f"data fails: {exc}") from exc
    return ffi.gc(out[0], lib.ag_graph_free)


def _checked_labels(labels, n):
    """labels as a list of (position, str), each position in the program."""
    try:
        pairs = [(p, text) for p, text in labels]
    except (TypeError, ValueError):
        raise ValueError("cannot load a Graph: labels must be (position, label) pairs") from None
    for p, text in pairs:
        if type(p) is not int or not 0 <= p < n or not isinstance(text, str):
            raise ValueError(f"cannot load a Graph: bad label entry {(p, text)!r} "
                             f"for a graph of {n} nodes")
    return pairs


def load_parts(blob, labels=()):
    """(C graph, root Value, source Values, labelled Values) of the graph
    saved as blob (bytes of ag_graph_save) with labels ((position, label)
    pairs), for Graph._load.  Raises ValueError for bytes that are no saved
    graph (cut, changed, made up, another version), or whose nodes cannot
    be built from the saved data."""
    cgraph = _load_c(blob)
    n = lib.ag_graph_size(cgraph)
    pairs = _checked_labels(labels, n)
    sources = source_positions(cgraph)
    wanted = sorted({*sources, n - 1, *(p for p, _ in pairs)})
    values = dict(zip(wanted, node_values(cgraph, wanted)))
    for p, text in pairs:
        values[p].label = text
    return (cgraph, values[n - 1], tuple(values[p] for p in sources),
            tuple(values[p] for p, _ in pairs))
