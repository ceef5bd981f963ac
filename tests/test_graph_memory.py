"""Graph life and memory: a 10**6-deep chain (build, backward, free without
recursion), node slot reuse, flat memory over a training run, bytes per
node, the node limit.

The 10**6-node tests run in a fresh interpreter: a crash there (a recursive
free overflowing the C stack) fails one test instead of killing the suite,
and the process's RSS then measures the arena alone."""
import contextlib
import gc
import json
import os
import subprocess
import sys
import textwrap

import pytest

import autograd_c
from autograd_c import Value
from autograd_c.datasets import make_moons
from autograd_c.nn import MLP
from autograd_c.train import make_model, train_step
from support import UNDER_ASAN, rss_bytes


def stats():
    gc.collect()  # see conftest.live_nodes
    return autograd_c.stats()


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection (which could free an unrelated Value at
    any moment) inside: counts can be read with the cheap autograd_c.stats()."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run_script(body, timeout=120):
    """Run body in a fresh Python; it prints one JSON line last."""
    code = textwrap.dedent("""
        import json, sys, threading
        import autograd_c
        from autograd_c import Value, stats
        PAGE = __import__("resource").getpagesize()
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * PAGE
    """) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "AUTOGRAD_C_MAX_NODES": ""})
    assert proc.returncode == 0, f"child died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# a 10**6-deep chain

DEEP = 10**6


def chain_grad_after_two_passes(n):
    """x.grad after two backward() of r_n, r_k = r_(k-1) + x, r_0 = x:
    pass 1 gives every r_k grad 1 and x n + 1; in pass 2 r_k's grad has
    grown to n - k + 1, which it passes on to x again."""
    return (n + 1) + n * (n + 1) // 2 + n


def test_chain_formula_matches_micrograd():
    from micrograd.engine import Value as MV
    for V in (MV, Value):
        x = V(1)
        r = x
        for _ in range(50):
            r = r + x
        r.backward()
        r.backward()
        assert x.grad == chain_grad_after_two_passes(50)


def test_deep_chain_build_backward_free():
    """Every node of the chain is the parent of the next one: topological
    sort, backward and the free all go 10**6 deep.  The whole thing runs on
    a thread with a 512 KiB stack, where a C recursion 10**5 deep would
    overflow (and the chain is ten times deeper)."""
    out = run_script(f"""
        result = {{}}
        def work():
            base = stats()["live_nodes"]
            x = Value(1)
            r = x
            for _ in range({DEEP}):
                r = r + x
            result["built"] = stats()["live_nodes"] - base
            result["data"] = r.data
            r.backward()
            result["grad"] = x.grad
            result["grad_type"] = type(x.grad).__name__
            result["root_grad"] = r.grad
            r.backward()  # twice: the traversal scratch is reusable
            result["grad2"] = x.grad
            del r
            result["after_del_root"] = stats()["live_nodes"] - base
            del x
            result["after_del_all"] = stats()["live_nodes"] - base
        threading.stack_size(512 * 1024)
        t = threading.Thread(target=work)
        t.start()
        t.join()
        print(json.dumps(result))
    """)
    assert out["built"] == DEEP + 1
    assert out["data"] == DEEP + 1
    assert out["grad"] == DEEP + 1 and out["grad_type"] == "int"
    assert out["root_grad"] == 1
    assert out["grad2"] == chain_grad_after_two_passes(DEEP)
    assert out["after_del_root"] == 1  # only x is left
    assert out["after_del_all"] == 0


def test_deep_chain_in_process_frees_to_baseline():
    """The same in this process, with mixed ops (a relu step makes a
    constant leaf, a product and the relu), holding a node in the middle
    while the top is freed."""
    base = stats()["live_nodes"]
    x = Value(0.5)
    r = x
    middle = None
    n = DEEP // 2
    cost = {0: 1, 1: 3}  # nodes made by a "+ x" step / a relu step
    for i in range(n):
        r = (r * 1.0).relu() if i % 2 else r + x
        if i == n // 2:
            middle = r
    assert stats()["live_nodes"] - base == 1 + sum(cost[i % 2] for i in range(n))
    r.backward()
    assert x.grad == n // 2 + 1 and type(x.grad) is float  # one per "+ x", one at the bottom
    del r
    # what only the top half reached is gone; the middle and below are kept
    assert stats()["live_nodes"] - base == 1 + sum(cost[i % 2] for i in range(n // 2 + 1))
    assert middle.data == x.data * (1 + len(range(0, n // 2 + 1, 2)))
    del middle
    assert stats()["live_nodes"] - base == 1
    del x
    assert stats()["live_nodes"] == base


def test_slot_reuse_keeps_capacity_constant():
    base = stats()["live_nodes"]

    def graph():
        xs = [Value(float(i)) for i in range(100)]
        out = sum((x * x + 1 for x in xs), Value(0.0)).relu()
        out.backward()
        return out.data

    first = graph()
    cap = stats()["capacity"]
    assert stats()["live_nodes"] == base
    with gc_paused():
        for _ in range(200):
            assert graph() == first
            assert autograd_c.stats()["live_nodes"] == base
            assert autograd_c.stats()["capacity"] == cap


def test_dropped_values_are_reused_not_leaked():
    """Drop a whole big graph: the next one of the same size fits in the
    same slots."""
    x = Value(1.0)
    r = x
    for _ in range(50_000):
        r = r * 1.0
    cap = stats()["capacity"]
    live = stats()["live_nodes"]
    del r
    for _ in range(3):
        r = x
        for _ in range(50_000):
            r = r * 1.0
        assert stats()["live_nodes"] == live
        assert stats()["capacity"] == cap
        del r


# --------------------------------------------------------------------------
# memory over a training run

def test_memory_flat_over_300_training_steps():
    X, y = make_moons(100, noise=0.1)
    model = make_model(MLP)
    params_live = stats()["live_nodes"]
    for k in range(20):  # warm-up: the arena reaches its working size
        train_step(Value, model, X, y, k, steps=320)
    cap0, rss0 = stats()["capacity"], rss_bytes()
    losses = []
    for k in range(20, 320):
        loss, _ = train_step(Value, model, X, y, k, steps=320)
        losses.append(loss)
        if k % 50 == 0:
            assert stats()["capacity"] == cap0
    growth = rss_bytes() - rss0
    assert stats()["capacity"] == cap0
    # only the model's parameters survive a step (and the dead Values not
    # yet handed back, which stats() releases)
    assert stats()["live_nodes"] == params_live
    assert growth < 5 * 2**20 or UNDER_ASAN, f"RSS grew by {growth / 2**20:.1f} MiB over 300 steps"
    assert losses[-1] < losses[0]


# --------------------------------------------------------------------------
# bytes per node

def test_bytes_per_live_node():
    """A 10**6-node graph held only by its root, after a backward (every
    per-node array touched).  In a fresh process, so the RSS growth is the
    arena's."""
    out = run_script(f"""
        x = Value(1.0)
        (x * 2).backward()             # the first arena and the lazy imports
        rss0, base = rss(), stats()["live_nodes"]
        r = x
        for _ in range({DEEP} - 1):
            r = r + x
        r.backward()
        s = stats()
        print(json.dumps({{"rss": rss() - rss0, "live": s["live_nodes"] - base,
                          "bytes": s["bytes"], "capacity": s["capacity"]}}))
    """)
    assert out["live"] == DEEP - 1
    assert out["bytes"] / out["capacity"] <= 64
    assert out["bytes"] / out["live"] <= 64
    assert out["rss"] / out["live"] <= 64, f"{out['rss'] / out['live']:.1f} bytes per node"
    assert out["rss"] > 0


def test_stats_bytes_match_capacity_here():
    s = stats()
    assert s["capacity"] >= s["live_nodes"]
    assert s["capacity"] == 0 or 0 < s["bytes"] / s["capacity"] <= 64


# --------------------------------------------------------------------------
# the node limit

def test_node_limit_raises_memoryerror_and_creates_nothing():
    x = Value(1.0)
    live = stats()["live_nodes"]
    autograd_c.set_node_limit(live + 3)
    try:
        y = x + 1.0          # 2 nodes: the constant and the sum
        before = stats()["live_nodes"]
        with pytest.raises(MemoryError):
            y * 2.0          # 2 more: over the limit
        with pytest.raises(MemoryError):
            Value(3) + Value(4)
        assert stats()["live_nodes"] <= before
        z = y.relu()         # 1 more fits
        assert z.data == 2.0 and stats()["limit"] == live + 3
    finally:
        autograd_c.set_node_limit(0)
    assert stats()["limit"] == 0
    assert (y * 2.0).data == 4.0
    with pytest.raises(ValueError):
        autograd_c.set_node_limit(-1)
