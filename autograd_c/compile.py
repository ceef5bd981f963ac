"""autograd_c.compile: trace a function once into a Graph, replay it in C.

    @autograd_c.compile
    def step(X, y):                  # numbers in, a Value out
        scores = [model(x) for x in X]
        return sum((1 + -yi * s).relu() for yi, s in zip(y, scores)) * (1.0 / len(y))

    for k in range(100):             # micrograd's loop, unchanged
        loss = step(X, y)            # replayed in C: a fresh Value
        model.zero_grad()
        loss.backward()              # the grads the undecorated step gives
        for p in model.parameters():
            p.data -= 0.1 * p.grad

The first call runs fn on new leaf Values holding the arguments' numbers
(every number of the arguments, and the data of every Value argument) and
captures what the returned Value reaches as a Graph.  Values fn reads from
its closure (a model's parameters) are captured as they are: the leaves
they are, whose current data every replay reads.  Plain numbers fn reads
from its closure or globals are constants of the trace.  Later calls with
arguments of the same signature -- the same number and nesting of
lists/tuples and the same kind, int, float or Value, at each place -- put
the new numbers into those leaves and replay the graph (Graph.forward):
the same floats, bit for bit, and the same int/float types as calling fn
would give.  Another signature traces again (the last CACHE_SIZE traces
are kept; trace_count counts the traces made).  What fn does besides
building Values (printing, appending to a list) happens at trace time only.

What a call returns is a new Value holding the replayed output, with the
Value arguments as its children, whose backward() -- on it, or on any
Value built from it -- back-propagates through the captured graph
(Graph.backward) from the output's grad: the closure's Values and the
Value arguments get the gradients calling fn would have given them, bit
for bit when backward() starts at the output (a training loop; a second
backward() adds again, as eager code does); when the output is part of a
bigger graph, up to the order in which a leaf's contributions are summed.
Each output keeps its own numbers: backward() on an older output first
replays its call (with the closure's Values as they are then).  Under
no_grad a call returns plain leaves.  A function may return a tuple or
list of Values: a Graph per output, and a tuple or list of outputs.
Calls on one trace are serialised by a lock, so threads may share a
compiled function.

Frozen control flow, as with jax.jit: fn runs once per signature.  Python
that reads numbers -- `if x.data > 0`, `max(v.data for v in ...)`, a loop
count from .data -- took its branch when the trace was made, and every
replay takes the same one.  Inside fn the numeric arguments are Values
(write `w * x`, not `float(x)`).  compile(fn, check=True) runs fn eagerly
as well on every call and raises TraceMismatch when the two differ (an
output's number or type, a graph's node count or a gradient with respect
to an input): a debugging aid, slower than not compiling at all.  A
function whose graph holds an op with the user's own _backward rule --
the output of another compiled function is one -- cannot be captured:
ValueError.

Also: f.grad(*args) and f.value_and_grad(*args) give the gradient with
respect to each number of the positional arguments (no .grad of yours
changes), and f.run(*args, rows=...) replays over many rows at once
(Graph.run), both in plain doubles.
"""
import collections
import functools
import math
import os
import threading
import weakref

from ._autograd_c import lib
from ._session import ctx, fail
from .autograd import enable_grad, is_grad_enabled
from .engine import Value
from .graph import Graph, Params
from ._compile_args import columns, name_of, rebuild, signature

__all__ = ["compile", "Compiled", "TraceMismatch"]

CACHE_SIZE = 8  # traces kept per compiled function, by signature


class TraceMismatch(RuntimeError):
    """compile(fn, check=True): the replayed trace and fn run eagerly differ."""


def _outputs(fn, result):
    """(list of the output Values, the container type or None for one)."""
    if isinstance(result, Value):
        return [result], None
    if isinstance(result, (list, tuple)) and result:
        for i, v in enumerate(result):
            if not isinstance(v, Value):
                raise TypeError(f"compiled {name_of(fn)} returned a {type(v).__name__} as "
                                f"output {i}: outputs must be Values")
        return list(result), (list if isinstance(result, list) else tuple)
    raise TypeError(f"compiled {name_of(fn)} must return a Value or a non-empty tuple/list "
                    f"of Values, not {type(result).__name__}")


def _run_eagerly(fn, sig, cells):
    """fn called on new leaves holding cells: (outputs, container, leaves)."""
    with enable_grad():
        leaves = [Value(x) for x in cells]
        args, kw = sig
        it = iter(leaves)
        result = fn(*rebuild(args, it), **{name: rebuild(s, it) for name, s in kw})
    outs, container = _outputs(fn, result)
    return outs, container, leaves


def _capture(fn, root):
    """Graph(root * seed) and the seed leaf (int 1): backward() then starts
    root's grad at seed.data -- the grad of the output being back-propagated."""
    with enable_grad():
        seed = Value(1)
        seeded = root * seed
    try:
        return Graph(seeded), seed
    except ValueError as e:
        raise ValueError(f"compile cannot capture {name_of(fn)}: {e}") from e


def _used(graph, leaves):
    """The positions of the leaves that are nodes of graph (Graph.run's
    inputs must be)."""
    return [i for i, v in enumerate(leaves) if lib.ag_graph_position(graph._g, v._i) >= 0]


def _input_grads(graph, leaves, cells, used=None):
    """(root's value, d root / d leaf for each leaf -- 0.0 for one the graph
    does not reach, used lists those it does) by Graph.run on the one row
    cells, in plain doubles; only the leaves' .grad change."""
    used = _used(graph, leaves) if used is None else used
    inputs = [leaves[i] for i in used]
    Params(inputs).zero_grad()
    (value,) = graph.run(inputs=inputs, rows=[[cells[i] for i in used]], grads=inputs)
    grads = [0.0] * len(leaves)
    for i, v in zip(used, inputs):
        grads[i] = v.grad
    return value, grads


def _same(a, b):
    """a and b are the same number: type, bits (nan equal to nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


_set_data = lib.ag_set_data


class _Trace:
    """One signature's capture: the leaves the arguments' numbers go into,
    a Graph per output, and which call each graph's nodes now hold."""

    def __init__(self, fn, sig, cells):
        outs, self.container, self.leaves = _run_eagerly(fn, sig, cells)
        self.handles = [leaf._i for leaf in self.leaves]
        captured = [_capture(fn, root) for root in outs]
        self.graphs = [g for g, _ in captured]
        self.seeds = [seed for _, seed in captured]
        self.roots = outs
        # outputs computed by an op: their grad is set (not added) before a
        # pass, as eager code sets it; a leaf returned as it is accumulates
        self.computed = [root._node().op not in (lib.AG_LEAF, lib.AG_OPAQUE) for root in outs]
        # the child of outputs without Value arguments: the engine takes a
        # node without children for no part of a graph (its rule is ignored)
        self.anchor = Value(0)
        self.sizes = [len(g) - 2 for g in self.graphs]  # without seed and product
        self.used = [_used(g, self.leaves) for g in self.graphs]  # leaves each reaches
        self.lock = _new_lock(self, "lock")
        self.loaded = None  # the call whose numbers the leaves hold
        self.replayed = [None] * len(outs)  # per graph: the call its nodes hold
        # per graph: the graphs back-propagated since it was replayed, whose
        # grads sit in its nodes (its own: as in eager code; others': not)
        self.touched = [set() for _ in outs]

    def load(self, call):
        """Put call's numbers into the leaves (under the lock), unless they
        hold them already: the same numbers again, of the same types (a
        Value argument's data may be an int one call, a float the next), no
        zero (whose sign == does not see), no nan (which is != itself)."""
        if self.loaded is call:
            return
        cells, loaded = call.cells, self.loaded
        self.loaded = None
        if (loaded is None or cells != loaded.cells or 0 in cells
                or any(type(cells[i]) is not type(loaded.cells[i]) for i in call.positions)):
            for h, x in zip(self.handles, cells):
                status = _set_data(ctx, h, x, type(x) is int)
                if status:
                    fail(status, "compiled call")
        self.loaded = call

    def _replay(self, k, call):
        """Graph k's forward with call's numbers (under the lock)."""
        self.load(call)
        self.replayed[k] = None
        self.graphs[k].forward()  # every op node's grad: int 0
        self.replayed[k], self.touched[k] = call, set()

    def forward(self, call):
        """Replay every graph for call: the outputs' data."""
        with self.lock:
            for k in range(len(self.graphs)):
                self._replay(k, call)
            return [root.data for root in self.roots]

    def backward(self, call, k, grad):
        """Back-propagate grad from output k of call, as eager code would
        from that output: the gradients of the leaves of the Value arguments
        (the closure's Values get theirs).  Graph k is replayed first unless
        its nodes hold call's numbers and only its own earlier grads (then,
        as in eager code, a second backward adds to those)."""
        with self.lock:
            if self.replayed[k] is not call or self.touched[k] - {k}:
                self._replay(k, call)
            arg_leaves = call.arg_leaves
            if arg_leaves is not None:
                arg_leaves.zero_grad()
            for touched in self.touched:
                touched.add(k)
            if self.computed[k]:
                self.roots[k].grad = 0  # then grad, as eager sets the output's grad
            seed = self.seeds[k]
            seed.data = grad
            try:
                self.graphs[k].backward()
            finally:
                seed.data = 1
            return [] if arg_leaves is None else [v.grad for v in arg_leaves]


class _Call:
    """What an output's backward needs: the call's numbers, its Value
    arguments and the trace's leaves those feed (not the trace, which
    refers to its last call: no reference cycle)."""

    __slots__ = ("cells", "positions", "values", "arg_leaves")

    def __init__(self, trace, cells, values):
        self.cells = cells
        self.positions = [i for i, _ in values]  # of the Value arguments in cells
        self.values = [v for _, v in values]
        self.arg_leaves = Params([trace.leaves[i] for i, _ in values]) if values else None


class _OutputRule:
    """The backward rule of a compiled call's output k (out._backward).  It
    holds out's node handle, not out: no reference cycle, and the rule runs
    only while the node lives."""

    __slots__ = ("trace", "call", "k", "node")

    def __init__(self, trace, call, k, out):
        self.trace, self.call, self.k, self.node = trace, call, k, out._i

    def __call__(self):
        r = lib.ag_read(ctx, self.node, lib.AG_READ_GRAD)  # the grad, 1j for an int
        if r.imag < 0:
            fail(int(r.imag), "compiled output's backward")
        grad = int(r.real) if r.imag else r.real
        grads = self.trace.backward(self.call, self.k, grad)
        for v, g in zip(self.call.values, grads):
            v.grad = v.grad + g


# Every lock of this module, by owner: a child made by os.fork() while
# another thread held one (inside a compiled call) gets new ones.
_locks = weakref.WeakKeyDictionary()  # owner -> the attribute naming its lock


def _new_lock(owner, name):
    _locks[owner] = name
    return threading.RLock()


def _renew_locks_after_fork():
    for owner, name in list(_locks.items()):
        setattr(owner, name, threading.RLock())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks_after_fork)


class Compiled:
    """A function traced into Graphs per argument signature: see the module."""

    def __init__(self, fn, check=False):
        if not callable(fn):
            raise TypeError(f"compile needs a function, got {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn, self.check = fn, bool(check)
        self._traces = collections.OrderedDict()  # signature -> _Trace, oldest first
        self._lock = _new_lock(self, "_lock")  # fn may call the compiled function
        self.trace_count = 0  # traces made so far

    def __repr__(self):
        return f"<compiled {name_of(self.fn)}: {len(self._traces)} traces>"

    def clear(self):
        """Forget every trace: the next call traces fn again."""
        with self._lock:
            self._traces.clear()

    def _trace(self, args, kwargs):
        """(trace, signature, numbers, Value arguments) for a call's
        arguments; a new trace is made under the lock, so threads calling
        at once trace once."""
        sig, cells, values = signature(self.fn, args, kwargs)
        with self._lock:
            trace = self._traces.get(sig)
            if trace is not None:
                self._traces.move_to_end(sig)
                return trace, sig, cells, values
            trace = _Trace(self.fn, sig, cells)
            self.trace_count += 1
            self._traces[sig] = trace
            while len(self._traces) > CACHE_SIZE:
                self._traces.popitem(last=False)
        return trace, sig, cells, values

    def __call__(self, *args, **kwargs):
        trace, sig, cells, values = self._trace(args, kwargs)
        call = _Call(trace, cells, values)
        datas = trace.forward(call)
        if self.check:
            self._check(trace, sig, call, datas)
        if not is_grad_enabled():
            outs = [Value(x) for x in datas]
        else:
            outs = [self._output(trace, call, k, x) for k, x in enumerate(datas)]
        return outs[0] if trace.container is None else trace.container(outs)

    def _output(self, trace, call, k, data):
        """A Value of data whose backward rule back-propagates through
        graph k, with the Value arguments as its children."""
        out = Value(data, call.values or (trace.anchor,), f"compiled {name_of(self.fn)}")
        out._backward = _OutputRule(trace, call, k, out)
        return out

    def _check(self, trace, sig, call, datas):
        """Raise TraceMismatch unless fn run eagerly on this call's numbers
        gives the replayed outputs, graphs of the same size and the same
        gradients with respect to every input."""
        outs, container, leaves = _run_eagerly(self.fn, sig, call.cells)
        problems = []
        if container is not trace.container or len(outs) != len(datas):
            problems.append(f"fn returned {len(outs)} outputs, the trace {len(datas)}")
        for k, (root, data) in enumerate(zip(outs, datas)):
            if not _same(root.data, data):
                problems.append(f"output {k} is {root.data!r}, the trace gave {data!r}")
            graph, _ = _capture(self.fn, root)
            if len(graph) - 2 != trace.sizes[k]:
                problems.append(f"output {k}'s graph has {len(graph) - 2} nodes, "
                                f"the trace's {trace.sizes[k]}")
                continue
            with trace.lock:
                _, traced = _input_grads(trace.graphs[k], trace.leaves, call.cells,
                                         trace.used[k])
            _, eager = _input_grads(graph, leaves, call.cells)
            bad = [i for i, (a, b) in enumerate(zip(traced, eager)) if not _same(a, b)]
            if bad:
                problems.append(f"output {k}'s gradient with respect to input {bad[0]} "
                                f"is {eager[bad[0]]!r}, the trace gave {traced[bad[0]]!r}")
        if problems:
            raise TraceMismatch(
                f"compiled {name_of(self.fn)} no longer matches its trace: "
                + "; ".join(problems) + ".  Python control flow that reads numbers "
                "(.data) was frozen when the trace was made; keep such code out of the "
                "compiled function, or call it undecorated")

    def _single(self, trace, what):
        if trace.container is not None:
            raise TypeError(f"{what} needs a function with one output; compiled "
                            f"{name_of(self.fn)} returns {len(trace.graphs)}")
        return trace.graphs[0]

    def value_and_grad(self, *args, **kwargs):
        """(output, gradients): the output as a float and, mirroring the
        positional arguments (a tuple of them, each nested as given), the
        derivative of the output with respect to each number in them (for a
        Value argument, with respect to its data).  Computed by Graph.run in
        plain doubles; no .data or .grad of yours changes.  One output only."""
        trace, sig, cells, _ = self._trace(args, kwargs)
        graph = self._single(trace, "value_and_grad")
        with trace.lock:
            value, grads = _input_grads(graph, trace.leaves, cells, trace.used[0])
        args_sig, _ = sig
        return value, rebuild(args_sig, iter(grads))

    def grad(self, *args, **kwargs):
        """The gradients of value_and_grad(*args, **kwargs)."""
        return self.value_and_grad(*args, **kwargs)[1]

    def run(self, *args, rows, grads=(), threads=1, out=None, **kwargs):
        """Graph.run over many calls at once: args (and kwargs) give the
        arguments' shape, each row the numbers of one call, flattened in
        order (positional arguments, then keyword arguments by name; lists
        and tuples depth first).  Returns the output for each row; grads
        (closure Values such as model.parameters()) get the gradient summed
        over the rows added into their .grad.  One output only; see
        Graph.run for rows, threads and out."""
        trace, _, cells, _ = self._trace(args, kwargs)
        graph = self._single(trace, "run")
        used = trace.used[0]
        if len(used) < len(cells):
            rows = columns(rows, used, len(cells))
        with trace.lock:
            return graph.run(inputs=[trace.leaves[i] for i in used], rows=rows,
                             grads=grads, threads=threads, out=out)


def compile(fn=None, *, check=False):
    """Trace fn into Graphs and replay it: `@compile`, `@compile(check=True)`
    or `compile(fn)`.  See the autograd_c.compile module for what a call
    returns and what is frozen at trace time."""
    if fn is None:
        return functools.partial(Compiled, check=check)
    return Compiled(fn, check=check)
