"""Memory: live nodes, the arena and the process's RSS.  A 10**6-deep
chain (build, backward, free without recursion), node slot reuse, flat
memory over a long training loop, bytes per node, the node limit (a clean
MemoryError, nothing half-built, working again once Values are dropped).

The 10**6-node tests run in a fresh interpreter: a crash there (a recursive
free overflowing the C stack) fails one test instead of killing the suite,
and the process's RSS then measures the arena alone.  RSS is read from
/proc/self/statm (Linux, as CI)."""
import gc
import json
import os
import subprocess
import sys
import textwrap

import pytest

import autograd_c
from autograd_c import Value, set_node_limit
from autograd_c.datasets import make_moons
from autograd_c.nn import MLP
from autograd_c.train import make_model, moons_loss, train_step
from support import UNDER_ASAN, gc_paused, live_nodes, rss_bytes

STEPS = 1000
WARMUP = 100
MAX_RSS_GROWTH = 4 * 2**20  # bytes, after warm-up
N_PARAMS = 337              # MLP(2, [16, 16, 1])


def arena():
    """autograd_c.stats() once the dead Values are released (live_nodes)."""
    live_nodes()
    return autograd_c.stats()


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
    base = live_nodes()
    x = Value(0.5)
    r = x
    middle = None
    n = DEEP // 2
    cost = {0: 1, 1: 3}  # nodes made by a "+ x" step / a relu step
    for i in range(n):
        r = (r * 1.0).relu() if i % 2 else r + x
        if i == n // 2:
            middle = r
    assert live_nodes() - base == 1 + sum(cost[i % 2] for i in range(n))
    r.backward()
    assert x.grad == n // 2 + 1 and type(x.grad) is float  # one per "+ x", one at the bottom
    del r
    # what only the top half reached is gone; the middle and below are kept
    assert live_nodes() - base == 1 + sum(cost[i % 2] for i in range(n // 2 + 1))
    assert middle.data == x.data * (1 + len(range(0, n // 2 + 1, 2)))
    del middle
    assert live_nodes() - base == 1
    del x
    assert live_nodes() == base


def test_slot_reuse_keeps_capacity_constant():
    base = live_nodes()

    def graph():
        xs = [Value(float(i)) for i in range(100)]
        out = sum((x * x + 1 for x in xs), Value(0.0)).relu()
        out.backward()
        return out.data

    first = graph()
    cap = arena()["capacity"]
    assert live_nodes() == base
    with gc_paused():
        for _ in range(200):
            assert graph() == first
            assert live_nodes(collect=False) == base
            assert autograd_c.stats()["capacity"] == cap


def test_dropped_values_are_reused_not_leaked():
    """Drop a whole big graph: the next one of the same size fits in the
    same slots."""
    x = Value(1.0)
    r = x
    for _ in range(50_000):
        r = r * 1.0
    cap = arena()["capacity"]
    live = live_nodes()
    del r
    for _ in range(3):
        r = x
        for _ in range(50_000):
            r = r * 1.0
        assert live_nodes() == live
        assert arena()["capacity"] == cap
        del r


# --------------------------------------------------------------------------
# memory over a training run

def test_training_loop_keeps_rss_capacity_and_live_nodes_flat(live_baseline):
    """1000 training steps; after a 100-step warm-up the arena keeps its
    capacity, the process's RSS grows by less than MAX_RSS_GROWTH (printed:
    pytest -s shows it), and the arena ends at exactly the model's
    parameters."""
    X, y = make_moons(20)
    model = make_model(MLP)
    assert live_nodes() == live_baseline + N_PARAMS
    losses = []
    for k in range(STEPS):
        if k == WARMUP:
            gc.collect()
            rss_warm, cap_warm = rss_bytes(), autograd_c.stats()["capacity"]
        losses.append(train_step(Value, model, X, y, k, STEPS)[0])
        if k > WARMUP and k % 50 == 0:
            assert autograd_c.stats()["capacity"] == cap_warm
    gc.collect()
    growth = rss_bytes() - rss_warm
    print(f"\nRSS growth over {STEPS - WARMUP} training steps after warm-up: "
          f"{growth / 2**20:.2f} MiB")
    assert growth < MAX_RSS_GROWTH or UNDER_ASAN
    assert autograd_c.stats()["capacity"] == cap_warm
    assert live_nodes() == live_baseline + N_PARAMS  # every step's graph freed
    assert losses[-1] < losses[0]  # it did train
    del model
    assert live_nodes() == live_baseline


# --------------------------------------------------------------------------
# bytes per node

def test_bytes_per_live_node():
    """A 10**6-node graph held only by its root, after a backward (every
    per-node array touched).  In fresh processes, so the RSS growth is the
    graph's: the arena's at most 64 bytes a node, and the Values an
    operator's result keeps (its operands, as micrograd's _prev) -- the
    whole at most half what micrograd takes to build the same graph (its
    recursive backward cannot go 10**6 deep)."""
    chain = f"""
        x = Value(1.0)
        (x * 2).backward()             # the first arena and the lazy imports
        rss0 = rss()
        r = x
        for _ in range({DEEP} - 1):
            r = r + x
        r.backward()
    """
    out = run_script(f"""
        base = stats()["live_nodes"] + 1
        {textwrap.indent(textwrap.dedent(chain), "        ").strip()}
        s = stats()
        print(json.dumps({{"rss": rss() - rss0, "live": s["live_nodes"] - base,
                          "bytes": s["bytes"], "capacity": s["capacity"]}}))
    """)
    build = textwrap.dedent(chain).replace("r.backward()", "")  # too deep for micrograd's
    theirs = run_script("from micrograd.engine import Value\n" + build
                        + "print(json.dumps({'rss': rss() - rss0}))")
    assert out["live"] == DEEP - 1
    assert out["bytes"] / out["capacity"] <= 64
    assert out["bytes"] / out["live"] <= 64
    print(f"\nRSS per node: {out['rss'] / DEEP:.0f} bytes, micrograd {theirs['rss'] / DEEP:.0f}")
    assert 0 < out["rss"] <= theirs["rss"] / 2


def test_stats_bytes_match_capacity_here():
    s = arena()
    assert s["capacity"] >= s["live_nodes"]
    assert s["capacity"] == 0 or 0 < s["bytes"] / s["capacity"] <= 64


# --------------------------------------------------------------------------
# the node limit

def test_node_limit_raises_memory_error_creates_nothing_and_recovers(live_baseline):
    # an op that needs two nodes where one fits: nothing half-built
    x = Value(1.0)
    live = live_nodes()
    set_node_limit(live + 3)
    try:
        y = x + 1.0          # 2 nodes: the constant and the sum
        before = live_nodes()
        with pytest.raises(MemoryError):
            y * 2.0          # 2 more: over the limit
        with pytest.raises(MemoryError):
            Value(3) + Value(4)
        assert live_nodes() <= before
        z = y.relu()         # 1 more fits
        assert z.data == 2.0 and autograd_c.stats()["limit"] == live + 3
    finally:
        set_node_limit(0)
    assert autograd_c.stats()["limit"] == 0
    assert (y * 2.0).data == 4.0
    del x, y, z

    # fill the room exactly; a forward pass fails, creates nothing, and fits
    # again once Values are dropped
    X, labels = make_moons(4)
    model = make_model(MLP)
    room = 2000  # a one-point loss takes ~1300 nodes, four points ~3300
    set_node_limit(live_nodes() + room)
    try:
        held = []
        with pytest.raises(MemoryError):
            while True:
                held.append(Value(len(held)))
        assert len(held) == room
        full = live_nodes()
        with pytest.raises(MemoryError):  # a whole forward pass does not fit
            moons_loss(Value, model, X, labels)
        with pytest.raises(MemoryError):
            held[0] * 2
        assert live_nodes() == full  # the failures created nothing
        assert [v.data for v in held] == list(range(room))
        del held
        loss, _ = moons_loss(Value, model, X[:1], labels[:1])  # room again: fits
        with pytest.raises(MemoryError):  # the full batch still does not
            moons_loss(Value, model, X, labels)
        del loss
    finally:
        set_node_limit(0)
    assert autograd_c.stats()["limit"] == 0
    # normal again: a full training step, then back to the parameters alone
    train_step(Value, model, X, labels, 0)
    assert live_nodes() == live_baseline + N_PARAMS
    reference = make_model(MLP)
    train_step(Value, reference, X, labels, 0)
    assert [p.data for p in model.parameters()] == [p.data for p in reference.parameters()]


def test_a_big_freed_arena_gives_memory_back():
    """After a 3*10^6-node graph is freed the arena shrinks by itself (it is
    over 2**20 slots and mostly empty), and the memory goes back to the
    system; a node kept alive low in the arena does not stop it."""
    gc.collect()
    keep = Value(1.0) * 2
    rss0 = rss_bytes()
    h = Value(1.0)
    for _ in range(3_000_000):
        h = h * 1.0001
    assert arena()["capacity"] >= 2**22
    del h
    stats = arena()
    assert stats["capacity"] <= 2**16 and stats["bytes"] < 2**22
    if not UNDER_ASAN:
        assert rss_bytes() - rss0 < 20 * 2**20  # the graph took ~150 MB
    assert (keep * 3).data == 6.0


def test_trim_shrinks_to_the_highest_live_node():
    """trim() at any size: a live node high in the arena keeps it big (nodes
    never move); once it goes, trim gives the memory back."""
    low = [Value(float(i)) for i in range(10)]
    middle = [Value(float(i)) for i in range(200_000)]
    high = Value(7.0)
    del middle
    autograd_c.stats()
    assert autograd_c.trim() == 0 or arena()["capacity"] >= 2**17
    del high
    assert autograd_c.trim() > 0
    assert arena()["capacity"] <= 2**15
    assert [v.data for v in low] == [float(i) for i in range(10)]


def test_handles_of_trimmed_slots_never_name_a_later_node():
    """A slot dropped by a trim and added again later starts at a newer
    generation: an old handle of it is refused, not aliased."""
    from autograd_c._autograd_c import lib
    from autograd_c._session import ctx
    keep = Value(0.0)
    pad = [Value(float(i)) for i in range(100_000)]
    old = pad[-1]._i
    del pad
    autograd_c.trim()
    again, slot = [], old & 0xFFFFFFFF
    while not again or (again[-1]._i & 0xFFFFFFFF) != slot:  # lowest free slot first
        again.append(Value(1.0))
        assert len(again) < 3_000_000
    assert again[-1]._i != old
    assert lib.ag_read(ctx, old, lib.AG_READ_DATA).imag == lib.AG_ERR_STALE
    assert keep.data == 0.0
