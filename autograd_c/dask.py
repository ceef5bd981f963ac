"""Graph.run over rows partitioned across Dask workers (the `[dask]` extra:
pip install 'autograd_c[dask]').

    from distributed import Client
    import autograd_c.dask
    client = Client()                                  # or Client("scheduler:8786")
    out = autograd_c.dask.run(graph, inputs=[x0, x1, y], rows=rows, grads=params)
    out.mean().compute()                               # outputs: a Dask array

run() has Graph.run's signature, with rows a 2-D Dask array (one row per
evaluation, a column per input, partitioned by rows).  The graph travels
once per call as its saved bytes (autograd_c._graph_io: the program and
the data of its sources); each worker loads it once and replays it over each of its
partitions with Graph.run, in C.  The per-partition gradient sums are added
by a tree reduction (fixed by the partitioning, so a run repeats bit for
bit; against one local Graph.run the sums differ only in summation order).
Whatever scheduler Dask would use runs it: the distributed Client if one is
active, else Dask's local threads.

A worker lost mid-run has its partitions recomputed by the scheduler
(partitions are pure functions of their rows); when that cannot succeed,
run() raises RuntimeError and adds nothing: gradients are added only once
every partition's sum is in.

train_moons() is a data-parallel training loop built on run():
micrograd's moons MLP, the SVM loss averaged over a million rows a step.
"""
import hashlib
import pickle
import random
import threading

from . import _graph_io
from ._autograd_c import ffi, lib
from ._optional import require
from ._session import ctx, fail
from .engine import Value
from .graph import Graph, Params
from .nn import MLP
from .train import learning_rate

require("dask.array", "autograd_c.dask")  # a clear ImportError naming the extra
import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["run", "moons_rows", "train_moons"]

FAN_IN = 8  # partitions' gradient sums added per task of the tree reduction


# ---- on the workers ------------------------------------------------------------

_loaded = {}            # sha256 of a pickled job -> (graph, inputs, Params of grads, lock)
_loaded_lock = threading.Lock()
_KEEP = 4               # jobs a worker keeps loaded (a training loop sends one a step)


def _job(payload):
    """The loaded (graph, inputs, grads Params, lock) of a pickled job,
    loaded once per worker process."""
    key = hashlib.sha256(payload).digest()
    with _loaded_lock:
        hit = _loaded.get(key)
        if hit is None:
            blob, in_at, grad_at = pickle.loads(payload)
            graph = Graph._load(blob)
            sources = graph.sources
            nodes = _graph_io.node_values(graph._g, grad_at)
            hit = (graph, [sources[i] for i in in_at], Params(nodes), threading.Lock())
            while len(_loaded) >= _KEEP:
                _loaded.pop(next(iter(_loaded)))
            _loaded[key] = hit
    return hit


def _partition(block, payload, threads):
    """(outputs, gradient sums) of one partition of rows, both float64
    arrays: Graph.run on the worker's copy of the graph.  The copy's grads
    are zeroed and read under its lock, so threads of one worker never mix
    their sums (replay of one graph is one at a time anyway)."""
    graph, inputs, grads, lock = _job(payload)
    rows = np.require(block, np.float64, ["C", "A"])  # a frame's slice may be misaligned
    out = np.empty(rows.shape[0])
    with lock:
        grads.zero_grad()
        graph.run(inputs=inputs, rows=rows, grads=grads, threads=threads, out=out)
        sums = np.array([float(v.grad) for v in grads], dtype=np.float64)
    return out, sums


def _add(*parts):
    """The sum of gradient-sum arrays, added in the order given."""
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


# ---- on the client ---------------------------------------------------------------

def _tree_sum(parts):
    """One delayed sum of the delayed arrays parts, FAN_IN at a time."""
    while len(parts) > 1:
        parts = [dask.delayed(_add, pure=True)(*parts[i:i + FAN_IN])
                 for i in range(0, len(parts), FAN_IN)]
    return parts[0]


def _positions(graph, values, kind):
    """Program positions of values in graph (ValueError naming one that is
    not in it or is given twice)."""
    values = list(values)
    for i, v in enumerate(values):
        if not isinstance(v, Value):
            raise TypeError(f"{kind}[{i}] is a {type(v).__name__}, not a Value")
    if len(set(values)) != len(values):
        raise ValueError(f"{kind} lists a Value twice")
    positions = [lib.ag_graph_position(graph._g, v._i) for v in values]
    for i, p in enumerate(positions):
        if p < 0:
            raise ValueError(f"{kind}[{i}] is not a node of this graph")
    return values, positions


def _payload(graph, inputs, grads):
    """The pickled job: the graph's bytes (no labels: the workers need none),
    and where inputs (as indexes into graph.sources) and grads (program
    positions) are in it."""
    graph.run(inputs=inputs, rows=[])  # Graph.run's checks of the inputs, nothing run
    index = {v: i for i, v in enumerate(graph.sources)}
    grads, grad_at = _positions(graph, grads, "grads")
    job = (_graph_io.to_bytes(graph._g), [index[v] for v in inputs], grad_at)
    return pickle.dumps(job), grads


def _check_rows(rows, width):
    if not isinstance(rows, da.Array):
        raise TypeError(f"rows must be a dask array (dask.array.from_array(...) of your "
                        f"rows, say), not {type(rows).__name__}")
    if rows.ndim != 2 or rows.shape[1] != width:
        raise ValueError(f"rows must be 2-D with one column per input ({width}), "
                         f"got shape {rows.shape}")
    return rows.rechunk({1: -1})  # whole rows in each partition


def run(graph, inputs, rows, grads=(), *, threads=1):
    """Graph.run(inputs, rows, grads) with rows a 2-D Dask array, each
    partition of rows replayed on a Dask worker.

    Returns the root's value per row as a 1-D float64 Dask array (lazy when
    there are no grads; with grads, already computed and held by the
    scheduler, so using it recomputes nothing).  grads: Values of the graph
    (or a Params); the gradient of the root with respect to each, summed
    over all rows by a tree reduction of the partitions' sums, is ADDED into
    its .grad, as Graph.run does, once every partition is in.  threads:
    Graph.run's, on each worker.  Raises what Graph.run raises for bad
    inputs or grads before anything is sent; RuntimeError when the cluster
    cannot finish (workers lost for good), having added nothing."""
    if not isinstance(graph, Graph):
        raise TypeError(f"run needs a Graph, not {type(graph).__name__}")
    inputs = list(inputs)
    payload, grad_values = _payload(graph, inputs, grads)
    rows = _check_rows(rows, len(inputs))
    job = dask.delayed(payload, pure=False)      # sent to each worker once; a new key
                                                 # each call: no result of an earlier run reused
    parts = [dask.delayed(_partition, pure=True, nout=2)(block, job, threads)
             for block in rows.to_delayed().ravel()]
    outputs = da.concatenate([
        da.from_delayed(out, shape=(n,), dtype=np.float64)
        for (out, _), n in zip(parts, rows.chunks[0])]) if parts else da.zeros(0)
    if not grad_values or not parts:
        return outputs
    outputs, total = _computed(outputs, _tree_sum([sums for _, sums in parts]))
    _add_grads(grad_values, total)
    return outputs


def _computed(outputs, total):
    """(outputs persisted, the total as an array): both from one pass over
    the rows.  RuntimeError when the scheduler gives up."""
    try:
        outputs, total = dask.persist(outputs, total)
        # aligned: a result unpickled from a frame may not be, and C reads it
        return outputs, np.require(total.compute(), np.float64, ["C", "A"])
    except Exception as exc:
        if type(exc).__name__ != "KilledWorker":
            raise
        raise RuntimeError(f"autograd_c.dask.run: the cluster lost the workers running a "
                           f"partition too often ({exc}); no gradient was added") from exc


def _add_grads(values, sums):
    """v.grad += s for each, in C as Graph.run adds its sums."""
    ids = ffi.new("int64_t[]", [v._i for v in values])
    status = lib.ag_add_grads(ctx, ids, len(values), ffi.from_buffer("double[]", sums))
    if status:
        fail(status, "autograd_c.dask.run")


# ---- data-parallel training ------------------------------------------------------

def _moons_block(n, start, noise, seed):
    """Rows start .. start+n of the moons data: [x0, x1, y], y = -1 / +1
    (as datasets.make_moons, drawn with numpy per partition)."""
    rng = np.random.default_rng([seed, start])
    upper = rng.random(n) < 0.5
    t = np.pi * rng.random(n)
    x0 = np.where(upper, np.cos(t), 1 - np.cos(t))
    x1 = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    x = np.stack([x0, x1], axis=1) + rng.normal(0, noise, (n, 2))
    return np.column_stack([x, np.where(upper, -1.0, 1.0)])


def moons_rows(n_rows, rows_per_partition=100_000, noise=0.1, seed=0):
    """The two-moons data as an (n_rows, 3) Dask array of [x0, x1, y] rows,
    each partition drawn where it is computed (nothing is sent)."""
    starts = range(0, n_rows, rows_per_partition)
    blocks = [da.from_delayed(
        dask.delayed(_moons_block, pure=True)(min(rows_per_partition, n_rows - s), s, noise, seed),
        shape=(min(rows_per_partition, n_rows - s), 3), dtype=np.float64) for s in starts]
    return da.concatenate(blocks) if blocks else da.zeros((0, 3))


def train_moons(rows, steps=10, hidden=(16, 16), seed=1337, on_step=None):
    """Data-parallel full-batch SGD of micrograd's moons MLP over rows (an
    (n, 3) Dask array of [x0, x1, y], e.g. moons_rows(10**6)): each step
    runs the per-row SVM loss relu(1 - y * model(x)) over every row on the
    cluster (run), then updates the parameters here by the mean gradient at
    micrograd's learning rate schedule (train.learning_rate).
    on_step(k, mean_loss) is called after each step.  Returns (model, the
    mean loss before each step)."""
    random.seed(seed)
    model = MLP(2, [*hidden, 1])
    x0, x1, y = Value(0.0, label="x0"), Value(0.0, label="x1"), Value(0.0, label="y")
    graph = Graph((1 + -y * model([x0, x1])).relu())
    params = Params(model.parameters())
    rows = rows.persist()  # drawn once, kept on the workers
    n = rows.shape[0]
    losses = []
    for k in range(steps):
        params.zero_grad()
        out = run(graph, [x0, x1, y], rows, grads=params)
        losses.append(float(out.sum().compute()) / n)
        params.sgd(learning_rate(k, steps) / n)   # p.data -= lr * (sum of grads) / n
        if on_step is not None:
            on_step(k, losses[-1])
    return model, losses

