"""autograd_c.dask: Graph.run over a Dask array of rows on a two-process
distributed.LocalCluster -- outputs bit for bit those of a local run, the
gradient sums those of the partitions' local runs added by the tree (and,
up to summation order, one local run's) -- and workers killed mid-run: the
run is retried to the same numbers, or fails clearly having added nothing.
Skipped only where dask or distributed is not importable (CI installs both,
through the test extra)."""
import os
import random
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

import dask  # noqa: E402

from autograd_c import Graph, Params, Value, nn  # noqa: E402
import autograd_c.dask as agd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    """One cluster for the module: 2 worker processes, 1 thread each.  A
    task may kill its worker once (allowed-failures 1): the kill tests."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # _die_* on the workers
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                      dashboard_address=None) as cluster:
            with distributed.Client(cluster) as c:
                yield c
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    _stop_offload_thread()


def _stop_offload_thread():
    """distributed keeps the thread of its offload pool for the process's
    life; later tests need this process back to one thread (reclaim() does
    nothing while others run): swap in a fresh pool, which starts no thread
    until used, and stop the old one."""
    import concurrent.futures
    used = distributed.utils._offload_executor
    distributed.utils._offload_executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="Dask-Offload")
    used.shutdown(wait=True)


def moons_graph(seed=7):
    """(Graph of the per-row SVM loss of a moons MLP, inputs, Params)."""
    random.seed(seed)
    model = nn.MLP(2, [8, 8, 1])
    x0, x1, y = Value(0.0), Value(0.0), Value(0.0)
    return Graph((1 + -y * model([x0, x1])).relu()), [x0, x1, y], Params(model.parameters())


def numpy_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(0, 1, (n, 2)), rng.choice([-1.0, 1.0], n)])


def grads_of(params):
    return np.array([float(p.grad) for p in params])


def local_tree_sum(graph, inputs, params, rows, chunks):
    """The gradient sums agd.run must give: each partition run locally,
    the partitions' sums added in agd's tree order."""
    parts, start = [], 0
    for n in chunks:
        params.zero_grad()
        graph.run(inputs=inputs, rows=rows[start:start + n], grads=params)
        parts.append(grads_of(params))
        start += n
    while len(parts) > 1:
        parts = [agd._add(*parts[i:i + agd.FAN_IN]) for i in range(0, len(parts), agd.FAN_IN)]
    return parts[0]


def test_outputs_and_gradients_equal_the_local_run(client):
    graph, inputs, params = moons_graph()
    rows = numpy_rows(20_000)
    chunks = (3_000,) * 6 + (2_000,)
    params.zero_grad()
    local_out = graph.run(inputs=inputs, rows=rows, grads=params)
    local = grads_of(params)
    params.zero_grad()
    out = agd.run(graph, inputs, da.from_array(rows, chunks=(chunks, 3)), grads=params)
    got = grads_of(params)
    assert isinstance(out, da.Array)
    assert np.array_equal(out.compute(), np.array(local_out))      # per row: the same bits
    assert np.array_equal(got, local_tree_sum(graph, inputs, params, rows, chunks))
    scale = np.abs(local).max() + 1.0
    assert np.allclose(got, local, rtol=0, atol=1e-10 * scale)     # up to summation order
    assert not np.array_equal(got, np.zeros_like(got))


def test_gradients_are_added_and_a_run_repeats_bit_for_bit(client):
    graph, inputs, params = moons_graph(3)
    rows = da.from_array(numpy_rows(9_000, 1), chunks=(1_000, 3))
    params.zero_grad()
    agd.run(graph, inputs, rows, grads=params)
    once = grads_of(params)
    for p in params:
        p.grad = 1.5
    agd.run(graph, inputs, rows, grads=list(params))
    assert np.array_equal(grads_of(params), 1.5 + once)
    out = agd.run(graph, inputs, rows)                              # no grads: lazy
    assert np.array_equal(grads_of(params), 1.5 + once)
    assert out.shape == (9_000,) and np.isfinite(out.compute()).all()


def test_bad_arguments_raise_before_anything_is_sent(client):
    graph, inputs, params = moons_graph()
    rows = da.from_array(numpy_rows(100), chunks=(50, 3))
    root = graph.root
    with pytest.raises(ValueError, match="not a leaf"):
        agd.run(graph, [root, inputs[1], inputs[2]], rows)
    with pytest.raises(ValueError, match="twice"):
        agd.run(graph, inputs, rows, grads=[params[0], params[0]])
    with pytest.raises(ValueError, match="not a node of this graph"):
        agd.run(graph, inputs, rows, grads=[Value(1.0)])
    with pytest.raises(TypeError, match="dask array"):
        agd.run(graph, inputs, numpy_rows(100))
    with pytest.raises(ValueError, match="one column per input"):
        agd.run(graph, inputs[:2], rows)
    with pytest.raises(TypeError, match="Graph"):
        agd.run(root, inputs, rows)
    params.zero_grad()
    with pytest.raises(ValueError):
        agd.run(graph, inputs, rows, grads=[*params, root, root])
    assert not grads_of(params).any()


def test_data_parallel_training_lowers_the_loss(client):
    model, losses = agd.train_moons(agd.moons_rows(40_000, 10_000), steps=6, hidden=(8,))
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert min(losses[1:]) < losses[0]
    assert len(model.parameters()) == 2 * 8 + 8 + 8 + 1


# ---- workers killed mid-run -----------------------------------------------------

def _die_once(block, marker, block_id=None):
    """Kill this worker the first time partition 2 is made; then pass rows."""
    if block_id[0] == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return block


def _die_always(block, block_id=None):
    if block_id[0] == 1:
        os._exit(1)
    return block


def test_a_worker_killed_mid_run_is_retried_to_the_same_numbers(client, tmp_path):
    graph, inputs, params = moons_graph(5)
    base = da.from_array(numpy_rows(12_000, 2), chunks=(2_000, 3))
    params.zero_grad()
    want_out = agd.run(graph, inputs, base, grads=params).compute()
    want = grads_of(params)
    marker = str(tmp_path / "died")
    params.zero_grad()
    out = agd.run(graph, inputs, base.map_blocks(_die_once, marker, dtype=np.float64),
                  grads=params)
    assert os.path.exists(marker)  # a worker did die mid-run
    assert np.array_equal(grads_of(params), want)
    assert np.array_equal(out.compute(), want_out)
    client.wait_for_workers(2, timeout=60)


def test_a_partition_that_keeps_killing_workers_fails_clearly_adding_nothing(client):
    graph, inputs, params = moons_graph(5)
    rows = da.from_array(numpy_rows(6_000, 3), chunks=(2_000, 3))
    for p in params:
        p.grad = 0.25
    with pytest.raises(RuntimeError, match="no gradient was added"):
        agd.run(graph, inputs, rows.map_blocks(_die_always, dtype=np.float64), grads=params)
    assert np.array_equal(grads_of(params), np.full(len(params), 0.25))
    client.wait_for_workers(2, timeout=60)
    params.zero_grad()
    agd.run(graph, inputs, rows, grads=params)  # the cluster still works
    assert grads_of(params).any()


def test_the_example_trains_on_its_own_cluster():
    """examples/dask_moons.py, small: it starts its own 2-process cluster."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "examples", "dask_moons.py"),
                           "--rows", "20000", "--partition", "5000", "--steps", "3"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step")]
    assert len(steps) == 3 and "accuracy on 1000 fresh points" in proc.stdout
