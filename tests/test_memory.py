"""Memory: a long training loop neither grows the process nor leaks nodes,
and a node limit fails cleanly (MemoryError, nothing half-built) and
recovers once Values are dropped.

RSS is read from /proc/self/statm (Linux, as CI).  The growth over 900
steps after a 100-step warm-up is printed (pytest -s shows it); the arena
itself must end at exactly the model's parameters."""
import gc

import pytest

import autograd_c
from autograd_c import Value, set_node_limit
from autograd_c.datasets import make_moons
from autograd_c.nn import MLP
from autograd_c.train import make_model, moons_loss, train_step
from support import UNDER_ASAN, rss_bytes, live_nodes as live

STEPS = 1000
WARMUP = 100
MAX_RSS_GROWTH = 4 * 2**20  # bytes, after warm-up
N_PARAMS = 337              # MLP(2, [16, 16, 1])


def test_training_loop_keeps_rss_and_live_nodes_flat(live_baseline):
    X, y = make_moons(20)
    model = make_model(MLP)
    assert live() == live_baseline + N_PARAMS
    losses = []
    for k in range(STEPS):
        if k == WARMUP:
            gc.collect()
            rss_warm = rss_bytes()
        losses.append(train_step(Value, model, X, y, k, STEPS)[0])
    gc.collect()
    growth = rss_bytes() - rss_warm
    print(f"\nRSS growth over {STEPS - WARMUP} training steps after warm-up: "
          f"{growth / 2**20:.2f} MiB")
    assert growth < MAX_RSS_GROWTH or UNDER_ASAN
    assert live() == live_baseline + N_PARAMS  # every step's graph freed
    assert losses[-1] < losses[0]  # it did train
    del model
    assert live() == live_baseline


def test_node_limit_raises_memory_error_and_recovers(live_baseline):
    X, y = make_moons(4)
    model = make_model(MLP)
    room = 2000  # a one-point loss takes ~1300 nodes, four points ~3300
    set_node_limit(live() + room)
    try:
        held = []
        with pytest.raises(MemoryError):
            while True:
                held.append(Value(len(held)))
        assert len(held) == room
        full = live()
        with pytest.raises(MemoryError):  # a whole forward pass does not fit
            moons_loss(Value, model, X, y)
        with pytest.raises(MemoryError):
            held[0] * 2
        assert live() == full  # the failures created nothing
        assert [v.data for v in held] == list(range(room))
        del held
        loss, _ = moons_loss(Value, model, X[:1], y[:1])  # room again: fits
        with pytest.raises(MemoryError):  # the full batch still does not
            moons_loss(Value, model, X, y)
        del loss
    finally:
        set_node_limit(0)
    assert autograd_c.stats()["limit"] == 0
    # normal again: a full training step, then back to the parameters alone
    train_step(Value, model, X, y, 0)
    assert live() == live_baseline + N_PARAMS
    reference = make_model(MLP)
    train_step(Value, reference, X, y, 0)
    assert [p.data for p in model.parameters()] == [p.data for p in reference.parameters()]
